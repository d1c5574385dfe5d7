//! The plugin registry as a workspace uses it: upload a component it built, see it described,
//! validate configs, dry-run it on its own data, watch a misbehaving one fail alone and get
//! disabled by the circuit breaker (whose count survives a restart); and another workspace
//! never sees it.

use serde_json::{Value, json};

use crate::support::{Api, TestServer};

fn component() -> Vec<u8> {
    crate::guests::guest(
        "hostile-condition",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    )
}

async fn upload(api: &Api, token: &str, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    let resp = api
        .client
        .post(format!("{}/api/v1/plugins{query}", api.base))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A dry run of condition `id` over the workspace's logs.
async fn dry_run(api: &Api, token: &str, id: &str, config: Value, state: Value) -> (u16, Value) {
    api.post(
        &format!("/api/v1/plugins/{id}/run"),
        Some(token),
        json!({"config": config, "inputs": [{"name": "A", "sql": "SELECT count(*) AS n FROM logs_v3"}], "state": state}),
    )
    .await
}

#[tokio::test]
async fn a_workspace_uploads_validates_runs_and_manages_its_plugin() {
    let open = |c: &mut server::Config| c.registration = server::config::RegistrationMode::Open;
    let (mut srv, api, admin) = TestServer::with_admin_tuned(open).await;
    let bytes = component();

    // Refused uploads say why.
    let (status, body) = upload(&api, &admin, bytes.clone(), "?kind=widget-transform").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("implements the alert-condition world"),
        "{body}"
    );
    let (status, body) = upload(&api, &admin, b"not wasm".to_vec(), "").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = upload(&api, &admin, Vec::new(), "").await;
    assert_eq!(status, 400);
    let (status, body) = upload(&api, &admin, vec![0u8; 10 << 20 | 512], "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("limit"), "{body}");
    let (status, _) = upload(&api, &admin, vec![0u8; 12 << 20], "").await;
    assert_eq!(status, 413, "past the body limit");

    // Accepted.
    let (status, p) = upload(&api, &admin, bytes.clone(), "?kind=alert-condition").await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["name"], json!("hostile-condition"));
    assert_eq!(p["kind"], json!("alert-condition"));
    assert_eq!(p["enabled"], json!(true));
    assert!(p["config_schema"]["properties"]["mode"].is_object(), "{p}");
    let id = p["plugin_id"].as_str().expect("id").to_string();
    let (status, _) = upload(&api, &admin, bytes.clone(), "").await;
    assert_eq!(status, 409, "same name and version again");

    let (status, list) = api.get("/api/v1/plugins", &admin).await;
    assert_eq!(status, 200);
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["plugin_id"] == json!(id))
    );
    let (_, versions) = api
        .get(&format!("/api/v1/plugins/{id}/versions"), &admin)
        .await;
    assert_eq!(versions["items"].as_array().expect("items").len(), 1);

    let (status, v) = api
        .post(
            &format!("/api/v1/plugins/{id}/validate-config"),
            Some(&admin),
            json!({"config": {"mode": "fly"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], json!(false));
    assert_eq!(v["errors"][0]["path"], json!("/mode"));

    // A dry run over the workspace's own data, state carried between runs.
    let run = |config: Value, state: Value| dry_run(&api, &admin, &id, config, state);
    let (status, first) = run(json!({"mode": "ok", "threshold": 1}), Value::Null).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["series"][0]["labels"]["query"], json!("A"));
    assert_eq!(
        first["series"][0]["status"],
        json!("alerting"),
        "an Arrow stream is more than one byte"
    );
    let (_, second) = run(json!({"mode": "ok"}), first["state"].clone()).await;
    assert_eq!(
        second["series"][0]["annotations"]["runs"],
        json!("2"),
        "{second}"
    );

    // A misbehaving plugin fails alone, says why, and is disabled after five failures in a row.
    let (status, body) = run(json!({"mode": "loop"}), Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("time budget"), "{body}");
    let (status, body) = run(json!({"mode": "panic"}), Value::Null).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("boom"), "{body}");
    assert_eq!(
        api.get("/healthz", &admin).await.0,
        200,
        "the server is fine"
    );
    // The breaker's count survives a restart: two failures before it, three after it.
    let api = srv.restart(open).await;
    let admin = api.admin().await;
    let run = |config: Value, state: Value| dry_run(&api, &admin, &id, config, state);
    for _ in 0..3 {
        run(json!({"mode": "memory"}), Value::Null).await;
    }
    let (_, after) = api.get(&format!("/api/v1/plugins/{id}"), &admin).await;
    assert_eq!(after["enabled"], json!(false), "{after}");
    assert!(
        after["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("5 failed calls")),
        "{after}"
    );
    let (status, _) = run(json!({"mode": "ok"}), Value::Null).await;
    assert_eq!(status, 409, "a disabled plugin does not run");
    let (status, _) = api
        .post(
            &format!("/api/v1/plugins/{id}/enable"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(run(json!({"mode": "ok"}), Value::Null).await.0, 200);

    // Another workspace (another organization) never sees it, and can upload its own copy.
    let (status, _) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "b@b.example", "password": "b-password-1", "organization_name": "B"}),
        )
        .await;
    assert_eq!(status, 201);
    let other = api.login("b@b.example", "b-password-1").await;
    for (method, path) in [
        ("GET", format!("/api/v1/plugins/{id}")),
        ("GET", format!("/api/v1/plugins/{id}/versions")),
        ("POST", format!("/api/v1/plugins/{id}/disable")),
        ("POST", format!("/api/v1/plugins/{id}/enable")),
        ("DELETE", format!("/api/v1/plugins/{id}")),
    ] {
        let (status, body, _) = api.call(method, &path, Some(&other), None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, _) = api
        .post(
            &format!("/api/v1/plugins/{id}/run"),
            Some(&other),
            json!({"config": {}, "inputs": [{"name": "A", "sql": "SELECT 1"}]}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = api.get("/api/v1/plugins?built_in=false", &other).await;
    assert!(
        theirs["items"].as_array().expect("items").is_empty(),
        "{theirs}"
    );
    // multipart upload works too
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone()).file_name("hostile.wasm"),
    );
    let resp = api
        .client
        .post(format!("{}/api/v1/plugins", api.base))
        .bearer_auth(&other)
        .multipart(form)
        .send()
        .await
        .expect("multipart");
    assert_eq!(resp.status().as_u16(), 201);

    // Permissions: a viewer reads, only admins manage.
    let (_, u) = api
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"email": "v@example.com", "password": "viewer-pass", "role": "viewer"}),
        )
        .await;
    assert!(u["user_id"].is_string(), "{u}");
    let viewer = api.login("v@example.com", "viewer-pass").await;
    assert_eq!(api.get("/api/v1/plugins", &viewer).await.0, 200);
    assert_eq!(upload(&api, &viewer, bytes.clone(), "").await.0, 403);
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, 403);

    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        api.get(&format!("/api/v1/plugins/{id}"), &admin).await.0,
        404
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_example_plugin_builds_uploads_and_runs_on_ingested_logs() {
    let manifest =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/error-ratio/Cargo.toml");
    let bytes = crate::guests::guest_at(
        &manifest,
        "error-ratio",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    );
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    // 2 errors of 4 in "checkout", none of 3 in "search".
    for (service, severity, n) in [
        ("checkout", "ERROR", 2),
        ("checkout", "INFO", 2),
        ("search", "INFO", 3),
    ] {
        let mut req = crate::support::build::logs(service, "m", n, crate::support::now_nanos());
        for r in &mut req.resource_logs {
            for s in &mut r.scope_logs {
                for l in &mut s.log_records {
                    l.severity_text = severity.to_string();
                }
            }
        }
        let resp =
            crate::support::post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", &key, &req)
                .await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (status, p) = upload(&api, &admin, bytes, "?kind=alert-condition").await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["name"], json!("error-ratio"));
    let id = p["plugin_id"].as_str().expect("id");
    let (status, out) = api
        .post(
            &format!("/api/v1/plugins/{id}/run"),
            Some(&admin),
            json!({
                "config": {"max_ratio": 0.25},
                "inputs": [
                    {"name": "errors", "sql": "SELECT service_name, count(*) AS n FROM logs_v3 WHERE severity_text = 'ERROR' GROUP BY service_name"},
                    {"name": "total", "sql": "SELECT service_name, count(*) AS n FROM logs_v3 GROUP BY service_name"}
                ]
            }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let series = out["series"].as_array().expect("series");
    let by = |svc: &str| {
        series
            .iter()
            .find(|s| s["labels"]["service_name"] == json!(svc))
            .cloned()
            .expect("series")
    };
    assert_eq!(by("checkout")["status"], json!("alerting"), "{out}");
    assert_eq!(by("checkout")["value"], json!(0.5));
    assert_eq!(by("search")["status"], json!("ok"));
    srv.shutdown().await;
}

#[tokio::test]
async fn built_in_plugins_serve_every_workspace_and_cannot_be_changed() {
    let open = |c: &mut server::Config| c.registration = server::config::RegistrationMode::Open;
    let (srv, api, admin) = TestServer::with_admin_tuned(open).await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    for (service, n) in [("checkout", 7), ("search", 2)] {
        let req = crate::support::build::logs(service, "m", n, crate::support::now_nanos());
        let resp =
            crate::support::post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", &key, &req)
                .await;
        assert_eq!(resp.status().as_u16(), 200);
    }

    let (status, list) = api.get("/api/v1/plugins?built_in=true", &admin).await;
    assert_eq!(status, 200, "{list}");
    let mut names: Vec<(String, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            assert_eq!(i["built_in"], json!(true));
            assert_eq!(i["enabled"], json!(true));
            (
                i["name"].as_str().expect("name").to_string(),
                i["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect();
    names.sort();
    let want: Vec<(String, String)> = [
        ("absence", "alert-condition"),
        ("discord", "notification-channel"),
        ("email", "notification-channel"),
        ("fill-gaps", "widget-transform"),
        ("moving-average", "widget-transform"),
        ("msteams", "notification-channel"),
        ("pagerduty", "notification-channel"),
        ("percent-change", "widget-transform"),
        ("rate", "widget-transform"),
        ("rate-of-change", "alert-condition"),
        ("slack", "notification-channel"),
        ("sms", "notification-channel"),
        ("telegram", "notification-channel"),
        ("threshold", "alert-condition"),
        ("top-k", "widget-transform"),
        ("webhook", "notification-channel"),
        ("z-score", "alert-condition"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
    .collect();
    assert_eq!(names, want);
    let (_, conditions) = api
        .get("/api/v1/plugins?kind=alert-condition&built_in=true", &admin)
        .await;
    assert_eq!(conditions["items"].as_array().expect("items").len(), 4);

    let (status, t) = api.get("/api/v1/plugins/builtin-threshold", &admin).await;
    assert_eq!(status, 200, "{t}");
    assert!(
        t["config_schema"]["properties"]["thresholds"].is_object(),
        "{t}"
    );

    // A condition and a transform run on the workspace's own data.
    let (status, out) = api
        .post(
            "/api/v1/plugins/builtin-threshold/run",
            Some(&admin),
            json!({
                "config": {"reducer": "last", "thresholds": [{"op": "above", "value": 5, "severity": "warning"}]},
                "inputs": [{"name": "A", "sql": "SELECT service_name, count(*) AS n FROM logs_v3 GROUP BY service_name"}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let series = out["series"].as_array().expect("series");
    let status_of = |svc: &str| {
        series
            .iter()
            .find(|s| s["labels"]["service_name"] == json!(svc))
            .map(|s| (s["status"].clone(), s["severity"].clone()))
    };
    assert_eq!(
        status_of("checkout"),
        Some((json!("alerting"), json!("warning"))),
        "{out}"
    );
    assert_eq!(status_of("search"), Some((json!("ok"), Value::Null)));
    let (status, top) = api
        .post(
            "/api/v1/plugins/builtin-top-k/run",
            Some(&admin),
            json!({
                "config": {"k": 1},
                "inputs": [{"name": "A", "sql": "SELECT service_name, count(*) AS n FROM logs_v3 GROUP BY service_name"}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{top}");
    assert_eq!(top["rows"].as_array().expect("rows").len(), 1, "{top}");
    assert_eq!(top["rows"][0][0], json!("checkout"), "{top}");
    let (status, bad) = api
        .post(
            "/api/v1/plugins/builtin-top-k/validate-config",
            Some(&admin),
            json!({"config": {"k": 0}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bad["errors"][0]["path"], json!("/k"), "{bad}");

    // Nobody changes a built-in.
    for (method, path) in [
        ("POST", "/api/v1/plugins/builtin-threshold/disable"),
        ("POST", "/api/v1/plugins/builtin-threshold/enable"),
        ("DELETE", "/api/v1/plugins/builtin-threshold"),
    ] {
        let (status, body, _) = api.call(method, path, Some(&admin), None).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    assert_eq!(api.get("/api/v1/plugins/builtin-nope", &admin).await.0, 404);

    // Another organization's workspace sees the same built-ins.
    let (status, _) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "b@b.example", "password": "b-password-1", "organization_name": "B"}),
        )
        .await;
    assert_eq!(status, 201);
    let other = api.login("b@b.example", "b-password-1").await;
    let (_, theirs) = api.get("/api/v1/plugins", &other).await;
    assert_eq!(
        theirs["items"].as_array().expect("items").len(),
        17,
        "{theirs}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn an_uploaded_transform_runs_on_the_workspace_data() {
    let bytes = crate::guests::guest(
        "transform-moving-average",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    );
    let (srv, api, admin) = TestServer::with_admin().await;
    let (key, _) = api.key(&admin, &["logs:write"], None).await;
    for (service, n) in [("a", 2), ("b", 4), ("c", 6)] {
        let req = crate::support::build::logs(service, "m", n, crate::support::now_nanos());
        let resp =
            crate::support::post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", &key, &req)
                .await;
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (status, p) = upload(&api, &admin, bytes, "?kind=widget-transform").await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["kind"], json!("widget-transform"));
    assert_eq!(p["built_in"], json!(false));
    let path = format!(
        "/api/v1/plugins/{}/run",
        p["plugin_id"].as_str().expect("id")
    );
    let run = |config: Value| {
        api.post(
            &path,
            Some(&admin),
            json!({
                "config": config,
                "inputs": [{"name": "A", "sql": "SELECT count(*) AS n FROM logs_v3 GROUP BY service_name ORDER BY service_name"}]
            }),
        )
    };
    let (status, out) = run(json!({"window": 2})).await;
    assert_eq!(status, 200, "{out}");
    let averages: Vec<Option<f64>> = out["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r[0].as_f64())
        .collect();
    assert_eq!(averages, vec![Some(2.0), Some(3.0), Some(5.0)], "{out}");
    let (status, bad) = run(json!({"window": 0})).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("/window"), "{bad}");
    srv.shutdown().await;
}
