//! Outgoing HTTP for plugins (notification channels, and the host's "send a test
//! notification"), under one policy:
//!
//! - **https only**; plain http only where the operator allows it;
//! - **public addresses only**, checked after DNS on every address the name resolves to
//!   (loopback, private, link-local and cloud metadata, carrier-grade NAT, unique-local,
//!   multicast, documentation, reserved; IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged
//!   by the IPv4 address inside);
//! - the connection goes to the address that was checked (the name is pinned to it), so a DNS
//!   answer that changes between check and connect (rebinding) gains nothing;
//! - **no redirects**: a 3xx comes back to the plugin as it is;
//! - no proxy from the environment; bounded request and response sizes; a timeout that never
//!   outlives the plugin call's own deadline.
//!
//! Tests need fake services on loopback: [`Policy::allow_loopback_for_tests`] permits loopback
//! targets (over http too). It is off by default and logs a warning when an [`Egress`] is built
//! with it, and on every request it lets through because of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::Url;

/// What outgoing requests may do.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allow `http://` URLs (public addresses still only).
    pub allow_plain_http: bool,
    /// TEST ONLY: allow loopback addresses (127.0.0.0/8, ::1), over http or https.
    pub allow_loopback_for_tests: bool,
    /// The longest a request may take (a plugin may ask for less).
    pub max_timeout: Duration,
    pub max_request_bytes: usize,
    /// Response bodies are cut here (the response says it was).
    pub max_response_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_plain_http: false,
            allow_loopback_for_tests: false,
            max_timeout: Duration::from_secs(10),
            max_request_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the caller wants (capped by the policy and the deadline).
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than the policy's cap and was cut.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The policy refused the request; the message says why.
    #[error("blocked: {0}")]
    Blocked(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// Why an address is not public (`None`: it is).
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (127, ..) => "loopback",
        (10, ..) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

fn embedded_v4(bits: u128, shift: u32) -> Ipv4Addr {
    let n = u32::try_from((bits >> shift) & 0xffff_ffff).unwrap_or(0);
    Ipv4Addr::from(n)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let bits = u128::from(ip);
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // NAT64 (64:ff9b::/96): judged by the IPv4 address it carries.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return non_public_v4(embedded_v4(bits, 0));
    }
    // 6to4 (2002::/16): the IPv4 address in bits 16..48.
    if seg[0] == 0x2002 {
        return non_public_v4(embedded_v4(bits, 80));
    }
    Some(match seg[0] {
        0x0000 => "reserved (IPv4-compatible)",
        0x0064 if seg[1] == 0xff9b && seg[2] == 0x0001 => "local-use NAT64",
        0x0100 if seg[1..4] == [0, 0, 0] => "discard-only",
        0x2001 if seg[1] == 0x0000 => "Teredo",
        0x2001 if seg[1] == 0x0db8 => "documentation",
        s if s & 0xfe00 == 0xfc00 => "unique local (private)",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xffc0 == 0xfec0 => "site-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The policy's verdict on one address.
fn check_address(policy: &Policy, host: &str, ip: IpAddr) -> Result<(), EgressError> {
    match non_public(ip) {
        None => Ok(()),
        Some("loopback") if policy.allow_loopback_for_tests => {
            tracing::warn!(%host, %ip, "TEST ONLY: a plugin request goes to a loopback address because allow_loopback_for_tests is on");
            Ok(())
        }
        Some(class) => Err(EgressError::Blocked(if host == ip.to_string() {
            format!("{ip} is a {class} address; plugins may reach public addresses only")
        } else {
            format!(
                "{host} resolves to {ip}, a {class} address; plugins may reach public addresses only"
            )
        })),
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Headers the host sets itself.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "proxy-authorization",
];

/// The outgoing-HTTP client of the host.
pub struct Egress {
    policy: Policy,
}

impl Egress {
    pub fn new(policy: Policy) -> Egress {
        if policy.allow_loopback_for_tests {
            tracing::warn!(
                "TEST ONLY: plugins may send HTTP requests to loopback addresses \
                 (allow_loopback_for_tests is on); never run a production server like this"
            );
        }
        Egress { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Sends one request under the policy, finishing by `deadline` if one is given.
    ///
    /// # Errors
    /// [`EgressError`]: refused by the policy (with the reason), timed out, could not connect,
    /// or malformed.
    pub async fn send(
        &self,
        req: Request,
        deadline: Option<Instant>,
    ) -> Result<Response, EgressError> {
        let p = &self.policy;
        let method = req.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(EgressError::InvalidRequest(format!(
                "method {:?}: use GET, POST, PUT, PATCH or DELETE",
                req.method
            )));
        }
        if req.body.len() > p.max_request_bytes {
            return Err(EgressError::InvalidRequest(format!(
                "the body is {} bytes; the limit is {}",
                req.body.len(),
                p.max_request_bytes
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &req.headers {
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(EgressError::InvalidRequest(format!(
                    "header {k:?} is set by the host"
                )));
            }
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| EgressError::InvalidRequest(format!("bad header name {k:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| EgressError::InvalidRequest(format!("bad value of header {k:?}")))?;
            headers.append(name, value);
        }
        let url = Url::parse(&req.url)
            .map_err(|e| EgressError::InvalidRequest(format!("bad URL {:?}: {e}", req.url)))?;
        let plain = match url.scheme() {
            "https" => false,
            "http" => true,
            other => {
                return Err(EgressError::Blocked(format!(
                    "scheme {other:?}: only https (and http where allowed)"
                )));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| EgressError::InvalidRequest("the URL has no host".into()))?
            .to_string();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| EgressError::InvalidRequest("the URL has no port".into()))?;

        let mut timeout = req.timeout.unwrap_or(p.max_timeout).min(p.max_timeout);
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        if timeout.is_zero() {
            return Err(EgressError::Timeout);
        }
        let started = Instant::now();

        // Resolve once, check every address, connect to the one checked.
        let addrs: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => {
                let found =
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await
                        .map_err(|_| EgressError::Timeout)?
                        .map_err(|e| {
                            EgressError::Connection(format!("cannot resolve {host}: {e}"))
                        })?;
                found.map(|a| a.ip()).collect()
            }
        };
        let Some(&ip) = addrs.first() else {
            return Err(EgressError::Connection(format!("{host} has no address")));
        };
        for a in &addrs {
            check_address(p, &host, *a)?;
        }
        let loopback = non_public(ip) == Some("loopback");
        if plain && !p.allow_plain_http && !loopback {
            return Err(EgressError::Blocked(
                "plain http is not allowed here; use https".into(),
            ));
        }

        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(EgressError::Timeout);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(remaining)
            .connect_timeout(remaining.min(Duration::from_secs(5)));
        if url.domain().is_some() {
            builder = builder.resolve(&host, SocketAddr::new(ip, 0));
        }
        let client = builder
            .build()
            .map_err(|e| EgressError::Connection(e.to_string()))?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| EgressError::InvalidRequest(e.to_string()))?;
        let result = async {
            let mut resp = client
                .request(method, url)
                .headers(headers)
                .body(req.body)
                .send()
                .await?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp.chunk().await? {
                let room = p.max_response_bytes - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Response {
                status,
                headers,
                body,
                truncated,
            })
        }
        .await;
        result.map_err(|e| {
            if e.is_timeout() {
                EgressError::Timeout
            } else {
                EgressError::Connection(without_url(&e))
            }
        })
    }
}

/// A reqwest error's message without the URL (which may carry a secret, e.g. a webhook token).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let blocked = [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
        ];
        for a in blocked {
            let ip: IpAddr = a.parse().expect("ip");
            assert!(non_public(ip).is_some(), "{a} must be blocked");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            let ip: IpAddr = a.parse().expect("ip");
            assert_eq!(non_public(ip), None, "{a} is public");
        }
        assert_eq!(
            non_public("169.254.169.254".parse().expect("ip")),
            Some("cloud metadata")
        );
    }

    #[tokio::test]
    async fn refusals_say_why() {
        let e = Egress::new(Policy::default());
        let send = |url: &str, method: &str| Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        };
        for (url, want) in [
            ("https://127.0.0.1/x", "loopback"),
            ("https://10.1.2.3/", "private"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
            ("https://[::1]:8443/", "loopback"),
            ("https://[::ffff:7f00:1]/", "loopback"),
            ("https://localhost/", "localhost resolves to"),
            ("ftp://example.com/", "scheme"),
            ("file:///etc/passwd", "scheme"),
        ] {
            let err = e.send(send(url, "POST"), None).await.expect_err(url);
            assert!(
                matches!(&err, EgressError::Blocked(m) if m.contains(want)),
                "{url}: {err}"
            );
        }
        assert!(matches!(
            e.send(send("https://example.com/", "TRACE"), None).await,
            Err(EgressError::InvalidRequest(_))
        ));
        let late = Some(Instant::now());
        assert_eq!(
            e.send(send("https://127.0.0.1/", "GET"), late).await.err(),
            Some(EgressError::Timeout),
            "no time left: nothing is sent"
        );
        let mut with_host = send("https://example.com/", "GET");
        with_host.headers.push(("Host".into(), "internal".into()));
        assert!(matches!(
            e.send(with_host, None).await,
            Err(EgressError::InvalidRequest(_))
        ));
    }
}
