//! Acceptance in the Alertmanager style: the real server, a metric ingested over OTLP, a rule
//! on a one-second interval, and fake receivers on loopback that record every request with
//! its arrival time. Asserted: the first notification waits `group_wait` after the alert
//! fires, repeats are `repeat_interval` apart, the resolve arrives once the series has gone,
//! nothing arrives twice, and a channel that fails permanently is recorded and does not hold
//! up the other.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, queue_depth};

#[derive(Clone, Debug)]
pub(crate) struct Arrival {
    pub at: Instant,
    pub idempotency_key: String,
    pub body: Value,
}

pub(crate) type Log = Arc<Mutex<Vec<Arrival>>>;

/// A receiver answering `status` to everything, recording each request.
pub(crate) async fn receiver(status: u16) -> (u16, Log) {
    receiver_answering(Arc::new(AtomicU16::new(status))).await
}

/// A receiver answering whatever `status` holds at the time, recording each request.
pub(crate) async fn receiver_answering(status: Arc<AtomicU16>) -> (u16, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let app = axum::Router::new().fallback(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (l, status) = (l.clone(), Arc::clone(&status));
            async move {
                l.lock().expect("lock").push(Arrival {
                    at: Instant::now(),
                    idempotency_key: headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                (
                    axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst))
                        .expect("status"),
                    "{\"ok\":false,\"error\":\"invalid_token\"}",
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, log)
}

#[tokio::test]
async fn notifications_wait_repeat_resolve_and_never_arrive_twice() {
    scenario(None).await;
    if let Some(stack) = crate::support::postgres_and_clickhouse("the delivery scenario").await {
        scenario(Some(stack)).await;
    }
}

/// The scenario on SQLite + embedded (`None`) or PostgreSQL + ClickHouse.
async fn scenario(pg_ch: Option<(String, String)>) {
    let (hook_port, hooks) = receiver(200).await;
    let (slack_port, slacks) = receiver(403).await;
    let (am_port, forwarded) = receiver(200).await;
    let (srv, api, admin) = TestServer::for_alerts(pg_ch.as_ref(), |c| {
        c.alertmanager_url = Some(format!("http://127.0.0.1:{am_port}"));
    })
    .await;

    let (status, group) = api
        .post(
            "/api/v1/notification-groups",
            Some(&admin),
            json!({
                "name": "oncall", "group_by": ["alertname"],
                "group_wait": "1s", "group_interval": "1s", "repeat_interval": "4s",
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["group_id"].as_str().expect("id").to_string();
    for (name, kind, config) in [
        (
            "hook",
            "webhook",
            json!({"url": format!("http://127.0.0.1:{hook_port}/alerts")}),
        ),
        (
            "slack",
            "slack",
            json!({"webhook_url": format!("http://127.0.0.1:{slack_port}/services/T/B/x")}),
        ),
    ] {
        let (status, ch) = api
            .post(
                "/api/v1/channels",
                Some(&admin),
                json!({"name": name, "type": kind, "notification_group_id": gid, "config": config}),
            )
            .await;
        assert_eq!(status, 201, "{ch}");
    }
    let (_, chans) = api
        .get(&format!("/api/v1/channels?group_id={gid}"), &admin)
        .await;
    let slack_id = chans["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == json!("slack")))
        .and_then(|c| c["channel_id"].as_str())
        .expect("slack channel")
        .to_string();

    // One data point, in range for 7 s: the alert fires, then its series vanishes.
    let (key, _) = api.key(&admin, &["metrics:write"], None).await;
    srv.send_json(&key, "/v1/metrics", &queue_depth(&[("checkout", 12.0)]))
        .await;
    let (status, rule) = api
        .post("/api/v1/alert-rules", Some(&admin), json!({
            "name": "QueueDeep",
            "queries": [{"name": "A", "range": "7s", "sql":
                "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                 WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                 GROUP BY service_name"}],
            "condition": {"plugin": "builtin-threshold",
                          "config": {"thresholds": [{"op": "above", "value": 5}]}},
            "interval": "1s", "no_data": "ok",
            "notification_groups": [gid],
        }))
        .await;
    assert_eq!(status, 201, "{rule}");
    let rid = rule["alert_rule_id"].as_str().expect("id").to_string();

    // Wait for the resolve.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let resolved = hooks
            .lock()
            .expect("lock")
            .iter()
            .any(|a| a.body["status"] == json!("resolved"));
        if resolved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no resolve arrived: {:?}",
            hooks.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = hooks.lock().expect("lock").clone();

    // What arrived: firing (maybe repeated), then one resolve, each exactly once.
    let statuses: Vec<&str> = got
        .iter()
        .filter_map(|a| a.body["status"].as_str())
        .collect();
    assert!(statuses.len() >= 2, "{statuses:?}");
    assert_eq!(statuses[0], "firing");
    assert_eq!(
        statuses.iter().filter(|s| **s == "resolved").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&"resolved"), "{statuses:?}");
    let mut keys: Vec<&str> = got.iter().map(|a| a.idempotency_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), got.len(), "nothing arrived twice: {got:?}");
    let first = &got[0].body;
    assert_eq!(
        first["alerts"][0]["labels"]["service_name"],
        json!("checkout"),
        "{first}"
    );
    assert_eq!(
        first["alerts"][0]["labels"]["alertname"],
        json!("QueueDeep")
    );
    assert_eq!(
        first["groupLabels"]["alertname"],
        json!("QueueDeep"),
        "{first}"
    );
    let resolve = &got[got.len() - 1].body;
    assert_eq!(
        resolve["alerts"][0]["status"],
        json!("resolved"),
        "{resolve}"
    );
    assert_eq!(
        resolve["groupKey"], first["groupKey"],
        "one group from trigger to resolve"
    );
    // Firing repeats are at least repeat_interval apart.
    let firing: Vec<Instant> = got
        .iter()
        .filter(|a| a.body["status"] == json!("firing"))
        .map(|a| a.at)
        .collect();
    for w in firing.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(3_800),
            "repeat too soon: {:?}",
            w[1] - w[0]
        );
    }

    // group_wait: the first notification came at least 1 s after the alert fired.
    let (_, history) = api
        .get(&format!("/api/v1/alert-rules/{rid}/history"), &admin)
        .await;
    let entries = history["history"].as_array().expect("history");
    let fired = entries
        .iter()
        .find(|e| e["status"] == json!("firing"))
        .expect("fired");
    let resolved = entries
        .iter()
        .find(|e| e["status"] == json!("normal"))
        .expect("resolved");
    assert_eq!(resolved["metadata"]["from"], json!("firing"), "{history}");
    let fired_at =
        chrono::DateTime::parse_from_rfc3339(fired["timestamp"].as_str().expect("timestamp"))
            .expect("time");
    let first_at_wall =
        chrono::Utc::now() - chrono::Duration::from_std(got[0].at.elapsed()).expect("duration");
    assert!(
        first_at_wall.signed_duration_since(fired_at) >= chrono::Duration::milliseconds(950),
        "the first notification did not wait group_wait: fired {fired_at}, sent {first_at_wall}"
    );

    // The Slack receiver refused (403): tried once, recorded as permanent, never retried; the
    // webhook was not held up by it.
    let (_, attempts) = api
        .get(&format!("/api/v1/channels/{slack_id}/attempts"), &admin)
        .await;
    let outcomes: Vec<&str> = attempts["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"permanent") && outcomes.contains(&"gave_up"),
        "{attempts}"
    );
    assert!(!outcomes.contains(&"transient"), "{attempts}");
    assert_eq!(
        slacks.lock().expect("lock").len(),
        outcomes.iter().filter(|o| **o == "permanent").count(),
        "one request per permanent failure, no retries"
    );
    assert!(
        !attempts.to_string().contains("/services/T/B/x"),
        "no secret in attempts: {attempts}"
    );

    // The same alerts went to the external Alertmanager (API v2): firing ones expiring ahead,
    // then the resolved one ending in the past.
    let sent = forwarded.lock().expect("lock").clone();
    let all: Vec<&Value> = sent
        .iter()
        .filter_map(|a| a.body.as_array())
        .flatten()
        .collect();
    assert!(!all.is_empty(), "nothing forwarded");
    let now = chrono::Utc::now();
    let ends = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().expect("endsAt")).expect("time")
    };
    assert!(
        all.iter()
            .all(|a| a["labels"]["alertname"] == json!("QueueDeep")),
        "{all:?}"
    );
    assert!(all.iter().any(|a| ends(a) > now), "a firing alert: {all:?}");
    assert!(
        all.iter().any(|a| ends(a) <= now),
        "a resolved alert: {all:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_delivery_cut_short_at_shutdown_resumes_after_the_restart() {
    cut_short_and_resumed(None).await;
    if let Some(stack) = crate::support::postgres_and_clickhouse("the outbox scenario").await {
        cut_short_and_resumed(Some(stack)).await;
    }
}

/// A receiver failing with 503 keeps a notification retrying when the server stops; the
/// server gives it a short drain, cuts it, and at the next start resumes it from the outbox
/// with its attempt count. The receiver, healthy again, gets it with the same idempotency key.
async fn cut_short_and_resumed(pg_ch: Option<(String, String)>) {
    let status = Arc::new(AtomicU16::new(503));
    let (port, log) = receiver_answering(Arc::clone(&status)).await;

    let stack = pg_ch.map(|(pg, ch)| (pg, crate::support::clickhouse_settings(&ch)));
    let tune = |c: &mut server::Config| {
        crate::support::alerts_config(c, stack.as_ref());
        c.delivery_drain = Duration::from_millis(500);
    };
    let (mut srv, api, admin) = TestServer::with_admin_tuned(tune).await;
    let (code, group) = api
        .post(
            "/api/v1/notification-groups",
            Some(&admin),
            json!({"name": "oncall", "group_by": ["alertname"], "group_wait": "1s"}),
        )
        .await;
    assert_eq!(code, 201, "{group}");
    let gid = group["group_id"].as_str().expect("id").to_string();
    let (code, ch) = api
        .post(
            "/api/v1/channels",
            Some(&admin),
            json!({"name": "hook", "type": "webhook", "notification_group_id": gid,
                   "config": {"url": format!("http://127.0.0.1:{port}/alerts")}}),
        )
        .await;
    assert_eq!(code, 201, "{ch}");
    let cid = ch["channel_id"].as_str().expect("id").to_string();
    let (key, _) = api.key(&admin, &["metrics:write"], None).await;
    srv.send_json(&key, "/v1/metrics", &queue_depth(&[("checkout", 12.0)]))
        .await;
    let (code, rule) = api
        .post("/api/v1/alert-rules", Some(&admin), json!({
            "name": "QueueDeep",
            "queries": [{"name": "A", "range": "10m", "sql":
                "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                 WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                 GROUP BY service_name"}],
            "condition": {"plugin": "builtin-threshold",
                          "config": {"thresholds": [{"op": "above", "value": 5}]}},
            "interval": "1s",
            "notification_groups": [gid],
        }))
        .await;
    assert_eq!(code, 201, "{rule}");

    // The notification is due and failing: at least one 503 arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no notification was attempted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_key = log.lock().expect("lock")[0].idempotency_key.clone();
    assert!(!first_key.is_empty());

    // Stop while it retries (still 503 throughout the drain), then heal the receiver.
    let api = srv
        .restart(|c| {
            tune(c);
            status.store(200, Ordering::SeqCst);
        })
        .await;
    let admin = api.admin().await;
    // Only the restarted server can deliver: the receiver answered 503 until it stopped.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts = loop {
        let (_, attempts) = api
            .get(&format!("/api/v1/channels/{cid}/attempts"), &admin)
            .await;
        let delivered = attempts["attempts"]
            .as_array()
            .is_some_and(|l| l.iter().any(|a| a["outcome"] == json!("delivered")));
        if delivered {
            break attempts;
        }
        assert!(
            Instant::now() < deadline,
            "the cut delivery did not resume: {attempts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let list = attempts["attempts"].as_array().expect("attempts");
    let delivered = list
        .iter()
        .find(|a| a["outcome"] == json!("delivered"))
        .unwrap_or_else(|| panic!("no delivered attempt: {attempts}"));
    let before = list
        .iter()
        .filter(|a| a["outcome"] == json!("transient"))
        .count();
    assert!(before >= 1, "{attempts}");
    assert_eq!(
        delivered["attempt"].as_i64(),
        Some(i64::try_from(before).expect("count") + 1),
        "the attempt count went on across the restart: {attempts}"
    );
    // Delivered once: the firing notification arrived with 200 exactly once, and nothing else
    // was sent (the dispatcher knew it was sent before the restart).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keys: std::collections::BTreeSet<String> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|a| a.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 1, "one notification only: {keys:?}");
    srv.shutdown().await;
}
