//! Email flows through a real SMTP server (aiosmtpd) started by the test: verification after
//! open registration, password reset, invitations; on SQLite and on PostgreSQL metadata.

use serde_json::json;

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, SmtpCapture, TestServer};

struct Setup {
    name: &'static str,
    srv: TestServer,
    api: Api,
    admin: String,
    smtp: SmtpCapture,
}

async fn servers(registration: server::config::RegistrationMode) -> Vec<Setup> {
    let mut out = Vec::new();
    let mut pg = crate::postgres_env::fresh_postgres().await;
    for name in ["sqlite", "postgres"] {
        let postgres_url = match name {
            "postgres" => match pg.take() {
                Some(url) => Some(url),
                None => continue,
            },
            _ => None,
        };
        let smtp = SmtpCapture::start();
        let url = smtp.url();
        let (srv, api, admin) = TestServer::with_admin_tuned(|c| {
            c.smtp_url = Some(url);
            c.registration = registration;
            c.public_url = Some("https://console.example.com".into());
            c.postgres_url = postgres_url;
        })
        .await;
        out.push(Setup {
            name,
            srv,
            api,
            admin,
            smtp,
        });
    }
    out
}

#[tokio::test]
async fn open_registration_sends_a_verification_link_that_works_once() {
    for s in servers(server::config::RegistrationMode::Open).await {
        let (name, api) = (s.name, &s.api);
        let email = "founder@acme.example";
        let (status, user) = api
            .post("/api/v1/auth/register", None, json!({"email": email, "password": "founder-password", "organization_name": "Acme"}))
            .await;
        assert_eq!(status, 201, "{name}: {user}");
        assert_eq!(user["email_verified"], json!(false));
        assert_ne!(user["organization_id"], json!(null));
        let token = api.login(email, "founder-password").await;
        let (_, me) = api.get("/api/v1/auth/me", &token).await;
        assert!(
            me["permissions"]
                .as_array()
                .expect("perms")
                .contains(&json!("user:admin")),
            "{name}: the founder administers the new organization"
        );

        let mail = s.smtp.wait_for(email, "Verify").await;
        assert!(mail.has_html, "{name}: text and HTML parts");
        assert!(
            mail.text
                .contains("https://console.example.com/verify-email?token="),
            "{}",
            mail.text
        );
        let link_token = mail.link_param("token").expect("token in the link");
        let (status, body) = api
            .post(
                "/api/v1/auth/verify-email",
                None,
                json!({"token": link_token}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, _) = api
            .post(
                "/api/v1/auth/verify-email",
                None,
                json!({"token": link_token}),
            )
            .await;
        assert_eq!(status, 400, "{name}: single use");
        let (_, me) = api.get("/api/v1/auth/me", &token).await;
        assert_eq!(me["email_verified"], json!(true), "{name}");
        let (status, _) = api
            .post(
                "/api/v1/auth/verify-email",
                None,
                json!({"token": "tfv_forged"}),
            )
            .await;
        assert_eq!(status, 400);
        s.srv.shutdown().await;
    }
}

#[tokio::test]
async fn password_reset_by_email_link_changes_the_password_and_ends_sessions() {
    for s in servers(server::config::RegistrationMode::Invite).await {
        let (name, api) = (s.name, &s.api);
        let (status, _) = api
            .post(
                "/api/v1/auth/password-reset/request",
                None,
                json!({"email": "nobody@example.com"}),
            )
            .await;
        assert_eq!(status, 202, "{name}: unknown addresses get the same answer");
        let (status, _) = api
            .post(
                "/api/v1/auth/password-reset/request",
                None,
                json!({"email": ADMIN_EMAIL}),
            )
            .await;
        assert_eq!(status, 202);
        let mail = s.smtp.wait_for(ADMIN_EMAIL, "Reset").await;
        let token = mail.link_param("token").expect("token");
        let (status, _) = api
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({"token": token, "new_password": "short"}),
            )
            .await;
        assert_eq!(
            status, 400,
            "{name}: the policy applies (and the token is not spent)"
        );
        let (status, body) = api
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({"token": token, "new_password": "a-brand-new-password"}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, _) = api
            .post(
                "/api/v1/auth/password-reset",
                None,
                json!({"token": token, "new_password": "yet-another-password"}),
            )
            .await;
        assert_eq!(status, 400, "{name}: single use");
        assert_eq!(
            api.login_body(ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
            401,
            "{name}: the old password is gone"
        );
        assert_eq!(
            api.login_body(ADMIN_EMAIL, "a-brand-new-password").await.0,
            200,
            "{name}"
        );
        assert_eq!(
            api.get("/api/v1/auth/me", &s.admin).await.0,
            401,
            "{name}: sessions from before the reset ended"
        );
        assert!(!s.smtp_sent_to("nobody@example.com"), "{name}");
        s.srv.shutdown().await;
    }
}

impl Setup {
    fn smtp_sent_to(&self, to: &str) -> bool {
        self.smtp.sent_to(to)
    }
}

#[tokio::test]
async fn invitations_arrive_by_email_and_register_the_invitee_once() {
    for s in servers(server::config::RegistrationMode::Invite).await {
        let (name, api) = (s.name, &s.api);
        let (status, body) = api
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": "stranger@example.com", "password": "stranger-password"}),
            )
            .await;
        assert_eq!(status, 403, "{name}: no invitation, no account: {body}");
        let invitee = "dev@example.com";
        let (status, inv) = api
            .post(
                "/api/v1/invitations",
                Some(&s.admin),
                json!({"email": invitee, "role": "developer"}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {inv}");
        assert_eq!(inv["emailed"], json!(true));
        let mail = s.smtp.wait_for(invitee, "invited").await;
        let token = mail.link_param("invitation").expect("invitation token");
        let (status, _) = api
            .post("/api/v1/auth/register", None, json!({"email": "someone-else@example.com", "password": "dev-password-1", "invitation_token": token}))
            .await;
        assert_eq!(status, 400, "{name}: the invitation names its address");
        let token2 = {
            let (_, inv2) = api
                .post(
                    "/api/v1/invitations",
                    Some(&s.admin),
                    json!({"email": invitee, "role": "developer"}),
                )
                .await;
            inv2["invitation_token"]
                .as_str()
                .expect("token")
                .to_string()
        };
        let (status, user) = api
            .post("/api/v1/auth/register", None, json!({"email": invitee, "password": "dev-password-1", "first_name": "Dev", "invitation_token": token2}))
            .await;
        assert_eq!(status, 201, "{name}: {user}");
        assert_eq!(user["roles"][0]["role_type"], json!("developer"));
        assert_eq!(user["email_verified"], json!(true));
        let (status, _) = api
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": invitee, "password": "dev-password-1", "invitation_token": token2}),
            )
            .await;
        assert_eq!(status, 400, "{name}: an invitation works once");
        let dev = api.login(invitee, "dev-password-1").await;
        let (status, _) = api
            .post(
                "/api/v1/invitations",
                Some(&dev),
                json!({"email": "x@example.com", "role": "admin"}),
            )
            .await;
        assert_eq!(status, 403, "{name}: only admins invite");
        s.srv.shutdown().await;
    }
}
