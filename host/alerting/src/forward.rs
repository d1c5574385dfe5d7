//! Forwarding to an external Alertmanager, for teams that already route there: after each
//! evaluation, the rule's firing alerts (and the ones it just resolved) go to
//! `<url>/api/v2/alerts` as Prometheus sends them: firing alerts with an `endsAt` four
//! intervals ahead (re-sent at every evaluation, so they expire if we stop), resolved ones
//! with the time they resolved. The URL is the operator's (configuration), not a user's.

use std::time::Duration;

use alert::dispatch::{Alert, Status};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use storage::AlertRuleRecord;

/// Posts alerts to one Alertmanager.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    url: String,
    external_url: String,
}

fn time(ms: i64) -> Value {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

impl Forwarder {
    /// `url`: the Alertmanager's base URL (`http://alertmanager:9093`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: &str, external_url: &str) -> Result<Forwarder, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Forwarder {
            client,
            url: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            external_url: external_url.trim_end_matches('/').to_string(),
        })
    }

    /// The body Alertmanager's API v2 takes for `alerts` of `rule` at `now_ms`.
    pub fn body(&self, rule: &AlertRuleRecord, alerts: &[Alert], now_ms: i64) -> Value {
        let interval = crate::rule_spec(rule, Vec::new())
            .map(|s| s.schedule(&rule.alert_rule_id).interval_ms(now_ms))
            .unwrap_or(60_000);
        let expires = now_ms + 4 * interval.max(60_000);
        let map = |l: &[(String, String)]| -> Value {
            Value::Object(l.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        Value::Array(
            alerts
                .iter()
                .map(|a| {
                    json!({
                        "labels": map(&a.labels),
                        "annotations": map(&a.annotations),
                        "startsAt": time(a.starts_at_ms),
                        "endsAt": time(match a.status {
                            Status::Firing => expires,
                            Status::Resolved => a.ends_at_ms.unwrap_or(now_ms),
                        }),
                        "generatorURL": format!("{}/alerts/{}", self.external_url, rule.alert_rule_id),
                    })
                })
                .collect(),
        )
    }

    /// Sends them; failures are logged (the next evaluation sends the state again).
    pub async fn forward(&self, rule: &AlertRuleRecord, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let body = self.body(rule, alerts, Utc::now().timestamp_millis());
        match self.client.post(&self.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "Alertmanager refused the alerts"),
            Err(e) => tracing::warn!(error = %e, "Alertmanager could not be reached"),
        }
    }
}
