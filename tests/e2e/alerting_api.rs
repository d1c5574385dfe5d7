//! The alerting API as a console uses it, on each metadata store: rules with their condition
//! plugin and config checked on save (400 listing each bad field's path), notification groups,
//! channels whose config is sealed and never shown, a channel test through the real plugin
//! and egress policy, silences; other tenants see none of it; viewers only read.

use serde_json::{Value, json};

use crate::support::{Api, TestServer};

fn threshold_rule(name: &str, groups: &[&str]) -> Value {
    json!({
        "name": name,
        "query_type": "metric",
        "queries": [{"name": "A", "sql": "SELECT service_name, avg(value) AS v FROM metrics_v3 WHERE timestamp >= $__from GROUP BY service_name", "range": "5m"}],
        "condition": {"plugin": "builtin-threshold", "config": {"thresholds": [{"op": "above", "value": 0.5}]}},
        "severity": "critical",
        "for": "1m",
        "labels": {"team": "db"},
        "annotations": {"summary": "{{ $labels.service_name }} is at {{ $value }}"},
        "notification_groups": groups,
    })
}

fn field_paths(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (s, b, _) = api.call(method, path, Some(token), body).await;
    (s, b)
}

#[tokio::test]
async fn rules_groups_channels_and_silences_through_the_api() {
    for (store, srv, api, admin) in TestServer::on_each_meta_store(|c| {
        c.plugin_http.allow_loopback_for_tests = true;
        c.plugin_http.allow_plain_http = true;
    })
    .await
    {
        // A notification group, checked.
        let (status, body) = api
            .post(
                "/api/v1/notification-groups",
                Some(&admin),
                json!({"name": "oncall", "matchers": ["team~db"], "group_interval": "0s"}),
            )
            .await;
        assert_eq!(status, 400, "{store}: {body}");
        assert_eq!(
            field_paths(&body),
            vec!["/matchers/0", "/group_interval"],
            "{store}"
        );
        let (status, group) = api
            .post(
                "/api/v1/notification-groups",
                Some(&admin),
                json!({"name": "oncall", "matchers": ["team=\"db\""], "group_by": ["alertname", "service_name"],
                       "group_wait": "10s", "mute_time_windows": [{"weekdays": [0, 6], "location": "Europe/Paris"}]}),
            )
            .await;
        assert_eq!(status, 201, "{store}: {group}");
        let gid = group["group_id"].as_str().expect("id").to_string();
        assert_eq!(group["repeat_interval"], json!("4h"), "defaults are shown");

        // A rule: every bad field at once, with its path.
        let mut bad = threshold_rule("", &["no-such-group"]);
        bad["for"] = json!("five minutes");
        bad["queries"][0]["sql"] = json!("DELETE FROM metrics_v3");
        let (status, body) = api.post("/api/v1/alert-rules", Some(&admin), bad).await;
        assert_eq!(status, 400, "{store}: {body}");
        assert_eq!(field_paths(&body), vec!["/name", "/for"], "{store}: {body}");
        let mut bad = threshold_rule("x", &["no-such-group"]);
        bad["queries"][0]["sql"] = json!("DELETE FROM metrics_v3");
        bad["condition"]["config"] = json!({"thresholds": [{"op": "sideways", "value": 1}]});
        let (status, body) = api.post("/api/v1/alert-rules", Some(&admin), bad).await;
        assert_eq!(status, 400, "{store}: {body}");
        assert_eq!(
            field_paths(&body),
            vec![
                "/queries/0/sql",
                "/condition/config/thresholds/0/op",
                "/notification_groups/0"
            ],
            "{store}: {body}"
        );
        let mut bad = threshold_rule("x", &[]);
        bad["condition"]["plugin"] = json!("builtin-moving-average");
        let (status, body) = api.post("/api/v1/alert-rules", Some(&admin), bad).await;
        assert_eq!(status, 400);
        assert!(
            body.to_string().contains("not a alert-condition")
                || body.to_string().contains("widget-transform"),
            "{body}"
        );
        let (status, body) = api
            .post(
                "/api/v1/alert-rules",
                Some(&admin),
                json!({"name": "x", "colour": "red"}),
            )
            .await;
        assert_eq!(status, 400);
        assert!(body.to_string().contains("colour"), "{body}");

        // Created, read back as written (defaults filled in), listed, linked to the group.
        let (status, rule) = api
            .post(
                "/api/v1/alert-rules",
                Some(&admin),
                threshold_rule("High latency", &[&gid]),
            )
            .await;
        assert_eq!(status, 201, "{store}: {rule}");
        let rid = rule["alert_rule_id"].as_str().expect("id").to_string();
        let (_, got) = api.get(&format!("/api/v1/alert-rules/{rid}"), &admin).await;
        assert_eq!(got["for"], json!("1m"));
        assert_eq!(got["interval"], json!("1m"));
        assert_eq!(got["no_data"], json!("no_data"));
        assert_eq!(got["notification_groups"], json!([gid]));
        assert_eq!(
            got["condition"]["config"]["thresholds"][0]["value"],
            json!(0.5)
        );
        let (_, list) = api.get("/api/v1/alert-rules", &admin).await;
        assert_eq!(list["rules"].as_array().map(Vec::len), Some(1), "{list}");
        let (_, g) = api
            .get(&format!("/api/v1/notification-groups/{gid}"), &admin)
            .await;
        assert_eq!(g["rules"], json!([rid]));

        // Patch: disable it and drop a label; the rest stays.
        let (status, patched) = call(
            &api,
            "PATCH",
            &format!("/api/v1/alert-rules/{rid}"),
            &admin,
            Some(json!({"enabled": false, "labels": {"team": null, "tier": "1"}})),
        )
        .await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["enabled"], json!(false));
        assert_eq!(patched["labels"], json!({"tier": "1"}));
        assert_eq!(patched["for"], json!("1m"));
        let (status, body) = call(
            &api,
            "PATCH",
            &format!("/api/v1/alert-rules/{rid}"),
            &admin,
            Some(json!({"interval": "10ms"})),
        )
        .await;
        assert_eq!(
            (status, field_paths(&body)),
            (400, vec!["/interval".to_string()])
        );

        // A composite rule over it; it cannot name itself or a rule that is not there.
        let (status, comp) = api
            .post(
                "/api/v1/alert-rules",
                Some(&admin),
                json!({"name": "both", "composite": {"op": "and", "rules": [rid]}}),
            )
            .await;
        assert_eq!(status, 201, "{comp}");
        let cid = comp["alert_rule_id"].as_str().expect("id").to_string();
        let (status, body) = call(
            &api,
            "PUT",
            &format!("/api/v1/alert-rules/{cid}"),
            &admin,
            Some(json!({"name": "both", "composite": {"op": "or", "rules": [cid, "missing"]}})),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            field_paths(&body),
            vec!["/composite/rules/0", "/composite/rules/1"]
        );

        // A webhook channel to a fake receiver: config checked, sealed, never shown.
        let (port, seen) = receiver().await;
        let (status, body) = api
            .post("/api/v1/channels", Some(&admin),
                json!({"name": "hook", "type": "webhook", "notification_group_id": gid, "config": {"uri": "x"}}))
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            field_paths(&body).iter().all(|p| p.starts_with("/config")),
            "{body}"
        );
        let secret_url = format!("http://127.0.0.1:{port}/hook/s3cr3t-token");
        let (status, body) = api
            .post("/api/v1/channels", Some(&admin),
                json!({"name": "hook", "type": "carrier-pigeon", "notification_group_id": gid, "config": {}}))
            .await;
        assert_eq!(
            (status, field_paths(&body)),
            (400, vec!["/type".to_string()])
        );
        let (status, ch) = api
            .post("/api/v1/channels", Some(&admin),
                json!({"name": "hook", "type": "webhook", "notification_group_id": gid, "config": {"url": secret_url}}))
            .await;
        assert_eq!(status, 201, "{store}: {ch}");
        assert!(
            !ch.to_string().contains("s3cr3t"),
            "the config is never returned: {ch}"
        );
        assert_eq!(ch["config_keys"], json!(["url"]));
        assert_eq!(ch["plugin_id"], json!("builtin-webhook"));
        let chid = ch["channel_id"].as_str().expect("id").to_string();
        let (_, g) = api
            .get(&format!("/api/v1/notification-groups/{gid}"), &admin)
            .await;
        assert_eq!(g["channels"][0]["channel_id"], json!(chid));
        assert!(!g.to_string().contains("s3cr3t"));

        // Test it: the fake receives an Alertmanager v4 payload.
        let (status, result) = api
            .post(
                &format!("/api/v1/channels/{chid}/test"),
                Some(&admin),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["sent"], json!(true), "{result}");
        let got = seen.lock().expect("lock").pop().expect("a request arrived");
        assert_eq!(got.0, "/hook/s3cr3t-token");
        assert_eq!(got.1["version"], json!("4"), "{}", got.1);
        assert_eq!(
            got.1["alerts"][0]["labels"]["alertname"],
            json!("TelemetryFlowTestNotification")
        );

        // Renamed without a config: the sealed one is kept and still opens.
        let (status, ch2) = call(
            &api,
            "PUT",
            &format!("/api/v1/channels/{chid}"),
            &admin,
            Some(json!({"name": "hook-2", "type": "webhook", "notification_group_id": gid})),
        )
        .await;
        assert_eq!(status, 200, "{ch2}");
        let (_, result) = api
            .post(
                &format!("/api/v1/channels/{chid}/test"),
                Some(&admin),
                json!({}),
            )
            .await;
        assert_eq!(result["sent"], json!(true), "{result}");

        // Silences.
        let (status, body) = api
            .post(
                "/api/v1/silences",
                Some(&admin),
                json!({"matchers": ["service_name=~.*"]}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(field_paths(&body), vec!["/ends_at", "/matchers"]);
        let (status, sil) = api
            .post("/api/v1/silences", Some(&admin),
                json!({"matchers": ["service_name=\"checkout\""], "duration": "2h", "comment": "deploy"}))
            .await;
        assert_eq!(status, 201, "{sil}");
        assert_eq!(sil["status"], json!("active"));
        let sid = sil["silence_id"].as_str().expect("id").to_string();
        let (_, list) = api.get("/api/v1/silences", &admin).await;
        assert_eq!(list["silences"].as_array().map(Vec::len), Some(1));
        let (status, expired) = call(
            &api,
            "DELETE",
            &format!("/api/v1/silences/{sid}"),
            &admin,
            None,
        )
        .await;
        assert_eq!((status, expired["status"].clone()), (200, json!("expired")));
        let (_, list) = api.get("/api/v1/silences", &admin).await;
        assert_eq!(list["silences"].as_array().map(Vec::len), Some(0));
        let (_, list) = api.get("/api/v1/silences?state=all", &admin).await;
        assert_eq!(list["silences"].as_array().map(Vec::len), Some(1));

        // Another tenant sees none of it; a viewer reads but cannot change.
        let (_, other) = api
            .tenant_with_viewer(&admin, &format!("other-{store}"))
            .await;
        for path in [
            format!("/api/v1/alert-rules/{rid}"),
            format!("/api/v1/notification-groups/{gid}"),
            format!("/api/v1/channels/{chid}"),
            format!("/api/v1/silences/{sid}"),
        ] {
            assert_eq!(api.get(&path, &other).await.0, 404, "{store}: {path}");
        }
        let (_, list) = api.get("/api/v1/alert-rules", &other).await;
        assert_eq!(list["rules"], json!([]));
        let (status, _) = api
            .post(
                &format!("/api/v1/channels/{chid}/test"),
                Some(&other),
                json!({}),
            )
            .await;
        assert!(status == 403 || status == 404, "{status}");
        let (status, _) = api
            .post(
                "/api/v1/alert-rules",
                Some(&other),
                threshold_rule("mine", &[]),
            )
            .await;
        assert_eq!(status, 403, "a viewer cannot create rules");

        // Deletes.
        let (status, _) = call(
            &api,
            "DELETE",
            &format!("/api/v1/alert-rules/{cid}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 204);
        let (status, _) = call(
            &api,
            "DELETE",
            &format!("/api/v1/notification-groups/{gid}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(
            api.get(&format!("/api/v1/channels/{chid}"), &admin).await.0,
            404,
            "channels go with their group"
        );
        let (_, got) = api.get(&format!("/api/v1/alert-rules/{rid}"), &admin).await;
        assert_eq!(got["notification_groups"], json!([]), "links go too");
        srv.shutdown().await;
    }
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A webhook receiver on loopback that records each request's path and JSON body.
async fn receiver() -> (u16, Seen) {
    let seen: Seen = Default::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let s = s.clone();
        async move {
            let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
            s.lock().expect("lock").push((uri.path().to_string(), v));
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}
