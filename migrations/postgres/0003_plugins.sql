-- The plugin registry: uploaded WebAssembly components per workspace.
-- Append-only: later changes go in new numbered files.

-- Component bytes, content-addressed (an upload of the same bytes is stored once).
CREATE TABLE plugin_blobs (
    sha256     TEXT PRIMARY KEY,
    bytes      BYTEA NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE plugins (
    plugin_id       TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces(workspace_id),
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('alert-condition', 'widget-transform', 'notification-channel')),
    description     TEXT NOT NULL DEFAULT '',
    config_schema   TEXT NOT NULL DEFAULT '{}',
    sha256          TEXT NOT NULL REFERENCES plugin_blobs(sha256),
    size_bytes      INTEGER NOT NULL,
    is_enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_by      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    deleted_at      TIMESTAMPTZ
);
-- One live plugin per workspace, name and version; a deleted one frees its name.
CREATE UNIQUE INDEX plugins_workspace_name_version ON plugins(workspace_id, name, version) WHERE deleted_at IS NULL;
CREATE INDEX plugins_workspace ON plugins(workspace_id, name);
