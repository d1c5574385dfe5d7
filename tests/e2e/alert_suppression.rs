//! What the notifier holds back, end to end: a silence (until it is expired through the API),
//! an inhibition rule (a critical alert hides the warning about the same service), and a mute
//! time window in an IANA zone. The rules keep firing; only notifications are held back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::alert_delivery::{Log, receiver};
use crate::support::{TestServer, now_nanos, queue_depth};

/// `(alertname, service_name)` of every alert that arrived, in order.
fn arrived(log: &Log) -> Vec<(String, String)> {
    log.lock()
        .expect("lock")
        .iter()
        .flat_map(|a| a.body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            (label("alertname"), label("service_name"))
        })
        .collect()
}

async fn wait_for(log: &Log, want: &[(&str, &str)], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = arrived(log);
        if want
            .iter()
            .all(|(a, s)| got.iter().any(|(ga, gs)| ga == a && gs == s))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {want:?}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `[start, end)` minutes of the day around now in a zone `offset_minutes` east of UTC, as one
/// or two ranges (when it crosses midnight).
fn window_around_now(offset_minutes: i64) -> Vec<(i64, i64)> {
    let secs = i64::try_from(now_nanos() / 1_000_000_000).expect("time");
    let local = (secs / 60 + offset_minutes).rem_euclid(1440);
    let (start, end) = (local - 20, local + 20);
    if start < 0 {
        vec![(start + 1440, 1440), (0, end)]
    } else if end > 1440 {
        vec![(start, 1440), (0, end - 1440)]
    } else {
        vec![(start, end)]
    }
}

#[tokio::test]
async fn silences_inhibitions_and_mute_windows_hold_back_notifications() {
    scenario(None).await;
    if let Some(stack) = crate::support::postgres_and_clickhouse("the suppression scenario").await {
        scenario(Some(stack)).await;
    }
}

async fn scenario(pg_ch: Option<(String, String)>) {
    let (hook_port, hooks) = receiver(200).await;
    let (muted_port, muted) = receiver(200).await;
    let (srv, api, admin) = TestServer::for_alerts(pg_ch.as_ref(), |_| {}).await;

    // Asia/Kolkata is UTC+05:30 all year: the window is now there, and not now in UTC.
    let kolkata: Vec<Value> = window_around_now(330)
        .into_iter()
        .map(|(s, e)| json!([s, e]))
        .collect();
    let groups = [
        (
            "ops",
            hook_port,
            json!({
                "name": "ops", "matchers": ["team=\"ops\""],
                "group_by": ["alertname", "service_name"],
                "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
                "inhibit": [{"source": ["alertname=\"QueueCritical\""],
                             "target": ["alertname=\"QueueWarn\""],
                             "equal": ["service_name"]}],
            }),
        ),
        (
            "night-shift",
            muted_port,
            json!({
                "name": "night-shift", "matchers": ["team=\"ops\""],
                "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
                "mute_time_windows": [{"times": kolkata, "location": "Asia/Kolkata"}],
            }),
        ),
    ];
    for (name, port, spec) in groups {
        let (status, group) = api
            .post("/api/v1/notification-groups", Some(&admin), spec)
            .await;
        assert_eq!(status, 201, "{group}");
        let gid = group["group_id"].as_str().expect("id");
        let (status, ch) = api
            .post(
                "/api/v1/channels",
                Some(&admin),
                json!({"name": name, "type": "webhook", "notification_group_id": gid,
                       "config": {"url": format!("http://127.0.0.1:{port}/alerts")}}),
            )
            .await;
        assert_eq!(status, 201, "{ch}");
    }
    let (status, silence) = api
        .post(
            "/api/v1/silences",
            Some(&admin),
            json!({"matchers": ["service_name=\"search\""], "duration": "1h",
                   "comment": "search is being migrated"}),
        )
        .await;
    assert_eq!(status, 201, "{silence}");
    let silence_id = silence["silence_id"].as_str().expect("id").to_string();

    // Three services: checkout and search are deep, billing very deep.
    let (key, _) = api.key(&admin, &["metrics:write"], None).await;
    let body = queue_depth(&[("checkout", 12.0), ("search", 12.0), ("billing", 200.0)]);
    srv.send_json(&key, "/v1/metrics", &body).await;
    // The warning needs 3 s of pending, so the critical alert that inhibits it is firing first.
    for (name, above, pending) in [("QueueCritical", 100, "0s"), ("QueueWarn", 5, "3s")] {
        let (status, rule) = api
            .post("/api/v1/alert-rules", Some(&admin), json!({
                "name": name,
                "queries": [{"name": "A", "range": "1h", "sql":
                    "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                     WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                     GROUP BY service_name"}],
                "condition": {"plugin": "builtin-threshold",
                              "config": {"thresholds": [{"op": "above", "value": above}]}},
                "interval": "1s", "for": pending, "labels": {"team": "ops"},
            }))
            .await;
        assert_eq!(status, 201, "{rule}");
    }

    wait_for(
        &hooks,
        &[("QueueCritical", "billing"), ("QueueWarn", "checkout")],
        Duration::from_secs(30),
    )
    .await;
    // Give what should be held back time to (not) arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = arrived(&hooks);
    assert!(
        !got.contains(&("QueueWarn".into(), "search".into())),
        "silenced: {got:?}"
    );
    assert!(
        !got.contains(&("QueueCritical".into(), "search".into())),
        "not above 100: {got:?}"
    );
    assert!(
        !got.contains(&("QueueWarn".into(), "billing".into())),
        "inhibited by QueueCritical on billing: {got:?}"
    );
    // The alerts themselves fire; only their notifications were held back.
    let (_, active) = api.get("/api/v1/alerts", &admin).await;
    let firing: Vec<String> = active["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["state"] == json!("firing"))
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["alertname"].as_str().unwrap_or_default(),
                a["labels"]["service_name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    for want in [
        "QueueWarn/search",
        "QueueWarn/billing",
        "QueueCritical/billing",
    ] {
        assert!(firing.iter().any(|f| f == want), "{want} in {firing:?}");
    }

    // Expiring the silence lets the search warning through.
    let (status, expired, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/silences/{silence_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{expired}");
    wait_for(&hooks, &[("QueueWarn", "search")], Duration::from_secs(15)).await;

    // The muted group sent nothing at all.
    assert!(
        arrived(&muted).is_empty(),
        "sent inside the mute window: {:?}",
        arrived(&muted)
    );
    let got = arrived(&hooks);
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "nothing arrived twice: {got:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn inhibition_holds_from_the_first_tick_after_a_restart() {
    inhibition_after_restart(None).await;
    if let Some(stack) =
        crate::support::postgres_and_clickhouse("the inhibition-after-restart scenario").await
    {
        inhibition_after_restart(Some(stack)).await;
    }
}

/// A critical alert fires, then its rule moves to a schedule that will not tick again for
/// years, and the server restarts. The warning rule created after the restart fires for the
/// same service at once; the critical alert, known only from the stored state, still inhibits
/// it, while the warning about another service goes out.
async fn inhibition_after_restart(pg_ch: Option<(String, String)>) {
    let (hook_port, hooks) = receiver(200).await;
    let stack = pg_ch.map(|(pg, ch)| (pg, crate::support::clickhouse_settings(&ch)));
    let tune = |c: &mut server::Config| {
        crate::support::alerts_config(c, stack.as_ref());
    };
    let (mut srv, api, admin) = TestServer::with_admin_tuned(tune).await;
    let (status, group) = api
        .post(
            "/api/v1/notification-groups",
            Some(&admin),
            json!({
                "name": "ops", "matchers": ["team=\"ops\""],
                "group_by": ["alertname", "service_name"],
                "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
                "inhibit": [{"source": ["alertname=\"QueueCritical\""],
                             "target": ["alertname=\"QueueWarn\""],
                             "equal": ["service_name"]}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["group_id"].as_str().expect("id");
    let (status, ch) = api
        .post(
            "/api/v1/channels",
            Some(&admin),
            json!({"name": "ops", "type": "webhook", "notification_group_id": gid,
                   "config": {"url": format!("http://127.0.0.1:{hook_port}/alerts")}}),
        )
        .await;
    assert_eq!(status, 201, "{ch}");
    let (key, _) = api.key(&admin, &["metrics:write"], None).await;
    srv.send_json(
        &key,
        "/v1/metrics",
        &queue_depth(&[("checkout", 12.0), ("billing", 200.0)]),
    )
    .await;
    let rule = |name: &str, above: i64| {
        json!({
            "name": name,
            "queries": [{"name": "A", "range": "1h", "sql":
                "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                 WHERE metric_name = 'queue_depth' AND timestamp >= $__from AND timestamp < $__to \
                 GROUP BY service_name"}],
            "condition": {"plugin": "builtin-threshold",
                          "config": {"thresholds": [{"op": "above", "value": above}]}},
            "interval": "1s", "labels": {"team": "ops"},
        })
    };
    let (status, critical) = api
        .post(
            "/api/v1/alert-rules",
            Some(&admin),
            rule("QueueCritical", 100),
        )
        .await;
    assert_eq!(status, 201, "{critical}");
    let cid = critical["alert_rule_id"].as_str().expect("id").to_string();
    wait_for(
        &hooks,
        &[("QueueCritical", "billing")],
        Duration::from_secs(30),
    )
    .await;
    // No more evaluations of the critical rule: its alert stays firing in its stored state.
    let (status, patched, _) = api
        .call(
            "PATCH",
            &format!("/api/v1/alert-rules/{cid}"),
            Some(&admin),
            Some(json!({"schedule": "0 0 0 1 1 * 2099"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");

    let api = srv.restart(tune).await;
    let admin = api.admin().await;
    let (status, warn) = api
        .post("/api/v1/alert-rules", Some(&admin), rule("QueueWarn", 5))
        .await;
    assert_eq!(status, 201, "{warn}");
    wait_for(
        &hooks,
        &[("QueueWarn", "checkout")],
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = arrived(&hooks);
    assert!(
        !got.contains(&("QueueWarn".into(), "billing".into())),
        "inhibited by the critical alert known from before the restart: {got:?}"
    );
    srv.shutdown().await;
}
