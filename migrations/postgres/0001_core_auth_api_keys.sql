-- 100-core, the slice of 200-auth the foundation needs, and 300-api-keys: the same tables as
-- migrations/sqlite/0001, in PostgreSQL types (timestamptz, boolean, bigint).
-- Append-only: later changes go in new numbered files.

CREATE TABLE regions (
    region_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    code        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE organizations (
    organization_id TEXT PRIMARY KEY,
    region_id       TEXT NOT NULL REFERENCES regions(region_id),
    name            TEXT NOT NULL,
    code            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    settings        TEXT NOT NULL DEFAULT '{}',
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    deleted_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX organizations_region ON organizations(region_id);

CREATE TABLE workspaces (
    workspace_id      TEXT PRIMARY KEY,
    organization_id   TEXT NOT NULL REFERENCES organizations(organization_id),
    name              TEXT NOT NULL,
    code              TEXT NOT NULL UNIQUE,
    description       TEXT NOT NULL DEFAULT '',
    datasource_config TEXT NOT NULL DEFAULT '{}',
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    deleted_at        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX workspaces_organization ON workspaces(organization_id);

CREATE TABLE tenants (
    tenant_id    TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
    name         TEXT NOT NULL,
    code         TEXT NOT NULL UNIQUE,
    domain       TEXT NOT NULL DEFAULT '',
    settings     TEXT NOT NULL DEFAULT '{}',
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    deleted_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX tenants_workspace ON tenants(workspace_id);

CREATE TABLE users (
    user_id           TEXT PRIMARY KEY,
    organization_id   TEXT NOT NULL REFERENCES organizations(organization_id),
    tenant_id         TEXT NOT NULL REFERENCES tenants(tenant_id),
    email             TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    first_name        TEXT NOT NULL DEFAULT '',
    last_name         TEXT NOT NULL DEFAULT '',
    avatar_url        TEXT NOT NULL DEFAULT '',
    timezone          TEXT NOT NULL DEFAULT 'UTC',
    language          TEXT NOT NULL DEFAULT 'en',
    email_verified    BOOLEAN NOT NULL DEFAULT FALSE,
    email_verified_at TIMESTAMPTZ,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    is_locked         BOOLEAN NOT NULL DEFAULT FALSE,
    failed_attempts   INTEGER NOT NULL DEFAULT 0,
    locked_until      TIMESTAMPTZ,
    last_login_at     TIMESTAMPTZ,
    deleted_at        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_organization_active ON users(organization_id, is_active);
CREATE INDEX users_tenant_active ON users(tenant_id) WHERE deleted_at IS NULL;

CREATE TABLE roles (
    role_id     TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(tenant_id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    role_type   TEXT NOT NULL CHECK (role_type IN ('admin', 'developer', 'viewer', 'demo', 'service')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE permissions (
    permission_id TEXT PRIMARY KEY,
    resource      TEXT NOT NULL CHECK (resource IN ('user', 'metric', 'log', 'trace', 'dashboard', 'alert')),
    action        TEXT NOT NULL CHECK (action IN ('read', 'write', 'delete', 'admin')),
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE role_permissions (
    role_permission_id TEXT PRIMARY KEY,
    role_id            TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE,
    permission_id      TEXT NOT NULL REFERENCES permissions(permission_id),
    granted_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (role_id, permission_id)
);

CREATE TABLE user_roles (
    user_role_id TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    role_id      TEXT NOT NULL REFERENCES roles(role_id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(tenant_id),
    assigned_at  TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    UNIQUE (user_id, role_id)
);
CREATE INDEX user_roles_user ON user_roles(user_id);

-- The permission catalogue: every resource × action.
INSERT INTO permissions (permission_id, resource, action, name, description, created_at)
SELECT r.resource || ':' || a.action, r.resource, a.action, r.resource || ':' || a.action,
       a.action || ' ' || r.resource, now()
FROM (SELECT 'user' AS resource UNION ALL SELECT 'metric' UNION ALL SELECT 'log'
      UNION ALL SELECT 'trace' UNION ALL SELECT 'dashboard' UNION ALL SELECT 'alert') AS r
CROSS JOIN (SELECT 'read' AS action UNION ALL SELECT 'write' UNION ALL SELECT 'delete'
      UNION ALL SELECT 'admin') AS a;

CREATE TABLE api_keys (
    api_key_id              TEXT PRIMARY KEY,
    workspace_id            TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id               TEXT NOT NULL REFERENCES tenants(tenant_id),
    key_id                  TEXT NOT NULL UNIQUE,
    secret_hash             TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    status                  TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'rotated', 'revoked', 'expired')),
    expires_at              TIMESTAMPTZ,
    last_used_at            TIMESTAMPTZ,
    last_used_ip            TEXT,
    usage_count             BIGINT NOT NULL DEFAULT 0,
    rate_limit              BIGINT,
    grace_period_expires_at TIMESTAMPTZ,
    revoked_reason          TEXT,
    revoked_by              TEXT,
    revoked_at              TIMESTAMPTZ,
    created_by              TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_keys_workspace_tenant ON api_keys(workspace_id, tenant_id, created_at);

CREATE TABLE api_key_permissions (
    permission_id TEXT PRIMARY KEY,
    api_key_id    TEXT NOT NULL REFERENCES api_keys(api_key_id) ON DELETE CASCADE,
    permission    TEXT NOT NULL CHECK (permission IN ('traces:write', 'metrics:write', 'logs:write', 'monitors:report')),
    granted_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (api_key_id, permission)
);

CREATE TABLE api_key_usage_log (
    usage_id    TEXT PRIMARY KEY,
    api_key_id  TEXT NOT NULL REFERENCES api_keys(api_key_id) ON DELETE CASCADE,
    endpoint    TEXT NOT NULL,
    method      TEXT NOT NULL,
    ip_address  TEXT NOT NULL DEFAULT '',
    status_code INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_key_usage_log_key_time ON api_key_usage_log(api_key_id, created_at);
