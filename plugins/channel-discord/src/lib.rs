//! `discord`: a Discord webhook (`/api/webhooks/<id>/<token>`) with `content` (≤ 2000) and one
//! embed (≤ 10 allowed). 204 is success; 429 carries a JSON `retry_after` in seconds; 404 means
//! the webhook is gone (permanent).

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{
    Channel, Host, Notification, Receipt, Request, SendFailure, Status, classify, truncate,
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
}

pub fn payload(c: &Config, n: &Notification) -> Value {
    let fields: Vec<Value> = n
        .alerts
        .iter()
        .take(25)
        .map(|a| {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!({"name": a.status.as_str(), "value": truncate(&labels.join(" "), 1024)})
        })
        .collect();
    let mut body = json!({
        "content": truncate(&n.title(), 2000),
        "embeds": [{
            "title": truncate(&n.title(), 256),
            "description": truncate(n.summary().unwrap_or(""), 4096),
            "url": n.external_url,
            "color": if n.status == Status::Firing { 0x00e0_3e2f } else { 0x002e_b886 },
            "fields": fields,
        }],
        "allowed_mentions": {"parse": []},
    });
    if let Some(u) = &c.username {
        body["username"] = json!(u);
    }
    body
}

pub struct Discord;

impl Describe for Discord {
    const NAME: &'static str = "discord";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Discord webhooks: content and an embed.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["webhook_url"],
  "properties": {
    "webhook_url": {"type": "string", "format": "uri", "x-secret": true},
    "username": {"type": "string"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if !c.webhook_url.contains("/api/webhooks/") {
            return Err(ConfigProblem {
                path: "/webhook_url".into(),
                message:
                    "a Discord webhook URL looks like https://discord.com/api/webhooks/<id>/<token>"
                        .into(),
            });
        }
        Ok(c)
    }
}

impl Channel for Discord {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let r = host.http(Request::post_json(&c.webhook_url, &payload(c, n)))?;
        classify(&r, "Discord")?;
        Ok(Receipt {
            message_id: None,
            detail: format!("delivered ({})", r.status),
        })
    }
}

plugin_sdk::export_channel!(Discord, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, sample};

    use super::*;

    #[test]
    fn content_and_embed() {
        let c = Discord::config(r#"{"webhook_url":"https://discord.com/api/webhooks/1/t"}"#)
            .expect("c");
        let host = FakeHost::answering(204, "");
        Discord::send(&c, &sample(Status::Firing), &host).expect("sent");
        let b = host.last_json();
        assert_eq!(b["content"], "[FIRING:2] HighLatency");
        assert_eq!(b["embeds"].as_array().map(Vec::len), Some(1));
        let limited = FakeHost::answering(
            429,
            r#"{"message":"You are being rate limited.","retry_after":1.5}"#,
        );
        assert!(matches!(
            Discord::send(&c, &sample(Status::Firing), &limited),
            Err(SendFailure::RateLimited {
                retry_after_ms: 1500,
                ..
            })
        ));
        let gone = FakeHost::answering(404, r#"{"message":"Unknown Webhook"}"#);
        assert!(matches!(
            Discord::send(&c, &sample(Status::Firing), &gone),
            Err(SendFailure::Permanent(_))
        ));
    }
}
