//! API keys as an operator uses them, on SQLite and on PostgreSQL metadata: shown once, listed
//! without secrets, rotated with a grace period, revoked with a reason (effective within
//! seconds), rate limited (429 + Retry-After), usage counted and logged.

use std::time::Duration;

use serde_json::json;

use crate::support::{TestServer, build, now_nanos, post_protobuf};

async fn send(srv: &TestServer, key: &str) -> u16 {
    let req = build::logs("keys-service", "m", 1, now_nanos());
    post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", key, &req)
        .await
        .status()
        .as_u16()
}

/// Polls `f` for up to `secs` seconds until it returns true.
async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn keys_rotate_with_grace_revoke_within_seconds_and_count_usage() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        let (status, created) = api
            .post(
                "/api/v1/api-keys",
                Some(&admin),
                json!({"name": "ingest", "permissions": ["logs:write"]}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {created}");
        let token = created["key"]
            .as_str()
            .expect("secret shown once")
            .to_string();
        let id = created["api_key_id"].as_str().expect("id").to_string();
        assert_eq!(send(&srv, &token).await, 200, "{name}");

        let (status, listed) = api.get("/api/v1/api-keys", &admin).await;
        assert_eq!(status, 200);
        let text = listed.to_string();
        assert!(
            text.contains(&id) && !text.contains(&token) && !text.contains("secret_hash"),
            "{name}: no secret in lists"
        );
        let (_, one) = api.get(&format!("/api/v1/api-keys/{id}"), &admin).await;
        assert!(
            one.get("key").is_none(),
            "{name}: the secret is shown only at creation"
        );

        // Rotation: the new key works at once, the old one until the grace period ends.
        let (status, rotated) = api
            .post(
                &format!("/api/v1/api-keys/{id}/rotate"),
                Some(&admin),
                json!({"grace_period_secs": 2}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {rotated}");
        let new_token = rotated["key"].as_str().expect("new secret").to_string();
        let new_id = rotated["api_key_id"].as_str().expect("new id").to_string();
        assert_eq!(rotated["permissions"], json!(["logs:write"]));
        assert_eq!(send(&srv, &new_token).await, 200, "{name}: new key");
        assert_eq!(
            send(&srv, &token).await,
            200,
            "{name}: old key inside its grace period"
        );
        let (_, old) = api.get(&format!("/api/v1/api-keys/{id}"), &admin).await;
        assert_eq!(old["status"], json!("rotated"));
        assert!(
            eventually(6, async || send(&srv, &token).await == 401).await,
            "{name}: the old key stops after the grace period"
        );
        let (status, _) = api
            .post(
                &format!("/api/v1/api-keys/{id}/rotate"),
                Some(&admin),
                json!({}),
            )
            .await;
        assert_eq!(status, 400, "{name}: a rotated key does not rotate again");

        // Revocation with a reason; effective within seconds.
        let (status, _) = api
            .post(
                &format!("/api/v1/api-keys/{new_id}/revoke"),
                Some(&admin),
                json!({"reason": ""}),
            )
            .await;
        assert_eq!(status, 400, "{name}: a reason is required");
        let (status, revoked) = api
            .post(
                &format!("/api/v1/api-keys/{new_id}/revoke"),
                Some(&admin),
                json!({"reason": "leaked in a log"}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {revoked}");
        assert_eq!(revoked["status"], json!("revoked"));
        assert_eq!(revoked["revoked_reason"], json!("leaked in a log"));
        assert!(revoked["revoked_by"].is_string());
        assert!(
            eventually(5, async || send(&srv, &new_token).await == 401).await,
            "{name}: revoked key refused within seconds"
        );

        // Usage counts and log rows reach the store without a write per request.
        assert!(
            eventually(15, async || {
                let (_, u) = api
                    .get(&format!("/api/v1/api-keys/{id}/usage"), &admin)
                    .await;
                u["usage_count"].as_i64().unwrap_or(0) >= 2
                    && !u["items"].as_array().is_none_or(|i| i.is_empty())
            })
            .await,
            "{name}: usage recorded"
        );
        let (_, u) = api
            .get(&format!("/api/v1/api-keys/{id}/usage"), &admin)
            .await;
        assert_eq!(u["items"][0]["endpoint"], json!("/v1/logs"), "{name}: {u}");
        assert!(
            u["last_used_ip"]
                .as_str()
                .is_some_and(|ip| ip.contains("127.0.0.1")),
            "{u}"
        );
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        let (status, created) = api
            .post(
                "/api/v1/api-keys",
                Some(&admin),
                json!({"name": "limited", "permissions": ["logs:write"], "rate_limit": 3}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {created}");
        let token = created["key"].as_str().expect("key").to_string();
        for i in 0..3 {
            assert_eq!(
                send(&srv, &token).await,
                200,
                "{name}: request {i} within the limit"
            );
        }
        let req = build::logs("keys-service", "m", 1, now_nanos());
        let resp = post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", &token, &req).await;
        assert_eq!(resp.status().as_u16(), 429, "{name}");
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("Retry-After seconds");
        assert!((1..=60).contains(&retry), "{name}: {retry}");
        // Another key is not affected.
        let (_, other) = api
            .post(
                "/api/v1/api-keys",
                Some(&admin),
                json!({"name": "other", "permissions": ["logs:write"]}),
            )
            .await;
        assert_eq!(
            send(&srv, other["key"].as_str().expect("key")).await,
            200,
            "{name}"
        );
        let (status, _) = api
            .post(
                "/api/v1/api-keys",
                Some(&admin),
                json!({"name": "bad", "permissions": ["logs:write"], "rate_limit": 0}),
            )
            .await;
        assert_eq!(status, 400, "{name}");
        srv.shutdown().await;
    }
}
