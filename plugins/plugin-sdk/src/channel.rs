//! Notification channels as plain Rust: implement [`Channel`] and export it with
//! [`export_channel!`](crate::export_channel). The host hands a channel its capabilities as a
//! [`Host`] (HTTP under the host's policy, email through its relay), so the channel's logic is
//! unit-tested natively against a fake. [`classify`] turns a receiver's answer into a receipt or
//! a failure that says whether to retry, and when.

use crate::plugin::Describe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub status: Status,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub value: Option<f64>,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub generator_url: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub idempotency_key: String,
    pub group_key: String,
    pub group_labels: Vec<(String, String)>,
    pub common_labels: Vec<(String, String)>,
    pub common_annotations: Vec<(String, String)>,
    pub status: Status,
    pub alerts: Vec<Alert>,
    pub external_url: String,
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Notification {
    /// `[FIRING:2] HighLatency (service=api)`: the one-line title every channel uses.
    pub fn title(&self) -> String {
        let firing = self
            .alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .count();
        let name = get(&self.common_labels, "alertname")
            .or_else(|| get(&self.group_labels, "alertname"))
            .unwrap_or("alert");
        let others: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(k, _)| k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let head = match self.status {
            Status::Firing => format!("[FIRING:{firing}] {name}"),
            Status::Resolved => format!("[RESOLVED] {name}"),
        };
        if others.is_empty() {
            head
        } else {
            format!("{head} ({})", others.join(", "))
        }
    }

    /// The most useful annotation of the group (summary, then description), if any.
    pub fn summary(&self) -> Option<&str> {
        get(&self.common_annotations, "summary")
            .or_else(|| get(&self.common_annotations, "description"))
            .or_else(|| {
                self.alerts
                    .first()
                    .and_then(|a| get(&a.annotations, "summary"))
            })
    }

    /// The common severity label, if the alerts share one.
    pub fn severity(&self) -> Option<&str> {
        get(&self.common_labels, "severity")
    }

    /// Plain text: the title, the summary, then one line per alert.
    pub fn text(&self) -> String {
        let mut out = self.title();
        if let Some(s) = self.summary() {
            out.push('\n');
            out.push_str(s);
        }
        for a in &self.alerts {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "\n- {} {}{}",
                a.status.as_str(),
                labels.join(" "),
                a.value.map(|v| format!(" value={v}")).unwrap_or_default()
            ));
        }
        out
    }
}

/// `value` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_string();
    }
    let mut s: String = value.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Unix milliseconds as RFC 3339 UTC (`2026-01-05T08:30:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Standard base64 (for HTTP basic authentication).
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: Option<u32>,
}

impl Request {
    /// A JSON POST.
    pub fn post_json(url: &str, body: &serde_json::Value) -> Request {
        Request {
            method: "POST",
            url: url.to_string(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            timeout_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why the host did not deliver a request.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFailure {
    /// The host's policy refused it (address, scheme): retrying will not help.
    Blocked(String),
    Timeout,
    Connection(String),
    InvalidRequest(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// What a channel reaches the world through.
pub trait Host {
    /// # Errors
    /// The host refused or could not deliver the request.
    fn http(&self, req: Request) -> Result<Response, HttpFailure>;

    /// # Errors
    /// The relay's answer.
    fn email(&self, msg: Email) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub message_id: Option<String>,
    pub detail: String,
}

/// Why a notification was not delivered, and whether a retry may help.
#[derive(Debug, Clone, PartialEq)]
pub enum SendFailure {
    Permanent(String),
    Transient(String),
    RateLimited {
        retry_after_ms: u64,
        message: String,
    },
}

impl From<HttpFailure> for SendFailure {
    fn from(f: HttpFailure) -> SendFailure {
        match f {
            HttpFailure::Blocked(m) => {
                SendFailure::Permanent(format!("blocked by the server's policy: {m}"))
            }
            HttpFailure::InvalidRequest(m) => {
                SendFailure::Permanent(format!("invalid request: {m}"))
            }
            HttpFailure::Timeout => {
                SendFailure::Transient("the receiver did not answer in time".into())
            }
            HttpFailure::Connection(m) => SendFailure::Transient(format!("connection failed: {m}")),
        }
    }
}

/// A header's value (case-insensitive name).
pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Seconds (possibly fractional) in `Retry-After`, a JSON `retry_after`, or Telegram's
/// `parameters.retry_after`, as milliseconds.
pub fn retry_after_ms(r: &Response) -> Option<u64> {
    let secs = header(r, "retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .or_else(|| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            v.get("retry_after")
                .or_else(|| v.get("parameters").and_then(|p| p.get("retry_after")))
                .and_then(serde_json::Value::as_f64)
        })?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((secs.max(0.0) * 1000.0).ceil() as u64)
}

/// A short, single-line excerpt of a response body (never the request or its URL).
pub fn excerpt(r: &Response) -> String {
    truncate(
        &String::from_utf8_lossy(&r.body).replace(['\n', '\r'], " "),
        200,
    )
}

/// The usual reading of a receiver's answer: 2xx delivered; 429 rate-limited (with its retry
/// hint, else 30 s); 408, 5xx transient; other 4xx permanent.
///
/// # Errors
/// The failure, with the status and an excerpt of the body.
pub fn classify(r: &Response, receiver: &str) -> Result<(), SendFailure> {
    match r.status {
        200..=299 => Ok(()),
        429 => Err(SendFailure::RateLimited {
            retry_after_ms: retry_after_ms(r).unwrap_or(30_000),
            message: format!("{receiver} is rate limiting: {}", excerpt(r)),
        }),
        408 | 500..=599 => Err(SendFailure::Transient(format!(
            "{receiver} answered {}: {}",
            r.status,
            excerpt(r)
        ))),
        _ => Err(SendFailure::Permanent(format!(
            "{receiver} refused the notification ({}): {}",
            r.status,
            excerpt(r)
        ))),
    }
}

/// A notification channel.
pub trait Channel: Describe {
    /// # Errors
    /// Why it was not delivered, and whether a retry may help.
    fn send(c: &Self::Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure>;
}

/// Generates the `notification-channel` world's bindings and exports `$plugin` (a
/// [`Channel`](crate::channel::Channel)) as the component's implementation.
#[macro_export]
macro_rules! export_channel {
    ($plugin:ty, wit = $wit:literal) => {
        wit_bindgen::generate!({ path: $wit, world: "notification-channel" });

        $crate::__export_common!($plugin);

        /// The host's capabilities through the generated imports.
        struct WitHost;

        impl $crate::channel::Host for WitHost {
            fn http(
                &self,
                req: $crate::channel::Request,
            ) -> Result<$crate::channel::Response, $crate::channel::HttpFailure> {
                use telemetryflow::plugin::http;
                let r = http::send(&http::Request {
                    method: req.method.to_string(),
                    url: req.url,
                    headers: req.headers,
                    body: req.body,
                    timeout_ms: req.timeout_ms,
                });
                match r {
                    Ok(r) => Ok($crate::channel::Response {
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    }),
                    Err(http::HttpError::Blocked(m)) => Err($crate::channel::HttpFailure::Blocked(m)),
                    Err(http::HttpError::Timeout) => Err($crate::channel::HttpFailure::Timeout),
                    Err(http::HttpError::Connection(m)) => {
                        Err($crate::channel::HttpFailure::Connection(m))
                    }
                    Err(http::HttpError::InvalidRequest(m)) => {
                        Err($crate::channel::HttpFailure::InvalidRequest(m))
                    }
                }
            }

            fn email(&self, msg: $crate::channel::Email) -> Result<(), String> {
                use telemetryflow::plugin::email;
                email::send(&email::Message {
                    to: msg.to,
                    subject: msg.subject,
                    text: msg.text,
                    html: msg.html,
                })
            }
        }


        impl exports::telemetryflow::plugin::channel::Guest for Component {
            fn send(
                n: exports::telemetryflow::plugin::channel::Notification,
            ) -> Result<
                exports::telemetryflow::plugin::channel::Receipt,
                exports::telemetryflow::plugin::channel::SendError,
            > {
                use exports::telemetryflow::plugin::channel as c;
                use $crate::channel::Channel as _;
                use $crate::plugin::Describe as _;
                let status = |s: c::AlertStatus| match s {
                    c::AlertStatus::Firing => $crate::channel::Status::Firing,
                    c::AlertStatus::Resolved => $crate::channel::Status::Resolved,
                };
                let config = <$plugin>::config(&n.config).map_err(|p| {
                    c::SendError::Permanent(format!("invalid config: {}: {}", p.path, p.message))
                })?;
                let notification = $crate::channel::Notification {
                    idempotency_key: n.idempotency_key,
                    group_key: n.group_key,
                    group_labels: n.group_labels,
                    common_labels: n.common_labels,
                    common_annotations: n.common_annotations,
                    status: status(n.status),
                    alerts: n
                        .alerts
                        .into_iter()
                        .map(|a| $crate::channel::Alert {
                            status: status(a.status),
                            labels: a.labels,
                            annotations: a.annotations,
                            value: a.value,
                            starts_at_ms: a.starts_at_ms,
                            ends_at_ms: a.ends_at_ms,
                            generator_url: a.generator_url,
                            fingerprint: a.fingerprint,
                        })
                        .collect(),
                    external_url: n.external_url,
                };
                match <$plugin>::send(&config, &notification, &WitHost) {
                    Ok(r) => Ok(c::Receipt {
                        message_id: r.message_id,
                        detail: r.detail,
                    }),
                    Err($crate::channel::SendFailure::Permanent(m)) => Err(c::SendError::Permanent(m)),
                    Err($crate::channel::SendFailure::Transient(m)) => Err(c::SendError::Transient(m)),
                    Err($crate::channel::SendFailure::RateLimited {
                        retry_after_ms,
                        message,
                    }) => Err(c::SendError::RateLimited(c::RateLimit {
                        retry_after_ms,
                        message,
                    })),
                }
            }
        }

        // Exported only in the component: native builds exist for the unit tests.
        #[cfg(target_arch = "wasm32")]
        export!(Component);
    };
}

/// A fake [`Host`] for channels' unit tests: records requests, answers from a script.
#[derive(Default)]
pub struct FakeHost {
    pub requests: std::cell::RefCell<Vec<Request>>,
    pub emails: std::cell::RefCell<Vec<Email>>,
    pub answer: Option<Response>,
}

impl FakeHost {
    /// Answers every request with `status` and `body`.
    pub fn answering(status: u16, body: &str) -> FakeHost {
        FakeHost {
            answer: Some(Response {
                status,
                headers: Vec::new(),
                body: body.as_bytes().to_vec(),
            }),
            ..FakeHost::default()
        }
    }

    /// The JSON body of the last request.
    pub fn last_json(&self) -> serde_json::Value {
        let reqs = self.requests.borrow();
        reqs.last()
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Host for FakeHost {
    fn http(&self, req: Request) -> Result<Response, HttpFailure> {
        self.requests.borrow_mut().push(req);
        self.answer.clone().ok_or(HttpFailure::Timeout)
    }

    fn email(&self, msg: Email) -> Result<(), String> {
        self.emails.borrow_mut().push(msg);
        Ok(())
    }
}

/// A two-alert notification for channels' unit tests.
pub fn sample(status: Status) -> Notification {
    let alert = |svc: &str| Alert {
        status,
        labels: vec![
            ("alertname".into(), "HighLatency".into()),
            ("service".into(), svc.into()),
            ("severity".into(), "critical".into()),
        ],
        annotations: vec![("summary".into(), format!("p99 of {svc} is above 500 ms"))],
        value: Some(730.0),
        starts_at_ms: 1_767_601_800_000,
        ends_at_ms: (status == Status::Resolved).then_some(1_767_602_100_000),
        generator_url: "https://tf.example/alerts/1".into(),
        fingerprint: format!("fp-{svc}"),
    };
    Notification {
        idempotency_key: "{alertname=\"HighLatency\"}@1767601830000".into(),
        group_key: "{alertname=\"HighLatency\"}".into(),
        group_labels: vec![("alertname".into(), "HighLatency".into())],
        common_labels: vec![
            ("alertname".into(), "HighLatency".into()),
            ("severity".into(), "critical".into()),
        ],
        common_annotations: Vec::new(),
        status,
        alerts: vec![alert("api"), alert("db")],
        external_url: "https://tf.example".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(rfc3339(1_767_601_800_000), "2026-01-05T08:30:00.000Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(base64(b"AC123:secret"), "QUMxMjM6c2VjcmV0");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            form(&[("To", "+15551234567"), ("Body", "a b&c")]),
            "To=%2B15551234567&Body=a+b%26c"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
        let n = sample(Status::Firing);
        assert_eq!(n.title(), "[FIRING:2] HighLatency");
        assert!(n.text().contains("service=db"));
        let r = Response {
            status: 429,
            headers: vec![("Retry-After".into(), "7".into())],
            body: Vec::new(),
        };
        assert_eq!(retry_after_ms(&r), Some(7000));
        let tg = Response {
            status: 429,
            headers: Vec::new(),
            body: br#"{"ok":false,"parameters":{"retry_after":3}}"#.to_vec(),
        };
        assert!(matches!(
            classify(&tg, "x"),
            Err(SendFailure::RateLimited {
                retry_after_ms: 3000,
                ..
            })
        ));
        let gone = Response {
            status: 410,
            headers: Vec::new(),
            body: b"gone".to_vec(),
        };
        assert!(matches!(
            classify(&gone, "x"),
            Err(SendFailure::Permanent(_))
        ));
        let busy = Response {
            status: 503,
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert!(matches!(
            classify(&busy, "x"),
            Err(SendFailure::Transient(_))
        ));
    }
}
