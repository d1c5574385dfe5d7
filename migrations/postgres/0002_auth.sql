-- 200-auth: sessions, rotating refresh tokens, MFA, single-use email tokens, trusted devices,
-- invitations. Append-only: later changes go in new numbered files.

CREATE TABLE user_sessions (
    session_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    session_token      TEXT NOT NULL UNIQUE,
    ip_address         TEXT NOT NULL DEFAULT '',
    user_agent         TEXT NOT NULL DEFAULT '',
    device_fingerprint TEXT NOT NULL DEFAULT '',
    is_active          BOOLEAN NOT NULL DEFAULT TRUE,
    expires_at         TIMESTAMPTZ NOT NULL,
    last_seen_at       TIMESTAMPTZ NOT NULL,
    revoked_at         TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX user_sessions_user_active ON user_sessions(user_id, is_active);

-- One family per session: every refresh replaces the current token with a new one
-- (replaced_by); presenting a replaced or revoked token revokes the family.
CREATE TABLE refresh_tokens (
    token_id           TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    session_id         TEXT NOT NULL REFERENCES user_sessions(session_id) ON DELETE CASCADE,
    token_hash         TEXT NOT NULL UNIQUE,
    device_fingerprint TEXT NOT NULL DEFAULT '',
    expires_at         TIMESTAMPTZ NOT NULL,
    is_revoked         BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at         TIMESTAMPTZ,
    used_at            TIMESTAMPTZ,
    replaced_by        TEXT,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

CREATE TABLE mfa_secrets (
    mfa_id                 TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL UNIQUE REFERENCES users(user_id) ON DELETE CASCADE,
    secret_encrypted       TEXT NOT NULL,
    backup_codes_encrypted TEXT NOT NULL DEFAULT '',
    is_enabled             BOOLEAN NOT NULL DEFAULT FALSE,
    enabled_at             TIMESTAMPTZ,
    last_used_step         BIGINT,
    created_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);

-- Backup codes, one row each (SHA-256 of the code) so that using one is a single atomic update.
CREATE TABLE mfa_backup_codes (
    code_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, code_hash)
);

CREATE TABLE email_verifications (
    verification_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    token           TEXT NOT NULL UNIQUE,
    email           TEXT NOT NULL,
    is_used         BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX email_verifications_user ON email_verifications(user_id);

CREATE TABLE password_reset_tokens (
    reset_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    token      TEXT NOT NULL UNIQUE,
    is_used    BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens(user_id);

CREATE TABLE trusted_devices (
    device_id          TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_fingerprint TEXT NOT NULL,
    device_name        TEXT NOT NULL DEFAULT '',
    expires_at         TIMESTAMPTZ NOT NULL,
    last_used_at       TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (user_id, device_fingerprint)
);

-- Admin-invited registration: the invitee registers into the tenant with the role.
CREATE TABLE invitations (
    invitation_id TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(tenant_id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    role_type     TEXT NOT NULL CHECK (role_type IN ('admin', 'developer', 'viewer', 'demo', 'service')),
    token_hash    TEXT NOT NULL UNIQUE,
    invited_by    TEXT NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    accepted_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX invitations_tenant ON invitations(tenant_id);
