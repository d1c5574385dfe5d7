//! Rules evaluated by the running server on each storage stack (SQLite + embedded store;
//! PostgreSQL + ClickHouse where configured): metrics ingested over OTLP, a threshold rule on a
//! one-second interval fires for the series over the line and not for the other, each change
//! is in the rule's history with its reason; a rule whose condition plugin panics goes to
//! Error with the reason and nothing else is touched.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Api, TestServer, clickhouse_settings, queue_depth};

/// The stacks to run on: always SQLite + embedded; PostgreSQL + ClickHouse when both are
/// configured (CI makes them mandatory).
async fn stacks() -> Vec<(&'static str, TestServer, Api, String)> {
    let mut out = Vec::new();
    let (srv, api, admin) = TestServer::with_admin().await;
    out.push(("sqlite+embedded", srv, api, admin));
    if let (Some(pg), Some(ch)) = (
        crate::postgres_env::fresh_postgres().await,
        crate::clickhouse_env::clickhouse_url(),
    ) {
        let (srv, api, admin) = TestServer::with_admin_tuned(|c| {
            c.postgres_url = Some(pg);
            c.clickhouse = Some(clickhouse_settings(&ch));
        })
        .await;
        out.push(("postgres+clickhouse", srv, api, admin));
    }
    out
}

async fn poll<F: Fn(&Value) -> bool>(api: &Api, token: &str, path: &str, ok: F) -> Value {
    let mut last = Value::Null;
    for _ in 0..120 {
        let (status, body) = api.get(path, token).await;
        assert_eq!(status, 200, "{path}: {body}");
        if ok(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path} never got there: {last}");
}

fn instance<'a>(body: &'a Value, service: &str) -> Option<&'a Value> {
    body["instances"]
        .as_array()?
        .iter()
        .find(|i| i["labels"]["service_name"] == json!(service))
}

#[tokio::test]
async fn rules_fire_on_ingested_data_and_a_trapping_condition_fails_alone() {
    for (stack, srv, api, admin) in stacks().await {
        let (key, _) = api.key(&admin, &["metrics:write"], None).await;
        for (service, value) in [("checkout", 12.0), ("cart", 1.0)] {
            srv.send_json(&key, "/v1/metrics", &queue_depth(&[(service, value)]))
                .await;
        }

        let (status, rule) = api
            .post("/api/v1/alert-rules", Some(&admin), json!({
                "name": "Queue too deep",
                "queries": [{"name": "A", "range": "10m", "sql":
                    "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                     WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                     GROUP BY service_name"}],
                "condition": {"plugin": "builtin-threshold",
                              "config": {"thresholds": [{"op": "above", "value": 5}]}},
                "interval": "1s", "for": "1s", "severity": "warning",
                "labels": {"team": "payments"},
                "annotations": {"summary": "{{ $labels.service_name }} queue at {{ $value }}"},
            }))
            .await;
        assert_eq!(status, 201, "{stack}: {rule}");
        let rid = rule["alert_rule_id"].as_str().expect("id").to_string();

        // A rule whose condition panics, beside it.
        let bytes = crate::guests::guest(
            "hostile-condition",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        );
        let resp = api
            .client
            .post(format!("{}/api/v1/plugins", api.base))
            .bearer_auth(&admin)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status().as_u16(), 201, "{stack}");
        let plugin: Value = resp.json().await.expect("json");
        let (status, bad) = api
            .post(
                "/api/v1/alert-rules",
                Some(&admin),
                json!({
                    "name": "Panics",
                    "queries": [{"name": "A", "sql": "SELECT 1 AS one"}],
                    "condition": {"plugin": plugin["plugin_id"], "config": {"mode": "panic"}},
                    "interval": "1s",
                }),
            )
            .await;
        assert_eq!(status, 201, "{stack}: {bad}");
        let bad_id = bad["alert_rule_id"].as_str().expect("id").to_string();

        // The deep queue fires (through pending), the shallow one stays normal.
        let got = poll(
            &api,
            &admin,
            &format!("/api/v1/alert-rules/{rid}/instances"),
            |b| instance(b, "checkout").is_some_and(|i| i["state"] == json!("firing")),
        )
        .await;
        let checkout = instance(&got, "checkout").expect("checkout");
        assert_eq!(checkout["labels"]["team"], json!("payments"), "{got}");
        assert_eq!(checkout["labels"]["alertname"], json!("Queue too deep"));
        assert_eq!(
            checkout["labels"]["severity"],
            json!("critical"),
            "the plugin's severity: {got}"
        );
        assert_eq!(checkout["value"], json!(12.0));
        assert_eq!(
            checkout["annotations"]["summary"],
            json!("checkout queue at 12"),
            "{got}"
        );
        let cart = instance(&got, "cart").map(|i| i["state"].clone());
        assert!(cart.is_none() || cart == Some(json!("normal")), "{got}");
        assert!(
            got["evaluation"]["evaluations"].as_i64().unwrap_or(0) >= 2,
            "{got}"
        );
        assert_eq!(got["evaluation"]["last_error"], Value::Null, "{got}");

        // Its history says what happened and why.
        let history = poll(
            &api,
            &admin,
            &format!("/api/v1/alert-rules/{rid}/history"),
            |b| {
                b["history"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|e| e["status"] == json!("firing")))
            },
        )
        .await;
        let entries = history["history"].as_array().expect("entries");
        let statuses: Vec<&str> = entries
            .iter()
            .rev()
            .filter_map(|e| e["status"].as_str())
            .collect();
        assert_eq!(&statuses[..2], ["pending", "firing"], "{stack}: {history}");
        let firing = entries
            .iter()
            .find(|e| e["status"] == json!("firing"))
            .expect("firing");
        assert_eq!(firing["metadata"]["from"], json!("pending"));
        assert_eq!(
            firing["metadata"]["labels"]["service_name"],
            json!("checkout")
        );
        assert!(
            firing["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{firing}"
        );

        // A backtest from the first evaluation to now replays exactly what the live
        // evaluations did.
        let first = entries.last().expect("first entry")["timestamp"].clone();
        let (status, bt) = api
            .post(
                &format!("/api/v1/alert-rules/{rid}/backtest"),
                Some(&admin),
                json!({"from": first}),
            )
            .await;
        assert_eq!(status, 200, "{stack}: {bt}");
        let replayed: Vec<(String, String)> = bt["transitions"]
            .as_array()
            .expect("transitions")
            .iter()
            .map(|t| {
                (
                    t["to"].as_str().unwrap_or_default().to_string(),
                    t["fingerprint"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let (_, history) = api
            .get(&format!("/api/v1/alert-rules/{rid}/history"), &admin)
            .await;
        let live: Vec<(String, String)> = history["history"]
            .as_array()
            .expect("entries")
            .iter()
            .rev()
            .map(|e| {
                (
                    e["status"].as_str().unwrap_or_default().to_string(),
                    e["metadata"]["fingerprint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            replayed, live,
            "{stack}: backtest {bt} vs history {history}"
        );
        let live_times: Vec<&Value> = history["history"]
            .as_array()
            .expect("entries")
            .iter()
            .rev()
            .map(|e| &e["timestamp"])
            .collect();
        let replay_times: Vec<&Value> = bt["transitions"]
            .as_array()
            .expect("transitions")
            .iter()
            .map(|t| &t["at"])
            .collect();
        assert_eq!(replay_times.len(), live_times.len());
        // An unsaved variant: a higher line never fires.
        let (status, bt) = api
            .post("/api/v1/alert-rules/backtest", Some(&admin), json!({"from": first, "rule": {
                "name": "Deeper",
                "queries": [{"name": "A", "range": "10m", "sql":
                    "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                     WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                     GROUP BY service_name"}],
                "condition": {"plugin": "builtin-threshold",
                              "config": {"thresholds": [{"op": "above", "value": 50}]}},
                "interval": "1s",
            }}))
            .await;
        assert_eq!(status, 200, "{bt}");
        assert_eq!(bt["transitions"], json!([]), "{bt}");

        // The panicking rule is in Error with the panic's message; the good one is unaffected.
        let got = poll(
            &api,
            &admin,
            &format!("/api/v1/alert-rules/{bad_id}/instances"),
            |b| b["evaluation"]["last_error"].is_string(),
        )
        .await;
        assert!(
            got["evaluation"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("boom")),
            "{got}"
        );
        assert!(
            got["instances"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["state"] == json!("error"))),
            "{got}"
        );
        // The uploaded plugin that keeps failing is disabled by the circuit breaker, visibly;
        // its rule stays in Error with the reason.
        let pid = plugin["plugin_id"].as_str().expect("plugin id").to_string();
        let off = poll(&api, &admin, &format!("/api/v1/plugins/{pid}"), |b| {
            b["enabled"] == json!(false)
        })
        .await;
        assert!(
            off["disabled_reason"]
                .as_str()
                .is_some_and(|r| r.contains("5 failed calls")),
            "{off}"
        );
        let (_, alerts) = api.get("/api/v1/alerts", &admin).await;
        let list = alerts["alerts"].as_array().expect("alerts");
        assert!(
            list.iter()
                .any(|a| a["alert_rule_id"] == json!(rid) && a["state"] == json!("firing")),
            "{alerts}"
        );
        assert!(
            list.iter()
                .any(|a| a["alert_rule_id"] == json!(bad_id) && a["state"] == json!("error")),
            "{alerts}"
        );

        // A disabled rule stops being evaluated.
        let (status, _, _) = api
            .call(
                "PATCH",
                &format!("/api/v1/alert-rules/{bad_id}"),
                Some(&admin),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, a) = api
            .get(&format!("/api/v1/alert-rules/{bad_id}/instances"), &admin)
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, b) = api
            .get(&format!("/api/v1/alert-rules/{bad_id}/instances"), &admin)
            .await;
        assert_eq!(
            a["evaluation"]["evaluations"], b["evaluation"]["evaluations"],
            "{stack}"
        );
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn alert_state_survives_a_restart() {
    let (mut srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["metrics:write"], None).await;
    srv.send_json(&key, "/v1/metrics", &queue_depth(&[("checkout", 12.0)]))
        .await;
    let (status, rule) = api
        .post("/api/v1/alert-rules", Some(&admin), json!({
            "name": "Queue too deep",
            "queries": [{"name": "A", "range": "1h", "sql":
                "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                 WHERE metric_name = 'queue_depth' AND timestamp >= $__from GROUP BY service_name"}],
            "condition": {"plugin": "builtin-threshold",
                          "config": {"thresholds": [{"op": "above", "value": 5}]}},
            "interval": "1s",
        }))
        .await;
    assert_eq!(status, 201, "{rule}");
    let rid = rule["alert_rule_id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/alert-rules/{rid}/instances");
    let before = poll(&api, &admin, &path, |b| {
        instance(b, "checkout").is_some_and(|i| i["state"] == json!("firing"))
    })
    .await;
    let fired_at = instance(&before, "checkout").expect("checkout")["fired_at"].clone();
    let evaluations = before["evaluation"]["evaluations"].as_i64().expect("count");

    let api = srv.restart(|_| {}).await;
    let admin = api.admin().await;
    let after = poll(&api, &admin, &path, |b| {
        b["evaluation"]["evaluations"].as_i64().unwrap_or(0) > evaluations + 2
    })
    .await;
    let checkout = instance(&after, "checkout").expect("checkout");
    assert_eq!(checkout["state"], json!("firing"), "{after}");
    assert_eq!(
        checkout["fired_at"], fired_at,
        "still the same firing: {after}"
    );
    let (_, history) = api
        .get(&format!("/api/v1/alert-rules/{rid}/history"), &admin)
        .await;
    let firings = history["history"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["status"] == json!("firing"))
        .count();
    assert_eq!(firings, 1, "no second firing after the restart: {history}");
    srv.shutdown().await;
}
