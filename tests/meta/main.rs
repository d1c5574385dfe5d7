//! The metadata store conformance suite: the same checks on SQLite and on PostgreSQL.

#[path = "../common/postgres_env.rs"]
mod postgres_env;
#[path = "../common/unique.rs"]
mod unique;

use std::sync::Arc;

use chrono::Utc;
use storage::{ApiKeyStatus, MetaError, MetaStore, NewApiKey, NewTenant, NewUser, RoleType};

mod alert_states;
mod alerting;

struct Backend {
    name: &'static str,
    store: Arc<dyn MetaStore>,
    alerts: Arc<dyn storage::AlertStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = storage_sqlite::open(&dir.path().join("meta.db"))
        .await
        .expect("sqlite opens");
    let sqlite = Arc::new(sqlite);
    let mut out = vec![Backend {
        name: "sqlite",
        store: sqlite.clone(),
        alerts: sqlite,
        _dir: Some(dir),
    }];
    if let Some(url) = postgres_env::fresh_postgres().await {
        let pg = storage_postgres::connect(&url)
            .await
            .expect("postgres connects and migrates");
        let pg = Arc::new(pg);
        out.push(Backend {
            name: "postgres",
            store: pg.clone(),
            alerts: pg,
            _dir: None,
        });
    }
    out
}

fn key(key_id: &str, workspace_id: &str, tenant_id: &str, created_by: Option<String>) -> NewApiKey {
    NewApiKey {
        key_id: key_id.into(),
        secret_hash: "argon2-hash".into(),
        name: "ingest".into(),
        description: "from the suite".into(),
        workspace_id: workspace_id.into(),
        tenant_id: tenant_id.into(),
        permissions: vec!["traces:write".into(), "logs:write".into()],
        expires_at: Some(Utc::now() + chrono::Duration::days(30)),
        rate_limit: Some(100),
        created_by,
    }
}

#[tokio::test]
async fn bootstrap_happens_once_and_makes_an_admin() {
    for b in backends().await {
        let s = b.store.as_ref();
        assert!(
            s.bootstrap("Admin@Example.com", "h1")
                .await
                .expect("bootstrap"),
            "{}",
            b.name
        );
        assert!(
            !s.bootstrap("other@example.com", "h2")
                .await
                .expect("bootstrap"),
            "{}",
            b.name
        );
        let admin = s
            .user_by_email("admin@example.COM")
            .await
            .expect("query")
            .unwrap_or_else(|| panic!("{}: emails match case-insensitively", b.name));
        assert_eq!(admin.roles, vec![RoleType::Admin], "{}", b.name);
        assert_eq!(admin.password_hash, "h1");
        assert!(admin.is_active);
        assert!(
            s.user_by_email("other@example.com")
                .await
                .expect("query")
                .is_none()
        );
        s.ping().await.expect("ping");
    }
}

#[tokio::test]
async fn tenants_users_and_keys_keep_their_scope() {
    for b in backends().await {
        let s = b.store.as_ref();
        s.bootstrap("admin@example.com", "h")
            .await
            .expect("bootstrap");
        let admin = s
            .user_by_email("admin@example.com")
            .await
            .expect("query")
            .expect("admin");
        let ws = admin.scope.workspace_id.clone();
        let t2 = s
            .create_tenant(NewTenant {
                workspace_id: ws.clone(),
                name: "Second".into(),
                code: "second".into(),
            })
            .await
            .expect("tenant");
        assert_eq!(
            t2.organization_id, admin.scope.organization_id,
            "{}",
            b.name
        );
        assert_eq!(
            s.tenant(&t2.tenant_id)
                .await
                .expect("q")
                .expect("found")
                .code,
            "second"
        );
        assert!(s.tenant("no-such-tenant").await.expect("q").is_none());
        let dup = s
            .create_tenant(NewTenant {
                workspace_id: ws.clone(),
                name: "Again".into(),
                code: "second".into(),
            })
            .await;
        assert!(
            matches!(dup, Err(MetaError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        let nowhere = s
            .create_tenant(NewTenant {
                workspace_id: "no-such-workspace".into(),
                name: "X".into(),
                code: "x".into(),
            })
            .await;
        assert!(
            matches!(nowhere, Err(MetaError::NotFound(_))),
            "{}: {nowhere:?}",
            b.name
        );

        let viewer = s
            .create_user(NewUser {
                tenant_id: t2.tenant_id.clone(),
                email: "viewer@example.com".into(),
                password_hash: "vh".into(),
                first_name: "V".into(),
                last_name: "W".into(),
                role: RoleType::Viewer,
            })
            .await
            .expect("user");
        assert_eq!(viewer.scope.tenant_id, t2.tenant_id);
        let again = s
            .create_user(NewUser {
                tenant_id: t2.tenant_id.clone(),
                email: "VIEWER@example.com".into(),
                password_hash: "x".into(),
                first_name: String::new(),
                last_name: String::new(),
                role: RoleType::Viewer,
            })
            .await;
        assert!(
            matches!(again, Err(MetaError::Conflict(_))),
            "{}: {again:?}",
            b.name
        );
        let found = s
            .user_by_email("viewer@example.com")
            .await
            .expect("q")
            .expect("viewer");
        assert_eq!(found.roles, vec![RoleType::Viewer], "{}", b.name);
        assert_eq!(found.scope, viewer.scope);

        let k = s
            .create_api_key(key(
                "tfk-0011223344556677",
                &ws,
                &t2.tenant_id,
                Some(admin.user_id.clone()),
            ))
            .await
            .expect("key");
        assert_eq!(k.scope, t2.scope_like(), "{}", b.name);
        assert_eq!(k.permissions, vec!["logs:write", "traces:write"]);
        assert_eq!(k.status, ApiKeyStatus::Active);
        assert_eq!(k.rate_limit, Some(100));
        assert!(k.expires_at.is_some());
        let dup = s
            .create_api_key(key("tfk-0011223344556677", &ws, &t2.tenant_id, None))
            .await;
        assert!(
            matches!(dup, Err(MetaError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        let at = Utc::now();
        s.record_api_key_usage(
            &[(k.key_id.clone(), 3, at, "127.0.0.1".into())],
            &[storage::ApiKeyUsage {
                key_id: k.key_id.clone(),
                endpoint: "/v1/logs".into(),
                method: "POST".into(),
                ip_address: "127.0.0.1".into(),
                status_code: 200,
                at,
            }],
        )
        .await
        .expect("usage");
        let read = s.api_key(&k.key_id).await.expect("q").expect("key");
        assert_eq!(read.api_key_id, k.api_key_id);
        assert_eq!(read.usage_count, 3, "{}", b.name);
        assert_eq!(read.last_used_ip.as_deref(), Some("127.0.0.1"));
        let log = s.api_key_usage_log(&k.api_key_id, 10).await.expect("log");
        assert_eq!(log.len(), 1, "{}", b.name);
        assert_eq!(
            (log[0].endpoint.as_str(), log[0].status_code),
            ("/v1/logs", 200)
        );
        assert!(
            s.api_key("tfk-ffffffffffffffff")
                .await
                .expect("q")
                .is_none()
        );
    }
}

trait ScopeLike {
    fn scope_like(&self) -> model::Scope;
}

impl ScopeLike for storage::TenantRecord {
    fn scope_like(&self) -> model::Scope {
        model::Scope {
            organization_id: self.organization_id.clone(),
            workspace_id: self.workspace_id.clone(),
            tenant_id: self.tenant_id.clone(),
        }
    }
}

async fn admin_of(s: &dyn MetaStore) -> storage::UserRecord {
    s.bootstrap("admin@example.com", "h")
        .await
        .expect("bootstrap");
    s.user_by_email("admin@example.com")
        .await
        .expect("query")
        .expect("admin")
}

fn session(user_id: &str, refresh: &str) -> storage::NewSession {
    let now = Utc::now();
    storage::NewSession {
        user_id: user_id.into(),
        ip_address: "10.0.0.1".into(),
        user_agent: "suite".into(),
        device_fingerprint: String::new(),
        expires_at: now + chrono::Duration::days(30),
        refresh_hash: refresh.into(),
        refresh_expires_at: now + chrono::Duration::days(7),
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
    use storage::RefreshOutcome;
    for b in backends().await {
        let s = Arc::clone(&b.store);
        let admin = admin_of(s.as_ref()).await;
        let now = Utc::now();
        let week = now + chrono::Duration::days(7);
        let sid = s
            .create_session(session(&admin.user_id, "r1"), now)
            .await
            .expect("session");
        assert!(s.session_active(&sid, now).await.expect("q"));
        let r = s
            .rotate_refresh_token("r1", "r2", week, now)
            .await
            .expect("rotate");
        assert_eq!(
            r,
            RefreshOutcome::Rotated {
                user_id: admin.user_id.clone(),
                session_id: sid.clone()
            },
            "{}",
            b.name
        );
        // r1 again: reuse, the family (session) is revoked, r2 stops working too
        let again = s
            .rotate_refresh_token("r1", "r3", week, now)
            .await
            .expect("rotate");
        assert!(
            matches!(again, RefreshOutcome::Reused { .. }),
            "{}: {again:?}",
            b.name
        );
        assert!(!s.session_active(&sid, now).await.expect("q"), "{}", b.name);
        let r2 = s
            .rotate_refresh_token("r2", "r4", week, now)
            .await
            .expect("rotate");
        assert_eq!(r2, RefreshOutcome::Invalid, "{}", b.name);
        assert_eq!(
            s.rotate_refresh_token("nope", "r5", week, now)
                .await
                .expect("q"),
            RefreshOutcome::Invalid
        );

        // two concurrent rotations of one token: never two winners
        let sid2 = s
            .create_session(session(&admin.user_id, "c1"), now)
            .await
            .expect("session");
        let (a, c) = tokio::join!(
            {
                let s = Arc::clone(&s);
                async move { s.rotate_refresh_token("c1", "c2a", week, now).await }
            },
            {
                let s = Arc::clone(&s);
                async move { s.rotate_refresh_token("c1", "c2b", week, now).await }
            },
        );
        let wins = [a.expect("a"), c.expect("c")]
            .iter()
            .filter(|o| matches!(o, RefreshOutcome::Rotated { .. }))
            .count();
        assert!(wins <= 1, "{}: both concurrent refreshes succeeded", b.name);
        let _ = sid2;

        // sessions: list, revoke one, revoke all but one
        let s3 = s
            .create_session(session(&admin.user_id, "x1"), now)
            .await
            .expect("s3");
        let s4 = s
            .create_session(session(&admin.user_id, "y1"), now)
            .await
            .expect("s4");
        let listed: Vec<String> = s
            .sessions(&admin.user_id, now)
            .await
            .expect("list")
            .into_iter()
            .map(|x| x.session_id)
            .collect();
        assert!(listed.contains(&s3) && listed.contains(&s4), "{}", b.name);
        assert!(
            s.revoke_session(&admin.user_id, &s3, now)
                .await
                .expect("revoke")
        );
        assert!(
            !s.revoke_session(&admin.user_id, &s3, now)
                .await
                .expect("revoke"),
            "already ended"
        );
        assert!(
            !s.revoke_session("someone-else", &s4, now)
                .await
                .expect("revoke"),
            "only your own"
        );
        let s5 = s
            .create_session(session(&admin.user_id, "z1"), now)
            .await
            .expect("s5");
        let n = s
            .revoke_sessions(&admin.user_id, Some(&s5), now)
            .await
            .expect("all");
        assert!(n >= 1);
        assert!(s.session_active(&s5, now).await.expect("q"));
        assert!(!s.session_active(&s4, now).await.expect("q"));
    }
}

#[tokio::test]
async fn lockout_mfa_steps_backup_codes_devices_and_one_time_tokens() {
    use storage::OneTimeKind;
    for b in backends().await {
        let s = b.store.as_ref();
        let admin = admin_of(s).await;
        let u = &admin.user_id;
        let now = Utc::now();
        let lock = chrono::Duration::minutes(10);
        assert_eq!(
            s.record_login_failure(u, now, 3, lock).await.expect("f1"),
            None
        );
        assert_eq!(
            s.record_login_failure(u, now, 3, lock).await.expect("f2"),
            None
        );
        let locked = s.record_login_failure(u, now, 3, lock).await.expect("f3");
        assert!(
            locked.is_some_and(|t| t > now),
            "{}: third failure locks",
            b.name
        );
        assert!(
            s.user(u)
                .await
                .expect("q")
                .expect("u")
                .locked_until
                .is_some()
        );
        s.record_login_success(u, now).await.expect("success");
        let after = s.user(u).await.expect("q").expect("u");
        assert_eq!(
            (after.locked_until, after.failed_attempts),
            (None, 0),
            "{}",
            b.name
        );
        assert!(after.last_login_at.is_some());

        // TOTP steps only move forward
        s.put_mfa_secret(u, "sealed", now).await.expect("enroll");
        assert!(!s.mfa(u).await.expect("q").expect("mfa").is_enabled);
        assert!(s.use_totp_step(u, 100).await.expect("step"));
        assert!(
            !s.use_totp_step(u, 100).await.expect("step"),
            "{}: replay",
            b.name
        );
        assert!(
            !s.use_totp_step(u, 99).await.expect("step"),
            "{}: older step",
            b.name
        );
        assert!(s.use_totp_step(u, 101).await.expect("step"));
        s.enable_mfa(u, &["h1".into(), "h2".into()], now)
            .await
            .expect("enable");
        assert!(
            s.user(u).await.expect("q").expect("u").mfa_enabled,
            "{}",
            b.name
        );
        assert!(s.use_backup_code(u, "h1", now).await.expect("code"));
        assert!(
            !s.use_backup_code(u, "h1", now).await.expect("code"),
            "{}: single use",
            b.name
        );
        assert!(!s.use_backup_code(u, "nope", now).await.expect("code"));
        s.trust_device(u, "fp", "laptop", now + chrono::Duration::days(1), now)
            .await
            .expect("trust");
        assert!(s.device_trusted(u, "fp", now).await.expect("q"));
        assert!(
            !s.device_trusted(u, "fp", now + chrono::Duration::days(2))
                .await
                .expect("q"),
            "expired"
        );
        assert!(!s.device_trusted(u, "other", now).await.expect("q"));
        s.disable_mfa(u).await.expect("disable");
        assert!(s.mfa(u).await.expect("q").is_none());
        assert!(
            !s.device_trusted(u, "fp", now).await.expect("q"),
            "devices go with MFA"
        );

        // single-use, expiring email tokens
        for kind in [OneTimeKind::EmailVerification, OneTimeKind::PasswordReset] {
            let tag = format!("{kind:?}");
            s.create_one_time_token(
                kind,
                u,
                &admin.email,
                &format!("{tag}-t1"),
                now + chrono::Duration::hours(1),
                now,
            )
            .await
            .expect("create");
            s.create_one_time_token(
                kind,
                u,
                &admin.email,
                &format!("{tag}-old"),
                now - chrono::Duration::seconds(1),
                now,
            )
            .await
            .expect("create");
            let c = s
                .consume_one_time_token(kind, &format!("{tag}-t1"), now)
                .await
                .expect("consume");
            assert_eq!(c.map(|c| c.user_id), Some(u.clone()), "{}", b.name);
            assert!(
                s.consume_one_time_token(kind, &format!("{tag}-t1"), now)
                    .await
                    .expect("q")
                    .is_none(),
                "single use"
            );
            assert!(
                s.consume_one_time_token(kind, &format!("{tag}-old"), now)
                    .await
                    .expect("q")
                    .is_none(),
                "expired"
            );
        }
        let inv = s
            .create_invitation(
                storage::NewInvitation {
                    tenant_id: admin.scope.tenant_id.clone(),
                    email: "new@example.com".into(),
                    role: RoleType::Developer,
                    token_hash: "inv1".into(),
                    invited_by: u.clone(),
                    expires_at: now + chrono::Duration::days(1),
                },
                now,
            )
            .await
            .expect("invite");
        let used = s
            .consume_invitation("inv1", now)
            .await
            .expect("q")
            .expect("invitation");
        assert_eq!(
            (used.invitation_id, used.role),
            (inv.invitation_id, RoleType::Developer)
        );
        assert!(
            s.consume_invitation("inv1", now)
                .await
                .expect("q")
                .is_none(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn roles_expire_soft_delete_restores_and_purge_removes() {
    for b in backends().await {
        let s = b.store.as_ref();
        let admin = admin_of(s).await;
        let t = admin.scope.tenant_id.clone();
        let dev = s
            .create_user(NewUser {
                tenant_id: t.clone(),
                email: "dev@example.com".into(),
                password_hash: "h".into(),
                first_name: String::new(),
                last_name: String::new(),
                role: RoleType::Developer,
            })
            .await
            .expect("dev");
        assert!(
            dev.permissions.contains(&"trace:write".to_string()),
            "{}",
            b.name
        );
        assert!(!dev.permissions.contains(&"user:admin".to_string()));

        // a custom role, granted with an expiry
        let auditor = s
            .create_role(
                &t,
                "auditor",
                "reads users",
                RoleType::Viewer,
                &["user:admin".into(), "log:read".into()],
            )
            .await
            .expect("role");
        assert_eq!(
            auditor.permissions,
            vec!["log:read", "user:admin"],
            "{}",
            b.name
        );
        assert!(matches!(
            s.create_role(&t, "auditor", "", RoleType::Viewer, &[])
                .await,
            Err(MetaError::Conflict(_))
        ));
        assert!(matches!(
            s.create_role(&t, "bad", "", RoleType::Viewer, &["user:fly".into()])
                .await,
            Err(MetaError::Invalid(_))
        ));
        s.assign_role(
            &dev.user_id,
            &auditor.role_id,
            Some(Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .expect("assign");
        assert!(
            s.user(&dev.user_id)
                .await
                .expect("q")
                .expect("u")
                .permissions
                .contains(&"user:admin".to_string()),
            "{}",
            b.name
        );
        s.assign_role(
            &dev.user_id,
            &auditor.role_id,
            Some(Utc::now() - chrono::Duration::seconds(1)),
        )
        .await
        .expect("re-assign");
        let expired = s.user(&dev.user_id).await.expect("q").expect("u");
        assert!(
            !expired.permissions.contains(&"user:admin".to_string()),
            "{}: an expired grant is not in force",
            b.name
        );
        assert_eq!(expired.roles, vec![RoleType::Developer]);
        let updated = s
            .set_role_permissions(&auditor.role_id, &["metric:read".into()])
            .await
            .expect("set");
        assert_eq!(updated.permissions, vec!["metric:read"]);
        assert_eq!(s.roles(&t).await.expect("roles").len(), 6, "{}", b.name);

        // pagination by id
        let mut ids = Vec::new();
        for i in 0..5 {
            let u = s
                .create_user(NewUser {
                    tenant_id: t.clone(),
                    email: format!("p{i}@example.com"),
                    password_hash: "h".into(),
                    first_name: String::new(),
                    last_name: String::new(),
                    role: RoleType::Viewer,
                })
                .await
                .expect("user");
            ids.push(u.user_id);
        }
        let within = storage::Within {
            organization_id: admin.scope.organization_id.clone(),
            workspace_id: None,
            tenant_id: Some(t.clone()),
        };
        let mut seen = Vec::new();
        let mut page = storage::Page {
            limit: 3,
            after: None,
            include_deleted: false,
        };
        loop {
            let got = s.users(&within, &page).await.expect("page");
            if got.is_empty() {
                break;
            }
            page.after = got.last().map(|u| u.user_id.clone());
            seen.extend(got.into_iter().map(|u| u.user_id));
        }
        assert_eq!(seen.len(), 7, "{}: admin + dev + 5", b.name);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);

        // soft delete hides, restore brings back, purge removes after the cutoff
        let gone = &ids[0];
        assert!(
            s.set_deleted(storage::Entity::User, gone, Some(Utc::now()))
                .await
                .expect("delete")
        );
        assert!(
            s.user_by_email("p0@example.com")
                .await
                .expect("q")
                .is_none(),
            "{}",
            b.name
        );
        assert!(
            s.user(gone)
                .await
                .expect("q")
                .expect("still there")
                .deleted_at
                .is_some()
        );
        s.set_deleted(storage::Entity::User, gone, None)
            .await
            .expect("restore");
        assert!(
            s.user_by_email("p0@example.com")
                .await
                .expect("q")
                .is_some(),
            "{}",
            b.name
        );
        let t2 = s
            .create_tenant(NewTenant {
                workspace_id: admin.scope.workspace_id.clone(),
                name: "Doomed".into(),
                code: "doomed".into(),
            })
            .await
            .expect("t2");
        let doomed_user = s
            .create_user(NewUser {
                tenant_id: t2.tenant_id.clone(),
                email: "doomed@example.com".into(),
                password_hash: "h".into(),
                first_name: String::new(),
                last_name: String::new(),
                role: RoleType::Admin,
            })
            .await
            .expect("user");
        s.create_api_key(key(
            "tfk-aaaaaaaaaaaaaaaa",
            &t2.workspace_id,
            &t2.tenant_id,
            None,
        ))
        .await
        .expect("key");
        let long_ago = Utc::now() - chrono::Duration::days(100);
        s.set_deleted(storage::Entity::Tenant, &t2.tenant_id, Some(long_ago))
            .await
            .expect("delete");
        assert!(s.tenant(&t2.tenant_id).await.expect("q").is_none());
        assert!(
            s.user_by_email("doomed@example.com")
                .await
                .expect("q")
                .is_none(),
            "{}: users of a deleted tenant cannot sign in",
            b.name
        );
        assert!(
            !s.api_key("tfk-aaaaaaaaaaaaaaaa")
                .await
                .expect("q")
                .expect("key")
                .owner_active,
            "{}",
            b.name
        );
        s.set_deleted(storage::Entity::User, &ids[1], Some(long_ago))
            .await
            .expect("delete");
        s.set_deleted(storage::Entity::User, &ids[2], Some(Utc::now()))
            .await
            .expect("delete");
        let now = Utc::now();
        let report = s
            .purge(now - chrono::Duration::days(90), now)
            .await
            .expect("purge");
        assert_eq!(
            (report.tenants, report.users),
            (1, 1),
            "{}: {report:?}",
            b.name
        );
        assert!(s.tenant_any(&t2.tenant_id).await.expect("q").is_none());
        assert!(s.user(&doomed_user.user_id).await.expect("q").is_none());
        assert!(
            s.api_key("tfk-aaaaaaaaaaaaaaaa")
                .await
                .expect("q")
                .is_none()
        );
        assert!(s.user(&ids[1]).await.expect("q").is_none());
        assert!(
            s.user(&ids[2]).await.expect("q").is_some(),
            "{}: deleted recently, kept",
            b.name
        );
    }
}

#[tokio::test]
async fn api_keys_rotate_with_grace_and_revoke_with_reason() {
    for b in backends().await {
        let s = b.store.as_ref();
        let admin = admin_of(s).await;
        let (ws, t) = (
            admin.scope.workspace_id.clone(),
            admin.scope.tenant_id.clone(),
        );
        let old = s
            .create_api_key(key("tfk-1111111111111111", &ws, &t, None))
            .await
            .expect("key");
        let grace = Utc::now() + chrono::Duration::hours(1);
        let new = s
            .rotate_api_key(
                &old.api_key_id,
                key("tfk-2222222222222222", &ws, &t, None),
                grace,
            )
            .await
            .expect("rotate");
        assert_eq!(new.status, ApiKeyStatus::Active);
        let old_now = s
            .api_key_by_id(&old.api_key_id)
            .await
            .expect("q")
            .expect("old");
        assert_eq!(old_now.status, ApiKeyStatus::Rotated, "{}", b.name);
        assert!(old_now.grace_period_expires_at.is_some());
        assert!(
            matches!(
                s.rotate_api_key(
                    &old.api_key_id,
                    key("tfk-3333333333333333", &ws, &t, None),
                    grace
                )
                .await,
                Err(MetaError::Invalid(_))
            ),
            "{}: a rotated key does not rotate again",
            b.name
        );
        let revoked = s
            .revoke_api_key(&new.api_key_id, "leaked", &admin.user_id, Utc::now())
            .await
            .expect("revoke");
        assert_eq!(revoked.status, ApiKeyStatus::Revoked);
        assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked"));
        assert_eq!(revoked.revoked_by.as_deref(), Some(admin.user_id.as_str()));
        assert!(matches!(
            s.revoke_api_key(&new.api_key_id, "again", "x", Utc::now())
                .await,
            Err(MetaError::Invalid(_))
        ));
        let within = storage::Within {
            organization_id: admin.scope.organization_id.clone(),
            workspace_id: None,
            tenant_id: None,
        };
        let all = s
            .api_keys(
                &within,
                &storage::Page {
                    limit: 50,
                    after: None,
                    include_deleted: false,
                },
            )
            .await
            .expect("list");
        assert_eq!(all.len(), 2, "{}", b.name);
    }
}

#[tokio::test]
async fn plugins_are_stored_per_workspace_with_their_bytes_once() {
    for b in backends().await {
        let s = b.store.as_ref();
        let admin = admin_of(s).await;
        let ws = admin.scope.workspace_id.clone();
        let bytes = vec![0u8, 97, 115, 109, 13, 0, 1, 0, 42];
        let new = |version: &str| storage::NewPlugin {
            workspace_id: ws.clone(),
            name: "threshold".into(),
            version: version.into(),
            kind: "alert-condition".into(),
            description: "d".into(),
            config_schema: "{}".into(),
            sha256: "abc123".into(),
            bytes: bytes.clone(),
            created_by: Some(admin.user_id.clone()),
        };
        let p1 = s.create_plugin(new("1.0.0")).await.expect("create");
        assert_eq!(
            (p1.kind.as_str(), p1.size_bytes, p1.is_enabled),
            ("alert-condition", 9, true),
            "{}",
            b.name
        );
        let p2 = s
            .create_plugin(new("1.1.0"))
            .await
            .expect("same bytes, new version");
        assert!(
            matches!(
                s.create_plugin(new("1.0.0")).await,
                Err(MetaError::Conflict(_))
            ),
            "{}",
            b.name
        );
        assert_eq!(
            s.plugin_bytes("abc123").await.expect("q"),
            Some(bytes.clone()),
            "{}",
            b.name
        );
        let page = storage::Page {
            limit: 50,
            after: None,
            include_deleted: false,
        };
        assert_eq!(
            s.plugins(&ws, Some("threshold"), &page)
                .await
                .expect("list")
                .len(),
            2
        );
        assert!(
            s.plugins(&ws, Some("other"), &page)
                .await
                .expect("list")
                .is_empty()
        );
        let off = s
            .set_plugin_enabled(&p1.plugin_id, false, Some("failed 5 times in a row"))
            .await
            .expect("disable");
        assert_eq!(
            (off.is_enabled, off.disabled_reason.as_deref()),
            (false, Some("failed 5 times in a row"))
        );
        let on = s
            .set_plugin_enabled(&p1.plugin_id, true, None)
            .await
            .expect("enable");
        assert!(on.is_enabled && on.disabled_reason.is_none());
        assert!(
            s.delete_plugin(&p1.plugin_id, Utc::now() - chrono::Duration::days(100))
                .await
                .expect("delete")
        );
        assert!(
            !s.delete_plugin(&p1.plugin_id, Utc::now())
                .await
                .expect("delete"),
            "already deleted"
        );
        s.create_plugin(new("1.0.0"))
            .await
            .expect("a deleted plugin frees its name and version");
        let now = Utc::now();
        s.purge(now - chrono::Duration::days(90), now)
            .await
            .expect("purge");
        assert!(
            s.plugin(&p1.plugin_id).await.expect("q").is_none(),
            "{}: purged",
            b.name
        );
        assert!(s.plugin(&p2.plugin_id).await.expect("q").is_some());
        assert!(
            s.plugin_bytes("abc123").await.expect("q").is_some(),
            "still used"
        );
    }
}
