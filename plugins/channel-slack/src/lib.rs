//! `slack`: posts to a Slack incoming webhook (`text` plus `blocks`). Slack answers 200 `ok`;
//! 429 with `Retry-After` is retried then; 400, 403, 404 and 410 (a bad or revoked webhook) are
//! permanent.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{
    Channel, Host, Notification, Receipt, Request, SendFailure, classify, truncate,
};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::Describe;
use serde_json::{Value, json};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub webhook_url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
}

/// Slack's mrkdwn escaping: `&`, `<`, `>`.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn payload(c: &Config, n: &Notification) -> Value {
    let title = escape(&n.title());
    let mut lines = Vec::new();
    if let Some(s) = n.summary() {
        lines.push(escape(s));
    }
    for a in n.alerts.iter().take(20) {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(format!(
            "• *{}* {}",
            a.status.as_str(),
            escape(&labels.join(" "))
        ));
    }
    let mut body = json!({
        "text": truncate(&title, 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&n.title(), 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&lines.join("\n"), 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{}|Open in TelemetryFlow>", n.external_url)}]}
        ],
    });
    if let Some(u) = &c.username {
        body["username"] = json!(u);
    }
    if let Some(i) = &c.icon_emoji {
        body["icon_emoji"] = json!(i);
    }
    body
}

pub struct Slack;

impl Describe for Slack {
    const NAME: &'static str = "slack";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Posts to a Slack incoming webhook.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["webhook_url"],
  "properties": {
    "webhook_url": {"type": "string", "format": "uri", "x-secret": true},
    "username": {"type": "string"},
    "icon_emoji": {"type": "string"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if !c.webhook_url.starts_with("https://") && !c.webhook_url.starts_with("http://") {
            return Err(ConfigProblem {
                path: "/webhook_url".into(),
                message: "must be the https URL of an incoming webhook".into(),
            });
        }
        Ok(c)
    }
}

impl Channel for Slack {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let r = host.http(Request::post_json(&c.webhook_url, &payload(c, n)))?;
        classify(&r, "Slack")?;
        Ok(Receipt {
            message_id: None,
            detail: String::from_utf8_lossy(&r.body).chars().take(100).collect(),
        })
    }
}

plugin_sdk::export_channel!(Slack, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, Status, sample};

    use super::*;

    #[test]
    fn text_and_blocks() {
        let c = Slack::config(r#"{"webhook_url":"https://hooks.slack.com/services/T/B/x"}"#)
            .expect("c");
        let host = FakeHost::answering(200, "ok");
        let r = Slack::send(&c, &sample(Status::Firing), &host).expect("sent");
        assert_eq!(r.detail, "ok");
        let body = host.last_json();
        assert_eq!(body["text"], "[FIRING:2] HighLatency");
        assert_eq!(body["blocks"][0]["type"], "header");
        assert_eq!(escape("a<b>&"), "a&lt;b&gt;&amp;");
        let gone = FakeHost::answering(410, "no_service");
        assert!(matches!(
            Slack::send(&c, &sample(Status::Firing), &gone),
            Err(SendFailure::Permanent(_))
        ));
    }
}
