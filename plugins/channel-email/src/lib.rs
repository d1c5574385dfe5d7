//! `email`: the notification as an email (text and HTML) through the server's SMTP relay.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{Channel, Email, Host, Notification, Receipt, SendFailure, truncate};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::Describe;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub to: Vec<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(n: &Notification) -> String {
    let mut rows = String::new();
    for a in &n.alerts {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(a.status.as_str()),
            escape(&labels.join(" ")),
            a.value.map(|v| v.to_string()).unwrap_or_default()
        ));
    }
    format!(
        "<h2>{}</h2><p>{}</p><table border=\"1\" cellpadding=\"4\"><tr><th>status</th><th>labels</th><th>value</th></tr>{rows}</table><p><a href=\"{}\">Open in TelemetryFlow</a></p>",
        escape(&n.title()),
        escape(n.summary().unwrap_or("")),
        escape(&n.external_url)
    )
}

pub struct EmailChannel;

impl Describe for EmailChannel {
    const NAME: &'static str = "email";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Email through the server's SMTP relay, text and HTML.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["to"],
  "properties": {"to": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string", "format": "email"}}}
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if c.to.is_empty() || c.to.len() > 20 {
            return Err(ConfigProblem {
                path: "/to".into(),
                message: "1 to 20 recipients".into(),
            });
        }
        for (i, t) in c.to.iter().enumerate() {
            let ok = t
                .split_once('@')
                .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'));
            if !ok {
                return Err(ConfigProblem {
                    path: format!("/to/{i}"),
                    message: "not an email address".into(),
                });
            }
        }
        Ok(c)
    }
}

impl Channel for EmailChannel {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        host.email(Email {
            to: c.to.clone(),
            subject: truncate(&n.title(), 200),
            text: n.text(),
            html: Some(html(n)),
        })
        // The relay's refusal: worth a retry (a 4xx) or not; the host reports it in words.
        .map_err(SendFailure::Transient)?;
        Ok(Receipt {
            message_id: None,
            detail: format!("sent to {} recipient(s)", c.to.len()),
        })
    }
}

plugin_sdk::export_channel!(EmailChannel, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, Status, sample};

    use super::*;

    #[test]
    fn text_and_html() {
        let c = EmailChannel::config(r#"{"to":["oncall@example.com"]}"#).expect("c");
        let host = FakeHost::default();
        EmailChannel::send(&c, &sample(Status::Firing), &host).expect("sent");
        let m = &host.emails.borrow()[0];
        assert_eq!(m.subject, "[FIRING:2] HighLatency");
        assert!(m.html.as_deref().is_some_and(|h| h.contains("<table")));
        assert_eq!(
            EmailChannel::config(r#"{"to":["nope"]}"#)
                .expect_err("bad")
                .path,
            "/to/0"
        );
    }
}
