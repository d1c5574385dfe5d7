-- Alerting (the schema document's 600-alerts module): rules, notification groups, their links,
-- channels (config sealed), silences, and each rule's evaluation state.
-- Append-only: later changes go in new numbered files.

CREATE TABLE alert_rules (
    alert_rule_id     TEXT PRIMARY KEY,
    workspace_id      TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id         TEXT NOT NULL REFERENCES tenants(tenant_id),
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    query_type        TEXT NOT NULL CHECK (query_type IN ('metric', 'log', 'trace')),
    -- {"queries": [{"name", "sql", "range"}]}
    query_config      TEXT NOT NULL DEFAULT '{}',
    -- {"plugin", "config"} or {"composite": {"op", "rules"}}
    condition_config  TEXT NOT NULL DEFAULT '{}',
    -- labels, annotations, interval, schedule, query offset, for, keep_firing_for, recovery,
    -- no-data and error policies
    settings          TEXT NOT NULL DEFAULT '{}',
    severity          TEXT NOT NULL CHECK (severity IN ('critical', 'error', 'warning', 'info')),
    cooldown_minutes  INTEGER NOT NULL DEFAULT 0,
    is_enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    last_evaluated_at TIMESTAMPTZ,
    created_by        TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    deleted_at        TIMESTAMPTZ
);
CREATE INDEX alert_rules_workspace_enabled ON alert_rules(workspace_id, is_enabled);
CREATE INDEX alert_rules_tenant ON alert_rules(tenant_id, name);

CREATE TABLE notification_groups (
    group_id     TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(tenant_id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    -- matchers, group_by, timers, send_resolved, mute windows, inhibition
    routing      TEXT NOT NULL DEFAULT '{}',
    is_active    BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_groups_tenant ON notification_groups(tenant_id, name);

CREATE TABLE alert_rule_notification_groups (
    id                    TEXT PRIMARY KEY,
    alert_rule_id         TEXT NOT NULL REFERENCES alert_rules(alert_rule_id),
    notification_group_id TEXT NOT NULL REFERENCES notification_groups(group_id),
    created_at            TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX alert_rule_groups_pair ON alert_rule_notification_groups(alert_rule_id, notification_group_id);
CREATE INDEX alert_rule_groups_group ON alert_rule_notification_groups(notification_group_id);

CREATE TABLE notification_channels (
    channel_id            TEXT PRIMARY KEY,
    notification_group_id TEXT NOT NULL REFERENCES notification_groups(group_id),
    workspace_id          TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id             TEXT NOT NULL REFERENCES tenants(tenant_id),
    name                  TEXT NOT NULL,
    channel_type          TEXT NOT NULL CHECK (channel_type IN ('email', 'slack', 'pagerduty', 'webhook', 'msteams', 'discord', 'telegram', 'sms', 'plugin')),
    -- the channel plugin: builtin-<type>, or an uploaded notification-channel plugin
    plugin_id             TEXT NOT NULL,
    -- XChaCha20-Poly1305 under the root key, bound to tenant, workspace and channel id
    config_encrypted      TEXT NOT NULL,
    -- the config's top-level keys, to show what is set without showing values
    config_keys           TEXT NOT NULL DEFAULT '[]',
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_channels_group ON notification_channels(notification_group_id);
CREATE INDEX notification_channels_tenant ON notification_channels(tenant_id);

CREATE TABLE silences (
    silence_id   TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(tenant_id),
    matchers     TEXT NOT NULL,
    starts_at    TIMESTAMPTZ NOT NULL,
    ends_at      TIMESTAMPTZ NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    created_by   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX silences_tenant_ends ON silences(tenant_id, ends_at);

-- What a rule's evaluations carry from one to the next: its instances (the state machine's
-- state, as JSON), the condition plugin's state blob, and the scheduler's counters. Written
-- after every evaluation, so a restart resumes where it stopped.
CREATE TABLE alert_rule_state (
    alert_rule_id     TEXT PRIMARY KEY REFERENCES alert_rules(alert_rule_id),
    instances         TEXT NOT NULL DEFAULT '{}',
    plugin_state      BYTEA,
    last_evaluated_at TIMESTAMPTZ,
    last_error        TEXT,
    evaluations       INTEGER NOT NULL DEFAULT 0,
    skipped_ticks     INTEGER NOT NULL DEFAULT 0,
    updated_at        TIMESTAMPTZ NOT NULL
);
