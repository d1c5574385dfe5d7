-- The schema document's system tables: alert history, the audit log and uptime checks.
-- `metadata` holds a JSON object as text.

CREATE TABLE IF NOT EXISTS {{local alert_history}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    alert_rule_id String,
    alert_rule_name String,
    severity LowCardinality(String),
    status LowCardinality(String),
    message String,
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    metadata String,
    date Date MATERIALIZED toDate(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_rule alert_rule_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_status status TYPE set(8) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, alert_rule_id, timestamp)
TTL {{ttl alert_history timestamp}}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed alert_history rand()}};

CREATE TABLE IF NOT EXISTS {{local audit_logs}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    user_id String,
    action LowCardinality(String),
    resource_type LowCardinality(String),
    resource_id String,
    ip_address String,
    user_agent String,
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    result Enum8('success' = 1, 'failure' = 2, 'error' = 3),
    metadata String,
    date Date MATERIALIZED toDate(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_action action TYPE set(64) GRANULARITY 1,
    INDEX idx_result result TYPE set(4) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, timestamp)
TTL {{ttl audit_logs timestamp}}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed audit_logs rand()}};

CREATE TABLE IF NOT EXISTS {{local uptime_checks}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    monitor_id String,
    monitor_name String,
    status Enum8('up' = 1, 'down' = 2, 'degraded' = 3),
    response_time_ms Int32,
    status_code String,
    error_message String,
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    date Date MATERIALIZED toDate(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_monitor monitor_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_status status TYPE set(4) GRANULARITY 1,
    INDEX idx_response_time response_time_ms TYPE minmax GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, monitor_id, timestamp)
TTL {{ttl uptime_checks timestamp}}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed uptime_checks rand()}};
