-- Notification delivery: every attempt of every notification per channel, and each
-- notification group's dispatch state (groups, timers, what was last sent) so a restart
-- neither forgets a pending notification nor sends one twice.
-- Append-only: later changes go in new numbered files.

CREATE TABLE notification_attempts (
    attempt_id            TEXT PRIMARY KEY,
    channel_id            TEXT NOT NULL,
    notification_group_id TEXT NOT NULL,
    workspace_id          TEXT NOT NULL,
    tenant_id             TEXT NOT NULL,
    group_key             TEXT NOT NULL,
    idempotency_key       TEXT NOT NULL,
    attempt               INTEGER NOT NULL,
    -- delivered, permanent, transient, rate_limited, gave_up
    outcome               TEXT NOT NULL,
    message               TEXT NOT NULL DEFAULT '',
    alerts                INTEGER NOT NULL DEFAULT 0,
    status                TEXT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_attempts_channel ON notification_attempts(channel_id, created_at);
CREATE INDEX notification_attempts_tenant ON notification_attempts(tenant_id, created_at);

CREATE TABLE notification_group_state (
    group_id   TEXT PRIMARY KEY,
    dispatcher TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
