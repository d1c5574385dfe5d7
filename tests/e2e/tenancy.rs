//! Tenant scoping of the SQL read path, and what the SQL endpoint refuses.

use serde_json::json;

use crate::support::{Api, TestServer, build, now_nanos, post_protobuf};

#[tokio::test]
async fn each_tenant_sees_only_its_own_rows() {
    let (srv, api, admin) = TestServer::with_admin().await;
    tenants_see_their_own_rows(srv, api, admin).await;
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_rows_on_clickhouse() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    tenants_see_their_own_rows(srv, api, admin).await;
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_rows_with_postgres_metadata() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_postgres().await else {
        return;
    };
    tenants_see_their_own_rows(srv, api, admin).await;
}

async fn tenants_see_their_own_rows(srv: TestServer, api: Api, admin: String) {
    let (tenant_a, viewer_a) = api.tenant_with_viewer(&admin, "alpha").await;
    let (tenant_b, viewer_b) = api.tenant_with_viewer(&admin, "beta").await;
    let (key_a, _) = api.key(&admin, &["logs:write"], Some(&tenant_a)).await;
    let (key_b, _) = api.key(&admin, &["logs:write"], Some(&tenant_b)).await;

    let t0 = now_nanos();
    for (key, marker, n) in [(&key_a, "from-a", 3), (&key_b, "from-b", 5)] {
        let req = build::logs("shared-service", marker, n, t0);
        let r = post_protobuf(&srv.client, &srv.otlp_http, "/v1/logs", key, &req).await;
        assert_eq!(r.status(), 200);
    }

    for (viewer, own, own_n, other) in [
        (&viewer_a, &tenant_a, 3, &tenant_b),
        (&viewer_b, &tenant_b, 5, &tenant_a),
    ] {
        let rows = api.sql(viewer, "SELECT body, tenant_id FROM logs_v3").await;
        assert_eq!(rows.len(), own_n);
        assert!(rows.iter().all(|r| r[1] == json!(own)), "{rows:?}");
        // Naming the other tenant in the query text changes nothing.
        let n = api
            .count(
                viewer,
                &format!("SELECT COUNT(*) FROM logs_v3 WHERE tenant_id = '{other}'"),
            )
            .await;
        assert_eq!(n, 0);
        let n = api
            .count(
                viewer,
                &format!("SELECT COUNT(*) FROM logs_v3 WHERE tenant_id = '{other}' OR 1 = 1"),
            )
            .await;
        assert_eq!(n, own_n as i64);
        let n = api
            .count(viewer, "SELECT COUNT(*) FROM logs_v3_by_trace")
            .await;
        assert_eq!(n, own_n as i64);
    }
    // The admin's own (default) tenant holds none of these rows.
    assert_eq!(api.count(&admin, "SELECT COUNT(*) FROM logs_v3").await, 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn the_sql_endpoint_runs_one_select_and_nothing_else() {
    let (srv, api, admin) = TestServer::with_admin().await;
    for bad in [
        "DROP TABLE logs_v3",
        "SELECT 1; SELECT 2",
        "INSERT INTO logs_v3 (body) VALUES ('x')",
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM logs_v3",
        "not sql at all",
    ] {
        let (status, body) = api
            .post("/api/v1/query/sql", Some(&admin), json!({"sql": bad}))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (status, _) = api
        .post("/api/v1/query/sql", None, json!({"sql": "SELECT 1"}))
        .await;
    assert_eq!(status, 401);
    let (status, _) = api
        .post(
            "/api/v1/query/sql",
            Some("not-a-jwt"),
            json!({"sql": "SELECT 1"}),
        )
        .await;
    assert_eq!(status, 401);
    // Every table and view exists and is empty for a new tenant.
    for table in [
        "traces_v3",
        "spans_v3",
        "logs_v3",
        "logs_v3_by_trace",
        "metrics_v3",
        "metric_histograms",
        "exemplars_v3",
    ] {
        assert_eq!(
            api.count(&admin, &format!("SELECT COUNT(*) FROM {table}"))
                .await,
            0,
            "{table}"
        );
    }
    srv.shutdown().await;
}
