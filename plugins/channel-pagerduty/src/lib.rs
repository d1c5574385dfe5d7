//! `pagerduty`: PagerDuty Events API v2. A firing group triggers, a resolved one resolves, with
//! the same `dedup_key` from trigger to resolve (the group key, hashed when longer than 255).
//! `payload.summary` ≤ 1024, `payload.severity` one of critical, error, warning, info. 202 is
//! success; 429 and 5xx are retried; 400 is permanent.

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
    pub routing_key: String,
    #[serde(default = "default_url")]
    pub url: String,
    /// `payload.source`; default: the external URL.
    #[serde(default)]
    pub source: Option<String>,
    /// The severity when the alerts carry none (or an unknown one).
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

fn default_severity() -> String {
    "error".into()
}

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// A dedup key ≤ 255 characters, the same for the group from trigger to resolve.
pub fn dedup_key(group_key: &str) -> String {
    if group_key.len() <= 255 {
        return group_key.to_string();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group_key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("tf-{h:016x}")
}

pub fn payload(c: &Config, n: &Notification) -> Value {
    let key = dedup_key(&n.group_key);
    if n.status == Status::Resolved {
        return json!({"routing_key": c.routing_key, "event_action": "resolve", "dedup_key": key});
    }
    let severity = n
        .severity()
        .filter(|s| SEVERITIES.contains(s))
        .unwrap_or(&c.severity);
    let summary = match n.summary() {
        Some(s) => format!("{}: {s}", n.title()),
        None => n.title(),
    };
    json!({
        "routing_key": c.routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": truncate(&summary, 1024),
            "source": c.source.clone().unwrap_or_else(|| n.external_url.clone()),
            "severity": severity,
            "custom_details": {
                "firing": n.alerts.iter().filter(|a| a.status == Status::Firing).count(),
                "alerts": n.text(),
            },
        },
        "client": "TelemetryFlow",
        "client_url": n.external_url,
    })
}

pub struct PagerDuty;

impl Describe for PagerDuty {
    const NAME: &'static str = "pagerduty";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "PagerDuty Events API v2: trigger and resolve with a stable dedup key.";
    const SCHEMA: &'static str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object", "additionalProperties": false, "required": ["routing_key"],
  "properties": {
    "routing_key": {"type": "string", "minLength": 1, "x-secret": true},
    "url": {"type": "string", "format": "uri", "default": "https://events.pagerduty.com/v2/enqueue"},
    "source": {"type": "string"},
    "severity": {"enum": ["critical", "error", "warning", "info"], "default": "error"}
  }
}"#;
    type Config = Config;

    fn config(json: &str) -> Result<Config, ConfigProblem> {
        let c: Config = parse(json)?;
        if c.routing_key.trim().is_empty() {
            return Err(ConfigProblem {
                path: "/routing_key".into(),
                message: "must not be empty".into(),
            });
        }
        if !SEVERITIES.contains(&c.severity.as_str()) {
            return Err(ConfigProblem {
                path: "/severity".into(),
                message: "must be critical, error, warning or info".into(),
            });
        }
        Ok(c)
    }
}

impl Channel for PagerDuty {
    fn send(c: &Config, n: &Notification, host: &dyn Host) -> Result<Receipt, SendFailure> {
        let r = host.http(Request::post_json(&c.url, &payload(c, n)))?;
        classify(&r, "PagerDuty")?;
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok(Receipt {
            message_id: body["dedup_key"].as_str().map(str::to_string),
            detail: body["status"].as_str().unwrap_or("accepted").to_string(),
        })
    }
}

plugin_sdk::export_channel!(PagerDuty, wit = "../../wit");

#[cfg(test)]
mod tests {
    use plugin_sdk::channel::{FakeHost, sample};

    use super::*;

    #[test]
    fn trigger_then_resolve_with_one_dedup_key() {
        let c = PagerDuty::config(r#"{"routing_key":"R0UT1NG"}"#).expect("c");
        let host = FakeHost::answering(202, r#"{"status":"success","dedup_key":"k"}"#);
        let r = PagerDuty::send(&c, &sample(Status::Firing), &host).expect("sent");
        assert_eq!(r.message_id.as_deref(), Some("k"));
        let t = host.last_json();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["payload"]["severity"], "critical");
        assert!(
            t["payload"]["summary"]
                .as_str()
                .is_some_and(|s| s.len() <= 1024)
        );
        PagerDuty::send(&c, &sample(Status::Resolved), &host).expect("sent");
        let r2 = host.last_json();
        assert_eq!(r2["event_action"], "resolve");
        assert_eq!(r2["dedup_key"], t["dedup_key"]);
        assert!(dedup_key(&"x".repeat(400)).len() <= 255);
        assert_eq!(
            PagerDuty::config(r#"{"routing_key":"k","severity":"high"}"#)
                .expect_err("bad")
                .path,
            "/severity"
        );
        let bad = FakeHost::answering(400, r#"{"status":"invalid event"}"#);
        assert!(matches!(
            PagerDuty::send(&c, &sample(Status::Firing), &bad),
            Err(SendFailure::Permanent(_))
        ));
    }
}
