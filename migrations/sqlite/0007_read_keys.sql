-- API keys may also carry read permissions (traces:read, metrics:read, logs:read), for tools
-- that read telemetry with a key (Grafana). SQLite cannot change a CHECK constraint in place:
-- the table is rebuilt with its rows.
-- Append-only: later changes go in new numbered files.

CREATE TABLE api_key_permissions_v2 (
    permission_id TEXT PRIMARY KEY,
    api_key_id    TEXT NOT NULL REFERENCES api_keys(api_key_id) ON DELETE CASCADE,
    permission    TEXT NOT NULL CHECK (permission IN ('traces:write', 'metrics:write', 'logs:write',
        'monitors:report', 'traces:read', 'metrics:read', 'logs:read')),
    granted_at    TEXT NOT NULL,
    UNIQUE (api_key_id, permission)
);
INSERT INTO api_key_permissions_v2 (permission_id, api_key_id, permission, granted_at)
    SELECT permission_id, api_key_id, permission, granted_at FROM api_key_permissions;
DROP TABLE api_key_permissions;
ALTER TABLE api_key_permissions_v2 RENAME TO api_key_permissions;
