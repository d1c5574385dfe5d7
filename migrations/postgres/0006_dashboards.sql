-- Dashboards (the schema document's 900-dashboard module): dashboards, their widgets, and
-- templates (shipped ones have no workspace; a workspace's own have one).
-- Append-only: later changes go in new numbered files.

CREATE TABLE dashboards (
    dashboard_id     TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id        TEXT NOT NULL REFERENCES tenants(tenant_id),
    name             TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    -- {"columns": 24, "row_height": 30, …}
    layout_config    TEXT NOT NULL DEFAULT '{}',
    -- [{"name", "label", "type": "custom|query|textbox", "options", "default", "multi"}]
    variables        TEXT NOT NULL DEFAULT '[]',
    is_public        BOOLEAN NOT NULL DEFAULT FALSE,
    -- SHA-256 of the share token while the dashboard is public
    share_token_hash TEXT,
    view_count       INTEGER NOT NULL DEFAULT 0,
    template_id      TEXT,
    created_by       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    deleted_at       TIMESTAMPTZ
);
CREATE INDEX dashboards_tenant ON dashboards(tenant_id, name);
CREATE UNIQUE INDEX dashboards_share_token ON dashboards(share_token_hash);

CREATE TABLE widgets (
    widget_id            TEXT PRIMARY KEY,
    dashboard_id         TEXT NOT NULL REFERENCES dashboards(dashboard_id) ON DELETE CASCADE,
    title                TEXT NOT NULL,
    widget_type          TEXT NOT NULL CHECK (widget_type IN
        ('line_chart', 'bar_chart', 'gauge', 'stat', 'table', 'logs', 'heatmap', 'graph')),
    -- the query model of POST /api/v1/query, plus "transforms": [{"plugin", "config"}]
    query_config         TEXT NOT NULL DEFAULT '{}',
    visualization_config TEXT NOT NULL DEFAULT '{}',
    -- {"x", "y", "w", "h"}
    position_config      TEXT NOT NULL DEFAULT '{}',
    -- seconds; 0 = the dashboard's
    refresh_interval     INTEGER NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX widgets_dashboard ON widgets(dashboard_id);

CREATE TABLE dashboard_templates (
    template_id     TEXT PRIMARY KEY,
    -- NULL for the templates shipped with the server
    workspace_id    TEXT REFERENCES workspaces(workspace_id),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    category        TEXT NOT NULL CHECK (category IN ('apm', 'infrastructure', 'network', 'custom')),
    -- {"layout_config", "variables", "widgets": [...]}
    template_config TEXT NOT NULL DEFAULT '{}',
    is_default      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX dashboard_templates_workspace ON dashboard_templates(workspace_id, category);
