//! Sign-in and everything around it: registration and invitations, login with lockout, MFA
//! (TOTP and backup codes, trusted devices), access and rotating refresh tokens, sessions, email
//! verification, password change and reset.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use iam::Principal;
use model::{ErrorKind, Scope};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::{
    NewInvitation, NewOrganization, NewSession, NewUser, OneTimeKind, RefreshOutcome, RoleType,
    UserRecord,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditResult;
use crate::auth::{Client, User, require};
use crate::mail::html_escape;
use crate::routes::Body;
use crate::{ApiError, AppState, Registration};

pub(crate) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(mfa_verify))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(sessions, revoke_all_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(change_password))
        .routes(routes!(send_verification))
        .routes(routes!(verify_email))
        .routes(routes!(request_reset))
        .routes(routes!(reset_password))
        .routes(routes!(mfa_enroll))
        .routes(routes!(mfa_activate))
        .routes(routes!(mfa_disable))
        .routes(routes!(invite))
}

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    blocking(move || iam::hash_password(&password))
        .await?
        .map_err(ApiError::internal)
}

async fn password_matches(password: String, hash: String) -> Result<bool, ApiError> {
    blocking(move || iam::verify_password(&password, &hash)).await
}

fn too_many(message: impl Into<String>, until: DateTime<Utc>) -> ApiError {
    let secs = (until - Utc::now()).num_seconds().max(1);
    ApiError {
        kind: ErrorKind::TooManyRequests,
        message: message.into(),
        retry_after: Some(std::time::Duration::from_secs(secs.unsigned_abs())),
        fields: Vec::new(),
    }
}

fn locked(until: DateTime<Utc>) -> ApiError {
    too_many(
        format!(
            "too many failed sign-ins; the account is locked until {}",
            until.to_rfc3339()
        ),
        until,
    )
}

fn user_json(u: &UserRecord) -> serde_json::Value {
    json!({
        "user_id": u.user_id,
        "email": u.email,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "organization_id": u.scope.organization_id,
        "workspace_id": u.scope.workspace_id,
        "tenant_id": u.scope.tenant_id,
        "roles": u.grants.iter().map(|g| json!({
            "role_id": g.role_id, "name": g.name, "role_type": g.role_type.as_str(),
            "expires_at": g.expires_at,
        })).collect::<Vec<_>>(),
        "permissions": u.permissions,
        "is_active": u.is_active,
        "email_verified": u.email_verified,
        "mfa_enabled": u.mfa_enabled,
        "locked_until": u.locked_until,
        "last_login_at": u.last_login_at,
        "deleted_at": u.deleted_at,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

pub(crate) fn user_view(u: &UserRecord) -> serde_json::Value {
    user_json(u)
}

/// Tokens handed out at sign-in and refresh.
#[derive(Serialize)]
struct Tokens {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    session_id: String,
    user: serde_json::Value,
}

fn access_token(
    state: &AppState,
    user: &UserRecord,
    session_id: &str,
) -> Result<(String, u64), ApiError> {
    let roles = user.roles.iter().map(|r| r.as_str().to_string()).collect();
    let (token, claims) = state
        .tokens
        .issue(
            &user.user_id,
            &user.email,
            &user.scope,
            roles,
            session_id,
            unix(Utc::now()),
        )
        .map_err(ApiError::internal)?;
    Ok((token, claims.exp - claims.iat))
}

/// Opens a session for a user whose credentials (and MFA) checked out.
async fn start_session(
    state: &AppState,
    user: &UserRecord,
    client: &Client,
    fingerprint: &str,
) -> Result<Tokens, ApiError> {
    let now = Utc::now();
    let refresh = iam::random_token("tfr_");
    let session_expires = now + state.auth.session_ttl;
    let session_id = state
        .meta
        .create_session(
            NewSession {
                user_id: user.user_id.clone(),
                ip_address: client.ip.clone(),
                user_agent: client.user_agent.clone(),
                device_fingerprint: fingerprint_hash(&user.user_id, fingerprint),
                expires_at: session_expires,
                refresh_hash: iam::token_hash(&refresh),
                refresh_expires_at: (now + state.auth.refresh_ttl).min(session_expires),
            },
            now,
        )
        .await?;
    state.meta.record_login_success(&user.user_id, now).await?;
    let (access, expires_in) = access_token(state, user, &session_id)?;
    Ok(Tokens {
        access_token: access,
        token_type: "Bearer",
        expires_in,
        refresh_token: refresh,
        session_id,
        user: user_json(user),
    })
}

fn fingerprint_hash(user_id: &str, fingerprint: &str) -> String {
    if fingerprint.is_empty() {
        String::new()
    } else {
        iam::token_hash(&format!("{user_id}\n{fingerprint}"))
    }
}

fn no_scope() -> Scope {
    Scope {
        organization_id: String::new(),
        workspace_id: String::new(),
        tenant_id: String::new(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
    /// A stable id of the client device (for trusted devices).
    #[serde(default)]
    device_fingerprint: String,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login, responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn login(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<Login>,
) -> Result<Response, ApiError> {
    let denied = || ApiError::unauthenticated("invalid email or password");
    let email = body.email.trim().to_string();
    let fail = |actor: &str, scope: &Scope, reason: &str| {
        metrics::counter!("telemetryflow_logins_total", "result" => "failure").increment(1);
        state.audit(
            &client,
            actor,
            scope,
            "auth.login",
            ("user", actor),
            AuditResult::Failure,
            json!({"email": email, "reason": reason}),
        );
    };
    let Some(user) = state.meta.user_by_email(&email).await? else {
        // Spend the same work as a real check so timing does not reveal which emails exist.
        let _ = blocking(|| iam::hash_password("timing-equalizer")).await;
        fail("", &no_scope(), "unknown email");
        return Err(denied());
    };
    let now = Utc::now();
    if let Some(until) = user.locked_until.filter(|t| *t > now) {
        fail(&user.user_id, &user.scope, "locked");
        return Err(locked(until));
    }
    if !password_matches(body.password, user.password_hash.clone()).await? {
        let lock = state
            .meta
            .record_login_failure(
                &user.user_id,
                now,
                state.auth.lockout_threshold,
                state.auth.lockout_duration,
            )
            .await?;
        fail(&user.user_id, &user.scope, "wrong password");
        return Err(match lock {
            Some(until) => locked(until),
            None => denied(),
        });
    }
    if !user.is_active {
        fail(&user.user_id, &user.scope, "inactive");
        return Err(denied());
    }
    if user.mfa_enabled {
        let fp = fingerprint_hash(&user.user_id, body.device_fingerprint.trim());
        let trusted = !fp.is_empty() && state.meta.device_trusted(&user.user_id, &fp, now).await?;
        if !trusted {
            let token = state
                .tokens
                .issue_challenge(&user.user_id, unix(now))
                .map_err(ApiError::internal)?;
            return Ok(Json(json!({
                "mfa_required": true,
                "mfa_token": token,
                "expires_in": 300,
            }))
            .into_response());
        }
    }
    let tokens = start_session(&state, &user, &client, body.device_fingerprint.trim()).await?;
    metrics::counter!("telemetryflow_logins_total", "result" => "success").increment(1);
    state.audit(
        &client,
        &user.user_id,
        &user.scope,
        "auth.login",
        ("session", &tokens.session_id),
        AuditResult::Success,
        json!({"mfa": user.mfa_enabled}),
    );
    Ok(Json(tokens).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaVerify {
    mfa_token: String,
    code: Option<String>,
    backup_code: Option<String>,
    #[serde(default)]
    remember_device: bool,
    #[serde(default)]
    device_fingerprint: String,
    #[serde(default)]
    device_name: String,
}

/// Checks a TOTP code (not replayed) or a backup code (not used) for a user with MFA.
async fn second_factor(
    state: &AppState,
    user_id: &str,
    code: Option<&str>,
    backup_code: Option<&str>,
) -> Result<bool, ApiError> {
    let now = Utc::now();
    if let Some(code) = code {
        let Some(mfa) = state.meta.mfa(user_id).await? else {
            return Ok(false);
        };
        let secret = state
            .auth
            .secrets
            .open(&mfa.secret_encrypted, &format!("mfa:{user_id}"))
            .map_err(ApiError::internal)?;
        let secret = String::from_utf8(secret).map_err(ApiError::internal)?;
        let Some(step) = iam::totp_match(&secret, code, unix(now)).map_err(ApiError::internal)?
        else {
            return Ok(false);
        };
        return Ok(state.meta.use_totp_step(user_id, step).await?);
    }
    if let Some(b) = backup_code {
        return Ok(state
            .meta
            .use_backup_code(user_id, &iam::backup_code_hash(b), now)
            .await?);
    }
    Ok(false)
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "mfa", request_body = MfaVerify, responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn mfa_verify(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<MfaVerify>,
) -> Result<Response, ApiError> {
    let user_id = state
        .tokens
        .verify_challenge(&body.mfa_token)
        .map_err(|e| ApiError::unauthenticated(format!("invalid MFA token: {e}")))?;
    let Some(user) = state.meta.user(&user_id).await? else {
        return Err(ApiError::unauthenticated("invalid MFA token"));
    };
    if user.deleted_at.is_some() || !user.is_active {
        return Err(ApiError::unauthenticated("invalid MFA token"));
    }
    let now = Utc::now();
    if let Some(until) = user.locked_until.filter(|t| *t > now) {
        return Err(locked(until));
    }
    let ok = second_factor(
        &state,
        &user.user_id,
        body.code.as_deref(),
        body.backup_code.as_deref(),
    )
    .await?;
    if !ok {
        let lock = state
            .meta
            .record_login_failure(
                &user.user_id,
                now,
                state.auth.lockout_threshold,
                state.auth.lockout_duration,
            )
            .await?;
        state.audit(
            &client,
            &user.user_id,
            &user.scope,
            "auth.mfa",
            ("user", &user.user_id),
            AuditResult::Failure,
            json!({"reason": "wrong, replayed or used code"}),
        );
        return Err(match lock {
            Some(until) => locked(until),
            None => ApiError::unauthenticated("invalid, expired or already used MFA code"),
        });
    }
    let fp = body.device_fingerprint.trim();
    if body.remember_device && !fp.is_empty() {
        state
            .meta
            .trust_device(
                &user.user_id,
                &fingerprint_hash(&user.user_id, fp),
                body.device_name.trim(),
                now + state.auth.trusted_device_ttl,
                now,
            )
            .await?;
    }
    let tokens = start_session(&state, &user, &client, fp).await?;
    state.audit(
        &client,
        &user.user_id,
        &user.scope,
        "auth.login",
        ("session", &tokens.session_id),
        AuditResult::Success,
        json!({"mfa": true, "backup_code": body.backup_code.is_some(), "device_trusted": body.remember_device}),
    );
    Ok(Json(tokens).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Refresh {
    refresh_token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = Refresh, responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn refresh(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<Refresh>,
) -> Result<Json<Tokens>, ApiError> {
    let now = Utc::now();
    let next = iam::random_token("tfr_");
    let outcome = state
        .meta
        .rotate_refresh_token(
            &iam::token_hash(body.refresh_token.trim()),
            &iam::token_hash(&next),
            now + state.auth.refresh_ttl,
            now,
        )
        .await?;
    match outcome {
        RefreshOutcome::Invalid => Err(ApiError::unauthenticated(
            "invalid or expired refresh token",
        )),
        RefreshOutcome::Reused {
            user_id,
            session_id,
        } => {
            state.access.forget_user(&user_id);
            let scope = state
                .meta
                .user(&user_id)
                .await?
                .map_or_else(no_scope, |u| u.scope);
            state.audit(
                &client,
                &user_id,
                &scope,
                "auth.refresh_reuse",
                ("session", &session_id),
                AuditResult::Failure,
                json!({"revoked": "session"}),
            );
            Err(ApiError::unauthenticated(
                "refresh token reuse detected; the session has been revoked",
            ))
        }
        RefreshOutcome::Rotated {
            user_id,
            session_id,
        } => {
            let user = state
                .meta
                .user(&user_id)
                .await?
                .filter(|u| u.deleted_at.is_none() && u.is_active)
                .ok_or_else(|| ApiError::unauthenticated("the account is disabled"))?;
            if state.meta.tenant(&user.scope.tenant_id).await?.is_none() {
                return Err(ApiError::unauthenticated("the account is disabled"));
            }
            let (access, expires_in) = access_token(&state, &user, &session_id)?;
            Ok(Json(Tokens {
                access_token: access,
                token_type: "Bearer",
                expires_in,
                refresh_token: next,
                session_id,
                user: user_json(&user),
            }))
        }
    }
}

/// A `demo` account is shared and read-only: it cannot change its password, MFA or email.
fn no_demo(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::User { roles, .. } if !roles.is_empty() && roles.iter().all(|r| r == "demo") => {
            Err(ApiError::forbidden("demo accounts are read-only"))
        }
        _ => Ok(()),
    }
}

fn user_parts(p: &Principal) -> (&str, &str) {
    match p {
        Principal::User {
            user_id,
            session_id,
            ..
        } => (user_id, session_id),
        Principal::ApiKey { key_id, .. } => (key_id, ""),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn logout(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
) -> Result<StatusCode, ApiError> {
    let (user_id, session_id) = user_parts(&p);
    state
        .meta
        .revoke_session(user_id, session_id, Utc::now())
        .await?;
    state.access.forget_user(user_id);
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.logout",
        ("session", session_id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn me(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user_id, _) = user_parts(&p);
    let user = state
        .meta
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "user not found"))?;
    Ok(Json(user_json(&user)))
}

#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn sessions(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user_id, current) = user_parts(&p);
    let list = state.meta.sessions(user_id, Utc::now()).await?;
    let items: Vec<_> = list
        .iter()
        .map(|s| {
            json!({
                "session_id": s.session_id,
                "ip_address": s.ip_address,
                "user_agent": s.user_agent,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "expires_at": s.expires_at,
                "current": s.session_id == current,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn revoke_session(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (user_id, _) = user_parts(&p);
    if !state.meta.revoke_session(user_id, &id, Utc::now()).await? {
        return Err(ApiError::new(ErrorKind::NotFound, "session not found"));
    }
    state.access.forget_user(user_id);
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.session_revoke",
        ("session", &id),
        AuditResult::Success,
        json!({}),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn revoke_all_sessions(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user_id, _) = user_parts(&p);
    let n = state
        .meta
        .revoke_sessions(user_id, None, Utc::now())
        .await?;
    state.access.forget_user(user_id);
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.sessions_revoke_all",
        ("user", user_id),
        AuditResult::Success,
        json!({"revoked": n}),
    );
    Ok(Json(json!({ "revoked": n })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePassword, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn change_password(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<ChangePassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    no_demo(&p)?;
    let (user_id, session_id) = user_parts(&p);
    let user = state
        .meta
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "user not found"))?;
    if !password_matches(body.current_password, user.password_hash.clone()).await? {
        state.audit(
            &client,
            user_id,
            p.scope(),
            "auth.password_change",
            ("user", user_id),
            AuditResult::Failure,
            json!({"reason": "wrong current password"}),
        );
        return Err(ApiError::invalid("the current password is wrong"));
    }
    iam::validate_password(&body.new_password).map_err(|e| ApiError::invalid(e.to_string()))?;
    let hash = hash_password(body.new_password).await?;
    state.meta.set_password(user_id, &hash).await?;
    let n = state
        .meta
        .revoke_sessions(user_id, Some(session_id), Utc::now())
        .await?;
    state.access.forget_user(user_id);
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.password_change",
        ("user", user_id),
        AuditResult::Success,
        json!({"other_sessions_revoked": n}),
    );
    Ok(Json(json!({ "other_sessions_revoked": n })))
}

async fn send_mail(
    state: &AppState,
    to: &str,
    subject: &str,
    intro: &str,
    link: &str,
) -> Result<(), ApiError> {
    let Some(mailer) = &state.auth.mailer else {
        return Err(ApiError::invalid(
            "this server has no SMTP relay configured (--smtp-url), so it cannot send email",
        ));
    };
    let text = format!("{intro}\n\n{link}\n\nIf you did not ask for this, ignore this message.\n");
    let html = format!(
        "<p>{}</p><p><a href=\"{}\">{}</a></p><p>If you did not ask for this, ignore this message.</p>",
        html_escape(intro),
        html_escape(link),
        html_escape(link)
    );
    mailer.send(to, subject, &text, &html).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot send email");
        ApiError::overloaded(
            "the mail relay did not take the message; try again",
            std::time::Duration::from_secs(30),
        )
    })
}

/// A link into the console: `<public-url>/<page>?<param>=<token>`.
fn console_link(state: &AppState, page: &str, param: &str, token: &str) -> String {
    format!(
        "{}/{page}?{param}={token}",
        state.auth.public_url.trim_end_matches('/')
    )
}

/// Stores a new single-use token of `kind` for the user (hashed, expiring) and returns the
/// console link that carries it.
async fn emailed_token(
    state: &AppState,
    user: &UserRecord,
    kind: OneTimeKind,
) -> Result<String, ApiError> {
    let (prefix, ttl, page) = match kind {
        OneTimeKind::EmailVerification => ("tfv_", state.auth.email_token_ttl, "verify-email"),
        OneTimeKind::PasswordReset => ("tfp_", state.auth.reset_token_ttl, "reset-password"),
    };
    let now = Utc::now();
    let token = iam::random_token(prefix);
    state
        .meta
        .create_one_time_token(
            kind,
            &user.user_id,
            &user.email,
            &iam::token_hash(&token),
            now + ttl,
            now,
        )
        .await?;
    Ok(console_link(state, page, "token", &token))
}

async fn send_verification_to(state: &AppState, user: &UserRecord) -> Result<(), ApiError> {
    let link = emailed_token(state, user, OneTimeKind::EmailVerification).await?;
    send_mail(
        state,
        &user.email,
        "Verify your email address for TelemetryFlow",
        "Confirm your email address by opening this link:",
        &link,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email/send", tag = "auth", security(("bearer" = [])), responses((status = 202, description = "accepted"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn send_verification(
    State(state): State<Arc<AppState>>,
    User(p): User,
) -> Result<Response, ApiError> {
    no_demo(&p)?;
    let (user_id, _) = user_parts(&p);
    let user = state
        .meta
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "user not found"))?;
    if user.email_verified {
        return Ok((StatusCode::OK, Json(json!({"email_verified": true}))).into_response());
    }
    send_verification_to(&state, &user).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"sent_to": user.email}))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenBody, responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn verify_email(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<TokenBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = Utc::now();
    let consumed = state
        .meta
        .consume_one_time_token(
            OneTimeKind::EmailVerification,
            &iam::token_hash(body.token.trim()),
            now,
        )
        .await?
        .ok_or_else(|| {
            ApiError::invalid("the verification link is invalid, expired or already used")
        })?;
    state
        .meta
        .set_email_verified(&consumed.user_id, now)
        .await?;
    let scope = state
        .meta
        .user(&consumed.user_id)
        .await?
        .map_or_else(no_scope, |u| u.scope);
    state.audit(
        &client,
        &consumed.user_id,
        &scope,
        "auth.email_verified",
        ("user", &consumed.user_id),
        AuditResult::Success,
        json!({"email": consumed.email}),
    );
    Ok(Json(
        json!({"email_verified": true, "email": consumed.email}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

/// Always 202, whether or not the email belongs to someone (no account enumeration).
#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", tag = "auth", request_body = ResetRequest, responses((status = 202, description = "accepted"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn request_reset(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<ResetRequest>,
) -> Result<Response, ApiError> {
    let email = body.email.trim();
    if let Some(user) = state.meta.user_by_email(email).await? {
        let link = emailed_token(&state, &user, OneTimeKind::PasswordReset).await?;
        let sent = send_mail(
            &state,
            &user.email,
            "Reset your TelemetryFlow password",
            "Someone asked to reset the password of this account. To choose a new one, open this link (valid for one hour):",
            &link,
        )
        .await;
        state.audit(
            &client,
            &user.user_id,
            &user.scope,
            "auth.password_reset_request",
            ("user", &user.user_id),
            if sent.is_ok() {
                AuditResult::Success
            } else {
                AuditResult::Error
            },
            json!({}),
        );
        if let Err(e) = sent {
            tracing::warn!(error = %e.message, "password reset email not sent");
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "if the address has an account, a reset link is on its way"})),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetPassword {
    token: String,
    new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = ResetPassword, responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn reset_password(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<ResetPassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    iam::validate_password(&body.new_password).map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = Utc::now();
    let consumed = state
        .meta
        .consume_one_time_token(
            OneTimeKind::PasswordReset,
            &iam::token_hash(body.token.trim()),
            now,
        )
        .await?
        .ok_or_else(|| ApiError::invalid("the reset link is invalid, expired or already used"))?;
    let hash = hash_password(body.new_password).await?;
    state.meta.set_password(&consumed.user_id, &hash).await?;
    let n = state
        .meta
        .revoke_sessions(&consumed.user_id, None, now)
        .await?;
    state.access.forget_user(&consumed.user_id);
    let scope = state
        .meta
        .user(&consumed.user_id)
        .await?
        .map_or_else(no_scope, |u| u.scope);
    state.audit(
        &client,
        &consumed.user_id,
        &scope,
        "auth.password_reset",
        ("user", &consumed.user_id),
        AuditResult::Success,
        json!({"sessions_revoked": n}),
    );
    Ok(Json(json!({"password_reset": true, "sessions_revoked": n})))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Register {
    email: String,
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    /// Open registration: the new organization's name.
    organization_name: Option<String>,
    invitation_token: Option<String>,
}

fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !email.contains(char::is_whitespace)
        })
}

fn slug(name: &str) -> String {
    let mut s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').chars().take(40).collect();
    if s.is_empty() {
        s.push_str("org");
    }
    let suffix = &uuid_suffix();
    format!("{s}-{suffix}")
}

fn uuid_suffix() -> String {
    iam::random_token("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect::<String>()
        .to_ascii_lowercase()
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Register, responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn register(
    State(state): State<Arc<AppState>>,
    client: Client,
    Body(body): Body<Register>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::invalid("email is not a valid address"));
    }
    iam::validate_password(&body.password).map_err(|e| ApiError::invalid(e.to_string()))?;
    if state.auth.registration == Registration::Closed {
        return Err(ApiError::forbidden(
            "registration is closed on this server; ask an admin",
        ));
    }
    let user = if let Some(token) = body.invitation_token.as_deref() {
        let now = Utc::now();
        let inv = state
            .meta
            .consume_invitation(&iam::token_hash(token.trim()), now)
            .await?
            .ok_or_else(|| {
                ApiError::invalid("the invitation is invalid, expired or already used")
            })?;
        if !inv.email.eq_ignore_ascii_case(&email) {
            return Err(ApiError::invalid(
                "the invitation was sent to another email address",
            ));
        }
        let hash = hash_password(body.password).await?;
        let user = state
            .meta
            .create_user(NewUser {
                email: email.clone(),
                password_hash: hash,
                first_name: body.first_name,
                last_name: body.last_name,
                tenant_id: inv.tenant_id.clone(),
                role: inv.role,
            })
            .await?;
        // The invitation reached this address, which proves it.
        state.meta.set_email_verified(&user.user_id, now).await?;
        state.meta.user(&user.user_id).await?.unwrap_or(user)
    } else if state.auth.registration == Registration::Open {
        let org = body
            .organization_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(
                || email.split('@').next().unwrap_or("org").to_string(),
                str::to_string,
            );
        if org.len() > 200 {
            return Err(ApiError::invalid(
                "organization_name must be at most 200 characters",
            ));
        }
        let hash = hash_password(body.password).await?;
        let user = state
            .meta
            .create_organization(NewOrganization {
                code: slug(&org),
                name: org,
                admin_email: email.clone(),
                admin_password_hash: hash,
                admin_first_name: body.first_name,
                admin_last_name: body.last_name,
            })
            .await?;
        if state.auth.mailer.is_some()
            && let Err(e) = send_verification_to(&state, &user).await
        {
            tracing::warn!(error = %e.message, "verification email not sent");
        }
        user
    } else {
        return Err(ApiError::forbidden(
            "registration needs an invitation on this server",
        ));
    };
    state.audit(
        &client,
        &user.user_id,
        &user.scope,
        "auth.register",
        ("user", &user.user_id),
        AuditResult::Success,
        json!({"email": user.email, "invited": body.invitation_token.is_some()}),
    );
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/enroll", tag = "mfa", request_body = Password, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn mfa_enroll(
    State(state): State<Arc<AppState>>,
    User(p): User,
    Body(body): Body<Password>,
) -> Result<Json<serde_json::Value>, ApiError> {
    no_demo(&p)?;
    let (user_id, _) = user_parts(&p);
    let user = state
        .meta
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "user not found"))?;
    if !password_matches(body.password, user.password_hash.clone()).await? {
        return Err(ApiError::forbidden("the password is wrong"));
    }
    if user.mfa_enabled {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "MFA is already enabled; disable it first",
        ));
    }
    let secret = iam::new_totp_secret();
    let sealed = state
        .auth
        .secrets
        .seal(secret.as_bytes(), &format!("mfa:{user_id}"));
    state
        .meta
        .put_mfa_secret(user_id, &sealed, Utc::now())
        .await?;
    let uri =
        iam::otpauth_uri(&secret, "TelemetryFlow", &user.email).map_err(ApiError::internal)?;
    Ok(Json(json!({ "secret": secret, "otpauth_uri": uri })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/activate", tag = "mfa", request_body = Code, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn mfa_activate(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<Code>,
) -> Result<Json<serde_json::Value>, ApiError> {
    no_demo(&p)?;
    let (user_id, _) = user_parts(&p);
    let mfa = state
        .meta
        .mfa(user_id)
        .await?
        .ok_or_else(|| ApiError::invalid("enroll first (POST /api/v1/auth/mfa/enroll)"))?;
    if mfa.is_enabled {
        return Err(ApiError::new(ErrorKind::Conflict, "MFA is already enabled"));
    }
    if !second_factor(&state, user_id, Some(&body.code), None).await? {
        return Err(ApiError::invalid(
            "the code is wrong or expired; check the device clock",
        ));
    }
    let codes = iam::backup_codes();
    let hashes: Vec<String> = codes.iter().map(|c| iam::backup_code_hash(c)).collect();
    state.meta.enable_mfa(user_id, &hashes, Utc::now()).await?;
    state.access.forget_user(user_id);
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.mfa_enable",
        ("user", user_id),
        AuditResult::Success,
        json!({}),
    );
    Ok(Json(
        json!({ "mfa_enabled": true, "backup_codes": codes, "note": "each backup code works once; store them now" }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaDisable {
    password: String,
    code: Option<String>,
    backup_code: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/disable", tag = "mfa", request_body = MfaDisable, security(("bearer" = [])), responses((status = 200, description = "ok"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn mfa_disable(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<MfaDisable>,
) -> Result<Json<serde_json::Value>, ApiError> {
    no_demo(&p)?;
    let (user_id, _) = user_parts(&p);
    let user = state
        .meta
        .user(user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, "user not found"))?;
    if !password_matches(body.password, user.password_hash.clone()).await? {
        return Err(ApiError::forbidden("the password is wrong"));
    }
    if user.mfa_enabled
        && !second_factor(
            &state,
            user_id,
            body.code.as_deref(),
            body.backup_code.as_deref(),
        )
        .await?
    {
        return Err(ApiError::forbidden(
            "a current MFA code or an unused backup code is needed",
        ));
    }
    state.meta.disable_mfa(user_id).await?;
    state.audit(
        &client,
        user_id,
        p.scope(),
        "auth.mfa_disable",
        ("user", user_id),
        AuditResult::Success,
        json!({}),
    );
    Ok(Json(json!({ "mfa_enabled": false })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Invite {
    email: String,
    role: String,
    tenant_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations", request_body = Invite, security(("bearer" = [])), responses((status = 201, description = "created"), (status = "4XX", description = "an error with its reason: {\"error\": …}")))]
async fn invite(
    State(state): State<Arc<AppState>>,
    client: Client,
    User(p): User,
    Body(body): Body<Invite>,
) -> Result<Response, ApiError> {
    require(&p, "user:admin")?;
    let email = body.email.trim().to_string();
    if !valid_email(&email) {
        return Err(ApiError::invalid("email is not a valid address"));
    }
    let role = RoleType::parse(&body.role).ok_or_else(|| {
        ApiError::invalid("role must be one of admin, developer, viewer, demo, service")
    })?;
    let tenant = crate::iam_routes::visible_tenant(
        &state,
        &p,
        body.tenant_id.as_deref().unwrap_or(&p.scope().tenant_id),
        false,
    )
    .await?;
    let now = Utc::now();
    let token = iam::random_token("tfi_");
    let inv = state
        .meta
        .create_invitation(
            NewInvitation {
                tenant_id: tenant.tenant_id.clone(),
                email: email.clone(),
                role,
                token_hash: iam::token_hash(&token),
                invited_by: p.actor().to_string(),
                expires_at: now + state.auth.invitation_ttl,
            },
            now,
        )
        .await?;
    let link = console_link(&state, "register", "invitation", &token);
    let emailed = if state.auth.mailer.is_some() {
        send_mail(
            &state,
            &email,
            "You are invited to TelemetryFlow",
            "You have been invited to TelemetryFlow. Create your account by opening this link:",
            &link,
        )
        .await
        .is_ok()
    } else {
        false
    };
    state.audit(
        &client,
        p.actor(),
        p.scope(),
        "iam.invitation_create",
        ("invitation", &inv.invitation_id),
        AuditResult::Success,
        json!({"email": email, "role": role.as_str(), "tenant_id": tenant.tenant_id}),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "invitation_id": inv.invitation_id,
            "email": inv.email,
            "role": inv.role.as_str(),
            "tenant_id": inv.tenant_id,
            "expires_at": inv.expires_at,
            "emailed": emailed,
            "invitation_token": token,
            "invitation_url": link,
        })),
    )
        .into_response())
}
