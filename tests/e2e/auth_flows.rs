//! Signing in, as a user and an attacker see it, on SQLite and on PostgreSQL metadata: the JWT
//! negative suite, refresh rotation with family revocation, sessions, lockout and its expiry,
//! TOTP MFA with backup codes and trusted devices.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, TestServer};

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        let (status, me) = api.get("/api/v1/auth/me", &admin).await;
        assert_eq!(status, 200, "{name}: {me}");
        let key = srv.jwt_key();
        let now = unix_now();
        let claims = |over: Value| {
            let mut c = json!({
                "sub": me["user_id"], "email": me["email"], "org": me["organization_id"],
                "ws": me["workspace_id"], "tenant": me["tenant_id"], "roles": ["admin"],
                "sid": "no-session", "iss": "telemetryflow", "aud": "telemetryflow-api",
                "iat": now, "nbf": now, "exp": now + 600, "jti": "x",
            });
            for (k, v) in over.as_object().expect("object") {
                c[k] = v.clone();
            }
            c
        };
        let sign = |alg: Algorithm, c: &Value| {
            jsonwebtoken::encode(&Header::new(alg), c, &EncodingKey::from_secret(&key))
                .expect("sign")
        };
        // A real session's claims, so only the one thing under test is wrong.
        let real: Value = {
            let payload = admin.split('.').nth(1).expect("payload");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("b64");
            serde_json::from_slice(&bytes).expect("claims")
        };
        let sid = json!({"sid": real["sid"]});
        let good = sign(Algorithm::HS256, &claims(sid.clone()));
        assert_eq!(
            api.get("/api/v1/auth/me", &good).await.0,
            200,
            "{name}: the control token works"
        );

        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims(sid.clone())).expect("json"));
        let mut tampered = good.clone();
        let last = tampered.pop().expect("char");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let cases: Vec<(&str, String)> = vec![
            ("alg=none", format!("{none_header}.{body}.")),
            (
                "HS512 instead of HS256",
                sign(Algorithm::HS512, &claims(sid.clone())),
            ),
            (
                "wrong audience",
                sign(
                    Algorithm::HS256,
                    &claims(json!({"sid": real["sid"], "aud": "someone-else"})),
                ),
            ),
            (
                "wrong issuer",
                sign(
                    Algorithm::HS256,
                    &claims(json!({"sid": real["sid"], "iss": "evil"})),
                ),
            ),
            (
                "expired",
                sign(
                    Algorithm::HS256,
                    &claims(
                        json!({"sid": real["sid"], "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
                    ),
                ),
            ),
            (
                "not yet valid",
                sign(
                    Algorithm::HS256,
                    &claims(json!({"sid": real["sid"], "nbf": now + 3600, "exp": now + 7200})),
                ),
            ),
            ("tampered signature", tampered),
            (
                "signed with another key",
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &claims(sid.clone()),
                    &EncodingKey::from_secret(b"another-key-another-key-another-key"),
                )
                .expect("sign"),
            ),
            (
                "no session behind it",
                sign(Algorithm::HS256, &claims(json!({}))),
            ),
            ("garbage", "not.a.token".to_string()),
        ];
        for (what, token) in cases {
            let (status, body) = api.get("/api/v1/auth/me", &token).await;
            assert_eq!(status, 401, "{name}: {what} must be refused, got {body}");
        }
        let (status, _, _) = api.call("GET", "/api/v1/auth/me", None, None).await;
        assert_eq!(status, 401, "{name}: no token");
        srv.shutdown().await;
    }
}

async fn login_tokens(api: &Api, email: &str, password: &str) -> Value {
    let (status, body) = api.login_body(email, password).await;
    assert_eq!(status, 200, "login: {body}");
    body
}

async fn refresh(api: &Api, token: &Value) -> (u16, Value) {
    api.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_session() {
    for (name, srv, api, _admin) in TestServer::on_each_meta_store(|_| {}).await {
        let first = login_tokens(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let (status, second) = refresh(&api, &first["refresh_token"]).await;
        assert_eq!(status, 200, "{name}: {second}");
        assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
        assert_eq!(second["session_id"], first["session_id"]);
        let access = second["access_token"].as_str().expect("access");
        assert_eq!(api.get("/api/v1/auth/me", access).await.0, 200);

        // The old token again: reuse. The whole family dies, the new token and its access too.
        let (status, body) = refresh(&api, &first["refresh_token"]).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(body.to_string().contains("reuse"), "{body}");
        assert_eq!(
            refresh(&api, &second["refresh_token"]).await.0,
            401,
            "{name}"
        );
        assert_eq!(
            api.get("/api/v1/auth/me", access).await.0,
            401,
            "{name}: the session's access token stops"
        );

        // Two refreshes of one token at once: never both succeed.
        let t = login_tokens(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let (a, b) = tokio::join!(
            refresh(&api, &t["refresh_token"]),
            refresh(&api, &t["refresh_token"])
        );
        let ok = [a.0, b.0].iter().filter(|s| **s == 200).count();
        assert!(
            ok <= 1,
            "{name}: both concurrent refreshes succeeded ({} / {})",
            a.1,
            b.1
        );

        assert_eq!(refresh(&api, &json!("tfr_unknown")).await.0, 401);
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_or_all() {
    for (name, srv, api, _admin) in TestServer::on_each_meta_store(|_| {}).await {
        let a = login_tokens(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let b = login_tokens(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let ta = a["access_token"].as_str().expect("a");
        let tb = b["access_token"].as_str().expect("b");
        let (status, list) = api.get("/api/v1/auth/sessions", ta).await;
        assert_eq!(status, 200);
        let items = list["items"].as_array().expect("items");
        assert!(items.len() >= 3, "{name}: {list}");
        assert!(
            items
                .iter()
                .any(|s| s["session_id"] == a["session_id"] && s["current"] == true)
        );
        // revoke b from a
        let path = format!(
            "/api/v1/auth/sessions/{}",
            b["session_id"].as_str().expect("sid")
        );
        assert_eq!(
            api.call("DELETE", &path, Some(ta), None).await.0,
            204,
            "{name}"
        );
        assert_eq!(
            api.get("/api/v1/auth/me", tb).await.0,
            401,
            "{name}: revoked at once"
        );
        assert_eq!(refresh(&api, &b["refresh_token"]).await.0, 401);
        assert_eq!(
            api.call("DELETE", &path, Some(ta), None).await.0,
            404,
            "already gone"
        );
        // logout ends the current one
        assert_eq!(
            api.call("POST", "/api/v1/auth/logout", Some(ta), None)
                .await
                .0,
            204
        );
        assert_eq!(api.get("/api/v1/auth/me", ta).await.0, 401, "{name}");
        // revoke all
        let c = login_tokens(&api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let tc = c["access_token"].as_str().expect("c");
        let (status, body, _) = api
            .call("DELETE", "/api/v1/auth/sessions", Some(tc), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["revoked"].as_u64().expect("n") >= 1);
        assert_eq!(api.get("/api/v1/auth/me", tc).await.0, 401, "{name}");
        srv.shutdown().await;
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_until_the_lock_expires() {
    let tune = |c: &mut server::Config| {
        c.lockout_threshold = 3;
        c.lockout_duration = Duration::from_secs(2);
    };
    for (name, srv, api, _admin) in TestServer::on_each_meta_store(tune).await {
        for i in 1..=2 {
            let (status, _) = api.login_body(ADMIN_EMAIL, "wrong-password").await;
            assert_eq!(status, 401, "{name}: failure {i}");
        }
        let (status, body) = api.login_body(ADMIN_EMAIL, "wrong-password").await;
        assert_eq!(status, 429, "{name}: the third failure locks: {body}");
        // Locked: even the right password is refused, with Retry-After.
        let (status, body, headers) = api
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(status, 429, "{name}: {body}");
        assert!(headers.get("retry-after").is_some());
        assert!(body.to_string().contains("locked"), "{body}");
        tokio::time::sleep(Duration::from_millis(2300)).await;
        let (status, body) = api.login_body(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(status, 200, "{name}: the lock expired: {body}");
        srv.shutdown().await;
    }
}

fn code_at(secret: &str, offset_secs: i64) -> String {
    let t = u64::try_from(unix_now() + offset_secs).expect("time");
    iam::totp_code(secret, t).expect("code")
}

#[tokio::test]
async fn totp_mfa_rejects_wrong_replayed_and_stale_codes_and_backup_codes_work_once() {
    for (name, srv, api, admin) in TestServer::on_each_meta_store(|_| {}).await {
        let (status, body) = api
            .post(
                "/api/v1/auth/mfa/enroll",
                Some(&admin),
                json!({"password": "nope"}),
            )
            .await;
        assert_eq!(status, 403, "{name}: enrolment needs the password: {body}");
        let (status, e) = api
            .post(
                "/api/v1/auth/mfa/enroll",
                Some(&admin),
                json!({"password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {e}");
        let secret = e["secret"].as_str().expect("secret").to_string();
        let uri = e["otpauth_uri"].as_str().expect("uri");
        assert!(
            uri.starts_with("otpauth://totp/") && uri.contains(&secret),
            "{uri}"
        );
        let (status, _) = api
            .post(
                "/api/v1/auth/mfa/activate",
                Some(&admin),
                json!({"code": "000000"}),
            )
            .await;
        assert_eq!(status, 400, "{name}: a wrong code does not activate");
        let activation_code = code_at(&secret, 0);
        let (status, act) = api
            .post(
                "/api/v1/auth/mfa/activate",
                Some(&admin),
                json!({"code": activation_code}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {act}");
        let backup: Vec<String> = act["backup_codes"]
            .as_array()
            .expect("codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_string())
            .collect();
        assert_eq!(backup.len(), 10);

        // Password alone is no longer enough.
        let challenge = |body: &Value| body["mfa_token"].as_str().expect("mfa token").to_string();
        let (status, first) = api.login_body(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(
            (status, first["mfa_required"].clone()),
            (200, json!(true)),
            "{name}: {first}"
        );
        assert!(first.get("access_token").is_none());
        let mfa = challenge(&first);
        let verify = |body: Value| api.post("/api/v1/auth/mfa/verify", None, body);
        assert_eq!(
            verify(json!({"mfa_token": mfa, "code": "123456"})).await.0,
            401,
            "{name}: wrong code"
        );
        assert_eq!(
            verify(json!({"mfa_token": mfa, "code": code_at(&secret, -60)}))
                .await
                .0,
            401,
            "{name}: two steps old"
        );
        assert_eq!(
            verify(json!({"mfa_token": mfa, "code": activation_code}))
                .await
                .0,
            401,
            "{name}: the activation code is spent"
        );
        let next = code_at(&secret, 30);
        let (status, ok) = verify(json!({"mfa_token": mfa, "code": next})).await;
        assert_eq!(status, 200, "{name}: the next step's code works: {ok}");
        assert!(ok["access_token"].is_string());
        assert_eq!(
            verify(json!({"mfa_token": mfa, "code": next})).await.0,
            401,
            "{name}: replayed code"
        );

        // Backup codes: once each.
        let (status, b1) = verify(json!({"mfa_token": mfa, "backup_code": backup[0]})).await;
        assert_eq!(status, 200, "{name}: {b1}");
        assert_eq!(
            verify(json!({"mfa_token": mfa, "backup_code": backup[0]}))
                .await
                .0,
            401,
            "{name}: used backup code"
        );
        assert_eq!(
            verify(json!({"mfa_token": "forged", "backup_code": backup[1]}))
                .await
                .0,
            401,
            "{name}: forged challenge"
        );

        // A remembered device skips MFA until it expires; another device does not.
        let (status, remembered) = verify(json!({"mfa_token": mfa, "backup_code": backup[1], "remember_device": true, "device_fingerprint": "laptop-1", "device_name": "laptop"})).await;
        assert_eq!(status, 200, "{name}: {remembered}");
        let (status, again) = api.post("/api/v1/auth/login", None, json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "device_fingerprint": "laptop-1"})).await;
        assert_eq!(status, 200);
        assert!(
            again["access_token"].is_string(),
            "{name}: trusted device: {again}"
        );
        let (_, other) = api.post("/api/v1/auth/login", None, json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "device_fingerprint": "phone-2"})).await;
        assert_eq!(other["mfa_required"], json!(true), "{name}");

        // The challenge token is not an access token.
        assert_eq!(api.get("/api/v1/auth/me", &mfa).await.0, 401, "{name}");
        let token = again["access_token"].as_str().expect("token");
        let (status, _) = api
            .post(
                "/api/v1/auth/mfa/disable",
                Some(token),
                json!({"password": ADMIN_PASSWORD, "backup_code": backup[2]}),
            )
            .await;
        assert_eq!(status, 200, "{name}");
        let (_, plain) = api.login_body(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert!(plain["access_token"].is_string(), "{name}: MFA off again");
        srv.shutdown().await;
    }
}
