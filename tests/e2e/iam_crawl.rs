//! Tenant isolation and permissions of the management API, on SQLite and on PostgreSQL
//! metadata: tenant A crawls every endpoint with tenant B's ids and gets 404 (never B's data);
//! each role against each endpoint gets its answer or 403; the audit log records it all.

use serde_json::{Value, json};

use crate::support::{Api, TestServer};

/// B's organization and what B made in it.
struct Other {
    org: String,
    workspace: String,
    tenant: String,
    user: String,
    user_email: String,
    role: String,
    key: String,
    admin_email: String,
}

async fn make_other_org(api: &Api) -> (String, Other) {
    let admin_email = "b-admin@b.example".to_string();
    let (status, b) = api
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": admin_email, "password": "b-password-1", "organization_name": "Org B"}),
        )
        .await;
    assert_eq!(status, 201, "register B: {b}");
    let token = api.login(&admin_email, "b-password-1").await;
    let created = |what: &str, v: &Value| {
        assert!(v.is_object(), "{what}: {v}");
        v.clone()
    };
    let (s, ws) = api
        .post(
            "/api/v1/workspaces",
            Some(&token),
            json!({"name": "B ws", "code": "b-ws"}),
        )
        .await;
    assert_eq!(s, 201, "{ws}");
    let (s, t) = api
        .post(
            "/api/v1/tenants",
            Some(&token),
            json!({"name": "B tenant", "code": "b-tenant"}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let tenant = t["tenant_id"].as_str().expect("tenant").to_string();
    let user_email = "b-viewer@b.example".to_string();
    let (s, u) = api
        .post("/api/v1/users", Some(&token), json!({"email": user_email, "password": "b-viewer-pass", "role": "viewer", "tenant_id": tenant}))
        .await;
    assert_eq!(s, 201, "{u}");
    let (s, r) = api
        .post("/api/v1/roles", Some(&token), json!({"name": "b-auditor", "role_type": "viewer", "permissions": ["log:read"], "tenant_id": tenant}))
        .await;
    assert_eq!(s, 201, "{r}");
    let (s, k) = api
        .post(
            "/api/v1/api-keys",
            Some(&token),
            json!({"name": "b key", "permissions": ["traces:write"], "tenant_id": tenant}),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    let _ = created("workspace", &ws);
    (
        token,
        Other {
            org: b["organization_id"].as_str().expect("org").to_string(),
            workspace: ws["workspace_id"].as_str().expect("ws").to_string(),
            tenant,
            user: u["user_id"].as_str().expect("user").to_string(),
            user_email,
            role: r["role_id"].as_str().expect("role").to_string(),
            key: k["api_key_id"].as_str().expect("key").to_string(),
            admin_email,
        },
    )
}

#[tokio::test]
async fn tenant_a_with_tenant_b_ids_gets_404_on_every_endpoint() {
    let open = |c: &mut server::Config| c.registration = server::config::RegistrationMode::Open;
    for (name, srv, api, a_admin) in TestServer::on_each_meta_store(open).await {
        let (b_admin, b) = make_other_org(&api).await;
        let (_, a_me) = api.get("/api/v1/auth/me", &a_admin).await;
        let a_user = a_me["user_id"].as_str().expect("me").to_string();
        let calls: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", format!("/api/v1/organizations/{}", b.org), None),
            (
                "PATCH",
                format!("/api/v1/organizations/{}", b.org),
                Some(json!({"name": "pwned"})),
            ),
            ("GET", format!("/api/v1/workspaces/{}", b.workspace), None),
            (
                "PATCH",
                format!("/api/v1/workspaces/{}", b.workspace),
                Some(json!({"name": "pwned"})),
            ),
            (
                "DELETE",
                format!("/api/v1/workspaces/{}", b.workspace),
                None,
            ),
            (
                "POST",
                format!("/api/v1/workspaces/{}/restore", b.workspace),
                None,
            ),
            ("GET", format!("/api/v1/tenants/{}", b.tenant), None),
            (
                "PATCH",
                format!("/api/v1/tenants/{}", b.tenant),
                Some(json!({"name": "pwned"})),
            ),
            ("DELETE", format!("/api/v1/tenants/{}", b.tenant), None),
            (
                "POST",
                format!("/api/v1/tenants/{}/restore", b.tenant),
                None,
            ),
            (
                "GET",
                format!("/api/v1/tenants?workspace_id={}", b.workspace),
                None,
            ),
            (
                "POST",
                "/api/v1/tenants".into(),
                Some(json!({"name": "x", "code": "x-in-b", "workspace_id": b.workspace})),
            ),
            ("GET", format!("/api/v1/users/{}", b.user), None),
            (
                "PATCH",
                format!("/api/v1/users/{}", b.user),
                Some(json!({"first_name": "pwned"})),
            ),
            ("DELETE", format!("/api/v1/users/{}", b.user), None),
            ("POST", format!("/api/v1/users/{}/restore", b.user), None),
            ("GET", format!("/api/v1/users?tenant_id={}", b.tenant), None),
            (
                "POST",
                "/api/v1/users".into(),
                Some(
                    json!({"email": "mole@a.example", "password": "mole-password", "role": "admin", "tenant_id": b.tenant}),
                ),
            ),
            (
                "PUT",
                format!("/api/v1/users/{}/roles/{}", b.user, b.role),
                None,
            ),
            (
                "DELETE",
                format!("/api/v1/users/{}/roles/{}", b.user, b.role),
                None,
            ),
            (
                "PUT",
                format!("/api/v1/users/{a_user}/roles/{}", b.role),
                None,
            ),
            ("GET", format!("/api/v1/roles/{}", b.role), None),
            ("GET", format!("/api/v1/roles?tenant_id={}", b.tenant), None),
            (
                "PUT",
                format!("/api/v1/roles/{}/permissions", b.role),
                Some(json!({"permissions": ["user:admin"]})),
            ),
            ("DELETE", format!("/api/v1/roles/{}", b.role), None),
            (
                "POST",
                "/api/v1/roles".into(),
                Some(
                    json!({"name": "mole", "role_type": "admin", "permissions": [], "tenant_id": b.tenant}),
                ),
            ),
            ("GET", format!("/api/v1/api-keys/{}", b.key), None),
            (
                "GET",
                format!("/api/v1/api-keys?tenant_id={}", b.tenant),
                None,
            ),
            ("GET", format!("/api/v1/api-keys/{}/usage", b.key), None),
            ("POST", format!("/api/v1/api-keys/{}/rotate", b.key), None),
            (
                "POST",
                format!("/api/v1/api-keys/{}/revoke", b.key),
                Some(json!({"reason": "pwned"})),
            ),
            (
                "POST",
                "/api/v1/api-keys".into(),
                Some(json!({"name": "mole", "permissions": ["logs:write"], "tenant_id": b.tenant})),
            ),
            (
                "POST",
                "/api/v1/invitations".into(),
                Some(json!({"email": "mole@a.example", "role": "admin", "tenant_id": b.tenant})),
            ),
            (
                "GET",
                format!("/api/v1/audit-logs?tenant_id={}", b.tenant),
                None,
            ),
        ];
        let secrets = [
            &b.org,
            &b.workspace,
            &b.tenant,
            &b.user,
            &b.user_email,
            &b.role,
            &b.key,
            &b.admin_email,
        ];
        for (method, path, body) in &calls {
            let (status, answer, _) = api.call(method, path, Some(&a_admin), body.clone()).await;
            assert_eq!(
                status, 404,
                "{name}: {method} {path} as A gave {status}: {answer}"
            );
            for s in secrets {
                assert!(
                    !answer.to_string().contains(s.as_str()),
                    "{name}: {method} {path} leaked {s}"
                );
            }
        }
        // Lists as A never carry B's rows.
        for path in [
            "/api/v1/users",
            "/api/v1/tenants",
            "/api/v1/workspaces",
            "/api/v1/api-keys",
            "/api/v1/roles",
            "/api/v1/audit-logs",
            "/api/v1/auth/sessions",
        ] {
            let (status, answer) = api.get(path, &a_admin).await;
            assert_eq!(status, 200, "{name}: {path}: {answer}");
            for s in secrets {
                assert!(
                    !answer.to_string().contains(s.as_str()),
                    "{name}: {path} lists {s}"
                );
            }
        }
        // B is untouched by all that.
        let (status, u) = api
            .get(&format!("/api/v1/users/{}", b.user), &b_admin)
            .await;
        assert_eq!(status, 200, "{name}: {u}");
        assert_eq!(u["deleted_at"], Value::Null);
        assert_ne!(u["first_name"], json!("pwned"));
        let (_, k) = api
            .get(&format!("/api/v1/api-keys/{}", b.key), &b_admin)
            .await;
        assert_eq!(k["status"], json!("active"), "{name}");
        let (_, r) = api
            .get(&format!("/api/v1/roles/{}", b.role), &b_admin)
            .await;
        assert_eq!(r["permissions"], json!(["log:read"]), "{name}");

        // Inside one organization, a non-admin sees only their own tenant.
        let (status, b_viewer_list) = {
            let viewer = api.login(&b.user_email, "b-viewer-pass").await;
            let (_, me) = api.get("/api/v1/auth/me", &viewer).await;
            assert_eq!(me["tenant_id"], json!(b.tenant));
            let (_, admin_me) = api.get("/api/v1/auth/me", &b_admin).await;
            let other = admin_me["user_id"].as_str().expect("id").to_string();
            let (s, _) = api.get(&format!("/api/v1/users/{other}"), &viewer).await;
            assert_eq!(
                s, 404,
                "{name}: a viewer does not see users of another tenant"
            );
            api.get("/api/v1/users", &viewer).await
        };
        assert_eq!(status, 200);
        assert!(
            !b_viewer_list.to_string().contains(&b.admin_email),
            "{name}: {b_viewer_list}"
        );
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn each_role_gets_each_endpoint_or_403() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        let mut tokens = vec![("admin", admin.clone())];
        for role in ["developer", "viewer", "demo", "service"] {
            let email = format!("{role}@matrix.example");
            let (s, u) = api
                .post(
                    "/api/v1/users",
                    Some(&admin),
                    json!({"email": email, "password": "matrix-password", "role": role}),
                )
                .await;
            assert_eq!(s, 201, "{u}");
            tokens.push((role, api.login(&email, "matrix-password").await));
        }
        let (_, victim) = api
            .post("/api/v1/users", Some(&admin), json!({"email": "victim@matrix.example", "password": "matrix-password", "role": "viewer"}))
            .await;
        let victim = victim["user_id"].as_str().expect("victim").to_string();
        let (_, me) = api.get("/api/v1/auth/me", &admin).await;
        let org = me["organization_id"].as_str().expect("org").to_string();
        let readers = ["admin", "developer", "viewer", "demo"];
        let all = ["admin", "developer", "viewer", "demo", "service"];
        let admin_only = ["admin"];
        let not_demo = ["admin", "developer", "viewer", "service"];
        let mut n = 0;
        let mut ops: Vec<(&str, String, Option<Value>, &[&str])> = vec![
            ("GET", "/api/v1/auth/me".into(), None, &all),
            ("GET", "/api/v1/auth/sessions".into(), None, &all),
            (
                "POST",
                "/api/v1/auth/password".into(),
                Some(json!({"current_password": "wrong", "new_password": "whatever-123"})),
                &not_demo,
            ),
            ("GET", "/api/v1/regions".into(), None, &readers),
            ("GET", "/api/v1/permissions".into(), None, &readers),
            (
                "GET",
                format!("/api/v1/organizations/{org}"),
                None,
                &readers,
            ),
            (
                "PATCH",
                format!("/api/v1/organizations/{org}"),
                Some(json!({"description": "x"})),
                &admin_only,
            ),
            ("GET", "/api/v1/workspaces".into(), None, &readers),
            ("GET", "/api/v1/tenants".into(), None, &readers),
            ("GET", "/api/v1/users".into(), None, &readers),
            ("GET", format!("/api/v1/users/{victim}"), None, &readers),
            (
                "PATCH",
                format!("/api/v1/users/{victim}"),
                Some(json!({"first_name": "v"})),
                &admin_only,
            ),
            ("GET", "/api/v1/roles".into(), None, &readers),
            ("GET", "/api/v1/api-keys".into(), None, &admin_only),
            ("GET", "/api/v1/audit-logs".into(), None, &admin_only),
            (
                "POST",
                "/api/v1/query/sql".into(),
                Some(json!({"sql": "SELECT count(*) FROM logs_v3"})),
                &readers,
            ),
        ];
        // Writes that create something: a fresh name per call.
        for who in all {
            let _ = who;
            n += 1;
            ops.push((
                "POST",
                "/api/v1/workspaces".into(),
                Some(json!({"name": "w", "code": format!("w-{n}")})),
                &admin_only,
            ));
            ops.push((
                "POST",
                "/api/v1/tenants".into(),
                Some(json!({"name": "t", "code": format!("t-{n}")})),
                &admin_only,
            ));
            ops.push(("POST", "/api/v1/users".into(), Some(json!({"email": format!("u{n}@matrix.example"), "password": "matrix-password", "role": "viewer"})), &admin_only));
            ops.push(("POST", "/api/v1/roles".into(), Some(json!({"name": format!("r-{n}"), "role_type": "viewer", "permissions": ["log:read"]})), &admin_only));
            ops.push((
                "POST",
                "/api/v1/api-keys".into(),
                Some(json!({"name": "k", "permissions": ["logs:write"]})),
                &admin_only,
            ));
            ops.push((
                "POST",
                "/api/v1/invitations".into(),
                Some(json!({"email": format!("i{n}@matrix.example"), "role": "viewer"})),
                &admin_only,
            ));
        }
        for (method, path, body, allowed) in &ops {
            for (role, token) in &tokens {
                let (status, answer, _) = api.call(method, path, Some(token), body.clone()).await;
                if allowed.contains(role) {
                    assert!(
                        !matches!(status, 401 | 403),
                        "{name}: {role} must be allowed {method} {path}, got {status}: {answer}"
                    );
                } else {
                    assert_eq!(
                        status, 403,
                        "{name}: {role} must get 403 on {method} {path}, got {answer}"
                    );
                }
            }
        }
        // Deletion last (needs user:delete): everyone but admin is refused; admin's is undone.
        for (role, token) in tokens.iter().rev() {
            let (status, _, _) = api
                .call(
                    "DELETE",
                    &format!("/api/v1/users/{victim}"),
                    Some(token),
                    None,
                )
                .await;
            if *role == "admin" {
                assert_eq!(status, 204, "{name}");
                let (s, _, _) = api
                    .call(
                        "POST",
                        &format!("/api/v1/users/{victim}/restore"),
                        Some(token),
                        None,
                    )
                    .await;
                assert_eq!(s, 200, "{name}: restore");
            } else {
                assert_eq!(status, 403, "{name}: {role} deleting a user");
            }
        }
        srv.shutdown().await;
    }
}

async fn audit_rows(api: &Api, admin: &str, query: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/api/v1/audit-logs{query}"), admin).await;
    assert_eq!(status, 200, "{body}");
    let cols: Vec<String> = body["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            for (c, v) in cols.iter().zip(r.as_array().expect("row")) {
                o.insert(c.clone(), v.clone());
            }
            Value::Object(o)
        })
        .collect()
}

async fn audit_scenario(name: &str, srv: TestServer, api: Api, admin: String) {
    assert_eq!(
        api.login_body(crate::support::ADMIN_EMAIL, "wrong-password")
            .await
            .0,
        401
    );
    let (s, u) = api
        .post(
            "/api/v1/users",
            Some(&admin),
            json!({"email": "audited@example.com", "password": "audited-pass", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let rows = audit_rows(&api, &admin, "").await;
    let has = |action: &str, result: &str| {
        rows.iter()
            .any(|r| r["action"] == json!(action) && r["result"] == json!(result))
    };
    assert!(has("auth.login", "success"), "{name}: {rows:?}");
    assert!(has("auth.login", "failure"), "{name}: {rows:?}");
    assert!(has("iam.user_create", "success"), "{name}: {rows:?}");
    let create = rows
        .iter()
        .find(|r| r["action"] == json!("iam.user_create"))
        .expect("row");
    assert_eq!(create["resource_id"], u["user_id"]);
    assert_eq!(create["ip_address"], json!("127.0.0.1"));
    assert!(create["user_agent"].is_string());
    let failures = audit_rows(&api, &admin, "?result=failure&action=auth.login").await;
    assert!(
        !failures.is_empty() && failures.iter().all(|r| r["result"] == json!("failure")),
        "{name}"
    );
    let viewer = api.login("audited@example.com", "audited-pass").await;
    assert_eq!(
        api.get("/api/v1/audit-logs", &viewer).await.0,
        403,
        "{name}: admins only"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_records_sign_ins_and_changes_for_admins() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        audit_scenario(name, srv, api, admin).await;
    }
}

#[tokio::test]
async fn the_audit_log_lives_in_clickhouse_when_telemetry_does() {
    let Some((srv, api, admin)) = TestServer::with_admin_on_clickhouse().await else {
        return;
    };
    audit_scenario("clickhouse", srv, api, admin).await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_every_route_exists() {
    let (srv, api, _admin) = TestServer::with_admin().await;
    let (status, doc, headers) = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().expect("paths");
    for must in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/mfa/verify",
        "/api/v1/users/{id}",
        "/api/v1/users/{id}/roles/{role_id}",
        "/api/v1/api-keys/{id}/rotate",
        "/api/v1/audit-logs",
        "/api/v1/query/sql",
    ] {
        assert!(paths.contains_key(must), "{must} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("item") {
            operations += 1;
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            assert!(op["responses"].is_object(), "{method} {path}");
            // Every documented operation is served: without credentials it answers 401 (or
            // 400/200 for the public ones), never 404/405.
            let concrete = path
                .replace("{id}", "x")
                .replace("{role_id}", "y")
                .replace("{widget_id}", "z")
                .replace("{name}", "n");
            let (status, body, _) = api
                .call(&method.to_uppercase(), &concrete, None, None)
                .await;
            assert!(
                !matches!(status, 404 | 405),
                "{method} {path} is documented but not served: {status} {body}"
            );
            if op.get("security").is_some() {
                assert_eq!(status, 401, "{method} {path} needs a token");
            }
        }
    }
    assert!(operations >= 55, "{operations} operations");
    srv.shutdown().await;
}
