//! `webhook`: POSTs the Alertmanager webhook payload (version 4) to a URL, so anything that
//! takes Alertmanager's webhooks takes ours: `version`, `groupKey`, `truncatedAlerts`, `status`,
//! `receiver`, `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, `alerts[]`.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

use plugin_sdk::channel::{
    Channel, Host, Notification, Receipt, Request, SendFailure, Status, classify, rfc3339,
};
use plugin_sdk::config::{ConfigProblem, parse};
use plugin_sdk::plugin::Describe;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: String,
    /// Extra headers, e.g. an `authorization` the receiver expects.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The `receiver` field (default `telemetryflow`).
    #[serde(default)]
    pub receiver: Option<String>,
    /// At most this many alerts per request (0: all); the rest are counted in
    /// `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
}

fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// The Alertmanager v4 payload.
pub fn payload(c: &Config, n: &Notification) -> Value {
    let keep = if c.max_alerts == 0 {
        n.alerts.len()
    } else {
        c.max_alerts.min(n.alerts.len())
    };
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.alerts.len() - keep,
        "status": n.status.as_str(),
        "receiver": c.receiver.as_deref().unwrap_or("telemetryflow"),
        "groupLabels": object(&n.group_labels),
        "commonLabels": object(&n.common_labels),
        "commonAnnotations": object(&n.common_annotations),
        "externalURL": n.external_url,
        "alerts": n.alerts.iter().take(keep).map(|a| json!({
            "status": a.status.as_str(),
            "labels": object(&a.labels),
            "annotations": object(&a.annotations),
            "startsAt": rfc3339(a.starts_at_ms),
            "endsAt": match (a.status, a.ends_at_ms) {
                (Status::Resolved, Some(t)) => rfc3339(t),
                _ => "0001-01-01T00:00:00Z".to_string(),
            },
            "generatorURL": a.generator_url,
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

pub struct Webhook;

impl Describe for Webhook {
    const NAME: &'static str = "webhook";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "POSTs the Alertmanager webhook payload (v4) to a URL.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["url"],
  "properties": {
    "url": {"type": "string", "format": "uri", "x-secret": true},
    "headers": {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "string"}]}, "x-secret": true},
    "receiver": {"type": "string"},
    "max_alerts": {"type": "integer", "minimum": 0, "default": 0}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if !(c.url.starts_with("https://") || c.url.starts_with("http://")) {
            return Err(ConfigProblem {
                path: "/url".into(),
                message: "must be an http(s) URL".into(),
            });
        }
        Ok(c)
    }
}

impl Channel for Webhook {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let mut req = Request::post_json(&c.url, &payload(c, n));
        req.headers.extend(c.headers.iter().cloned());
        req.headers
            .push(("idempotency-key".into(), n.idempotency_key.clone()));
        let r = host.http(req)?;
        classify(&r, "the webhook")?;
        Ok(Receipt {
            message_id: None,
            detail: format!("delivered ({})", r.status),
        })
    }
}

plugin_sdk::export_channel!(Webhook, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, sample};

    use super::*;

    #[test]
    fn alertmanager_v4_shape() {
        let c = Webhook::config(r#"{"url":"https://hooks.example/x","max_alerts":1}"#).expect("c");
        let host = FakeHost::answering(200, "");
        Webhook::send(&c, &sample(Status::Resolved), &host).expect("sent");
        let body = host.last_json();
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["truncatedAlerts"], 1);
        assert_eq!(body["groupLabels"]["alertname"], "HighLatency");
        assert_eq!(body["alerts"][0]["startsAt"], "2026-01-05T08:30:00.000Z");
        assert_eq!(body["alerts"][0]["endsAt"], "2026-01-05T08:35:00.000Z");
        assert_eq!(body["alerts"][0]["fingerprint"], "fp-api");
        let req = &host.requests.borrow()[0];
        assert_eq!(req.method, "POST");
        assert!(Webhook::config(r#"{"url":"ftp://x"}"#).is_err());
        let failing = FakeHost::answering(503, "busy");
        assert!(matches!(
            Webhook::send(&c, &sample(Status::Firing), &failing),
            Err(SendFailure::Transient(_))
        ));
    }
}
