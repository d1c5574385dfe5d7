-- The delivery outbox: each notification a group made due, once per channel, written in the
-- same transaction as the group's dispatch state and removed when the delivery ends
-- (delivered, refused for good, or given up). A delivery the server stopped in the middle of
-- (shutdown, crash) is still here at the next start and resumes with its attempt count, so
-- delivery stays at least once across restarts.
-- Append-only: later changes go in new numbered files.

CREATE TABLE notification_outbox (
    outbox_id             TEXT PRIMARY KEY,
    channel_id            TEXT NOT NULL,
    notification_group_id TEXT NOT NULL,
    workspace_id          TEXT NOT NULL,
    tenant_id             TEXT NOT NULL,
    -- the notification as the dispatcher made it (JSON)
    notification          TEXT NOT NULL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    created_at            TIMESTAMPTZ NOT NULL,
    next_attempt_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX notification_outbox_due ON notification_outbox(next_attempt_at);
