//! `msteams`: a Teams Workflows ("When a Teams webhook request is received") flow URL, sent a
//! message with one Adaptive Card attachment. 202 is success; 429 and 5xx are retried.

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
    pub url: String,
}

pub fn card(n: &Notification) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
        "color": if n.status == Status::Firing { "Attention" } else { "Good" },
        "text": truncate(&n.title(), 400),
    })];
    if let Some(s) = n.summary() {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": truncate(s, 2000)}));
    }
    let facts: Vec<Value> = n
        .alerts
        .iter()
        .take(20)
        .map(|a| {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!({"title": a.status.as_str(), "value": labels.join(" ")})
        })
        .collect();
    body.push(json!({"type": "FactSet", "facts": facts}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": "Open in TelemetryFlow", "url": n.external_url}],
            },
        }],
    })
}

pub struct Teams;

impl Describe for Teams {
    const NAME: &'static str = "msteams";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Microsoft Teams Workflows: an Adaptive Card message.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["url"],
  "properties": {"url": {"type": "string", "format": "uri", "x-secret": true}}
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if !c.url.starts_with("https://") && !c.url.starts_with("http://") {
            return Err(ConfigProblem {
                path: "/url".into(),
                message: "must be the flow's https URL".into(),
            });
        }
        Ok(c)
    }
}

impl Channel for Teams {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let r = host.http(Request::post_json(&c.url, &card(n)))?;
        classify(&r, "Teams")?;
        Ok(Receipt {
            message_id: None,
            detail: format!("accepted ({})", r.status),
        })
    }
}

plugin_sdk::export_channel!(Teams, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, sample};

    use super::*;

    #[test]
    fn an_adaptive_card_message() {
        let c = Teams::config(r#"{"url":"https://prod.westus.logic.azure.com/workflows/x"}"#)
            .expect("c");
        let host = FakeHost::answering(202, "");
        Teams::send(&c, &sample(Status::Firing), &host).expect("sent");
        let b = host.last_json();
        assert_eq!(b["type"], "message");
        assert_eq!(
            b["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(b["attachments"][0]["content"]["type"], "AdaptiveCard");
        let body = b["attachments"][0]["content"]["body"]
            .as_array()
            .expect("body");
        let facts = body.iter().find(|e| e["type"] == "FactSet").expect("facts");
        assert_eq!(facts["facts"].as_array().map(Vec::len), Some(2));
    }
}
