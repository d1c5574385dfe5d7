-- The telemetry tables of the schema document's "ClickHouse Schema (Telemetry)" part.
--
-- A template, rendered by the storage-clickhouse crate before it runs:
--   {{table NAME}}    the table readers and writers use (db.NAME);
--   {{local NAME}}    the table that stores the rows: db.NAME on one server, db.NAME_local in
--                     cluster mode, where {{table NAME}} is a Distributed table over it;
--   {{on_cluster}}    nothing, or ON CLUSTER 'name';
--   {{engine E}}      E(), or ReplicatedE('/clickhouse/tables/{shard}/{database}/{table}', '{replica}');
--   {{ttl NAME COL}}  the TTL expression from the configured retention of NAME;
--   {{distributed NAME SHARDING_KEY}}  alone as a statement: the Distributed table in cluster mode.
-- Statements end with a semicolon at the end of a line. Files are append-only once landed.
--
-- Every ORDER BY starts with the tenant columns, so one tenant's reads touch few granules.
-- Partitions are days; TTL drops whole parts (ttl_only_drop_parts). A token-deduplication window
-- on non-replicated tables makes a retried insert with the same insert_deduplication_token a no-op
-- (replicated tables deduplicate by default).

CREATE TABLE IF NOT EXISTS {{local traces_v3}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    trace_id String,
    span_id String,
    parent_span_id String,
    trace_state String,
    span_name LowCardinality(String),
    span_kind Enum8('unspecified' = 0, 'internal' = 1, 'server' = 2, 'client' = 3, 'producer' = 4, 'consumer' = 5),
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    span_attributes Map(LowCardinality(String), String),
    duration_nano UInt64,
    end_timestamp DateTime64(9, 'UTC'),
    status_code Enum8('unset' = 0, 'ok' = 1, 'error' = 2),
    status_message String,
    dropped_attributes_count UInt32,
    dropped_events_count UInt32,
    dropped_links_count UInt32,
    events Array(Tuple(
        timestamp DateTime64(9, 'UTC'),
        name String,
        attributes Map(LowCardinality(String), String),
        dropped_attributes_count UInt32)),
    links Array(Tuple(
        trace_id String,
        span_id String,
        trace_state String,
        attributes Map(LowCardinality(String), String),
        dropped_attributes_count UInt32)),
    date Date MATERIALIZED toDate(timestamp),
    hour DateTime('UTC') MATERIALIZED toStartOfHour(timestamp),
    duration_ms Float64 MATERIALIZED duration_nano / 1e6,
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_workspace workspace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_organization organization_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_service service_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_span_id span_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_parent_span_id parent_span_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_duration duration_nano TYPE minmax GRANULARITY 1,
    INDEX idx_span_kind span_kind TYPE set(8) GRANULARITY 1,
    INDEX idx_status_code status_code TYPE set(4) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, service_name, span_name, timestamp)
TTL {{ttl traces_v3 timestamp}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed traces_v3 cityHash64(trace_id)}};

CREATE TABLE IF NOT EXISTS {{local logs_v3}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    observed_timestamp DateTime64(9, 'UTC'),
    trace_id String,
    span_id String,
    trace_flags UInt32,
    severity_text LowCardinality(String),
    severity_number UInt8,
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    body String,
    resource_attributes Map(LowCardinality(String), String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    log_attributes Map(LowCardinality(String), String),
    dropped_attributes_count UInt32,
    date Date MATERIALIZED toDate(timestamp),
    hour DateTime('UTC') MATERIALIZED toStartOfHour(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_workspace workspace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_organization organization_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_service service_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_body body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 1,
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_severity_number severity_number TYPE minmax GRANULARITY 1,
    INDEX idx_severity_text severity_text TYPE set(32) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, service_name, timestamp)
TTL {{ttl logs_v3 timestamp}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed logs_v3 rand()}};

CREATE TABLE IF NOT EXISTS {{local metrics_v3}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    start_timestamp Nullable(DateTime64(9, 'UTC')),
    metric_name LowCardinality(String),
    description String,
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    attributes Map(LowCardinality(String), String),
    value Float64,
    unit LowCardinality(String),
    metric_type Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3, 'exponential_histogram' = 4, 'summary' = 5),
    temporality Enum8('unspecified' = 0, 'delta' = 1, 'cumulative' = 2),
    is_monotonic UInt8,
    flags UInt32,
    exemplar_trace_id String,
    exemplar_span_id String,
    exemplar_timestamp Nullable(DateTime64(9, 'UTC')),
    exemplar_value Nullable(Float64),
    exemplar_attributes Map(LowCardinality(String), String),
    date Date MATERIALIZED toDate(timestamp),
    hour DateTime('UTC') MATERIALIZED toStartOfHour(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_workspace workspace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_organization organization_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_service service_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_metric_name metric_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_value value TYPE minmax GRANULARITY 1,
    INDEX idx_metric_type metric_type TYPE set(8) GRANULARITY 1,
    INDEX idx_temporality temporality TYPE set(4) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, metric_name, service_name, timestamp)
TTL {{ttl metrics_v3 timestamp}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed metrics_v3 rand()}};

CREATE TABLE IF NOT EXISTS {{local metric_histograms}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    start_timestamp Nullable(DateTime64(9, 'UTC')),
    metric_name LowCardinality(String),
    description String,
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    resource_attributes Map(LowCardinality(String), String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    attributes Map(LowCardinality(String), String),
    unit LowCardinality(String),
    metric_type Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3, 'exponential_histogram' = 4, 'summary' = 5),
    temporality Enum8('unspecified' = 0, 'delta' = 1, 'cumulative' = 2),
    flags UInt32,
    bucket_bounds Array(Float64),
    bucket_counts Array(UInt64),
    sum Nullable(Float64),
    count UInt64,
    min Nullable(Float64),
    max Nullable(Float64),
    scale Int32,
    zero_count UInt64,
    zero_threshold Float64,
    positive_offset Int32,
    positive_bucket_counts Array(UInt64),
    negative_offset Int32,
    negative_bucket_counts Array(UInt64),
    quantiles Array(Float64),
    quantile_values Array(Float64),
    exemplar_timestamps Array(DateTime64(9, 'UTC')),
    exemplar_values Array(Float64),
    exemplar_trace_ids Array(String),
    exemplar_span_ids Array(String),
    exemplar_attributes Array(Map(LowCardinality(String), String)),
    date Date MATERIALIZED toDate(timestamp),
    hour DateTime('UTC') MATERIALIZED toStartOfHour(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_workspace workspace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_organization organization_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_service service_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_metric_name metric_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_metric_type metric_type TYPE set(8) GRANULARITY 1,
    INDEX idx_temporality temporality TYPE set(4) GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, metric_name, service_name, timestamp)
TTL {{ttl metric_histograms timestamp}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed metric_histograms rand()}};

CREATE TABLE IF NOT EXISTS {{local exemplars_v3}} {{on_cluster}}
(
    timestamp DateTime64(9, 'UTC'),
    metric_name LowCardinality(String),
    trace_id String,
    span_id String,
    value Float64,
    attributes Map(LowCardinality(String), String),
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    date Date MATERIALIZED toDate(timestamp),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_workspace workspace_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_metric_name metric_name TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_value value TYPE minmax GRANULARITY 1
)
ENGINE = {{engine MergeTree}}
PARTITION BY toDate(timestamp)
ORDER BY (workspace_id, tenant_id, metric_name, timestamp)
TTL {{ttl exemplars_v3 timestamp}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed exemplars_v3 rand()}};

-- The two views of the schema document, for users who query ClickHouse directly (the query
-- endpoint defines the same views itself, per tenant).
CREATE VIEW IF NOT EXISTS {{table spans_v3}} {{on_cluster}} AS
SELECT timestamp, trace_id, span_id, parent_span_id, span_name, span_kind, service_name,
       workspace_id, tenant_id, duration_nano, span_attributes
FROM {{table traces_v3}};

CREATE VIEW IF NOT EXISTS {{table logs_v3_by_trace}} {{on_cluster}} AS
SELECT trace_id, timestamp, span_id, severity_text, body, workspace_id, tenant_id
FROM {{table logs_v3}};
