-- 200-auth: sessions, rotating refresh tokens, MFA, single-use email tokens, trusted devices,
-- invitations. Append-only: later changes go in new numbered files.

CREATE TABLE user_sessions (
    session_id         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    session_token      TEXT NOT NULL UNIQUE,
    ip_address         TEXT NOT NULL DEFAULT '',
    user_agent         TEXT NOT NULL DEFAULT '',
    device_fingerprint TEXT NOT NULL DEFAULT '',
    is_active          INTEGER NOT NULL DEFAULT 1,
    expires_at         TEXT NOT NULL,
    last_seen_at       TEXT NOT NULL,
    revoked_at         TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
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
    expires_at         TEXT NOT NULL,
    is_revoked         INTEGER NOT NULL DEFAULT 0,
    revoked_at         TEXT,
    used_at            TEXT,
    replaced_by        TEXT,
    created_at         TEXT NOT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

CREATE TABLE mfa_secrets (
    mfa_id                 TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL UNIQUE REFERENCES users(user_id) ON DELETE CASCADE,
    secret_encrypted       TEXT NOT NULL,
    backup_codes_encrypted TEXT NOT NULL DEFAULT '',
    is_enabled             INTEGER NOT NULL DEFAULT 0,
    enabled_at             TEXT,
    last_used_step         INTEGER,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

-- Backup codes, one row each (SHA-256 of the code) so that using one is a single atomic update.
CREATE TABLE mfa_backup_codes (
    code_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (user_id, code_hash)
);

CREATE TABLE email_verifications (
    verification_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    token           TEXT NOT NULL UNIQUE,
    email           TEXT NOT NULL,
    is_used         INTEGER NOT NULL DEFAULT 0,
    expires_at      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX email_verifications_user ON email_verifications(user_id);

CREATE TABLE password_reset_tokens (
    reset_id   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    token      TEXT NOT NULL UNIQUE,
    is_used    INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens(user_id);

CREATE TABLE trusted_devices (
    device_id          TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_fingerprint TEXT NOT NULL,
    device_name        TEXT NOT NULL DEFAULT '',
    expires_at         TEXT NOT NULL,
    last_used_at       TEXT,
    created_at         TEXT NOT NULL,
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
    expires_at    TEXT NOT NULL,
    accepted_at   TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX invitations_tenant ON invitations(tenant_id);
