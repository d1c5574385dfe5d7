-- Hourly and daily rollups of metrics_v3, maintained by materialized views on insert.
--
-- AggregatingMergeTree with SimpleAggregateFunction columns: merges keep sum/min/max/count exact,
-- so avg = sum_value / count stays correct however parts merge. Rows of one key may sit in several
-- parts until merged, so readers always GROUP BY the key (the store's rollup reader does).
-- The views read the local table: in cluster mode each shard rolls up its own rows.

CREATE TABLE IF NOT EXISTS {{local metrics_v3_hourly}} {{on_cluster}}
(
    hour DateTime('UTC'),
    metric_name LowCardinality(String),
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    metric_type Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3, 'exponential_histogram' = 4, 'summary' = 5),
    temporality Enum8('unspecified' = 0, 'delta' = 1, 'cumulative' = 2),
    unit LowCardinality(String),
    sum_value SimpleAggregateFunction(sum, Float64),
    min_value SimpleAggregateFunction(min, Float64),
    max_value SimpleAggregateFunction(max, Float64),
    count SimpleAggregateFunction(sum, UInt64),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_metric_name metric_name TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine AggregatingMergeTree}}
PARTITION BY toYYYYMM(hour)
ORDER BY (workspace_id, tenant_id, metric_name, service_name, metric_type, temporality, unit, organization_id, hour)
TTL {{ttl metrics_v3_hourly hour}}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed metrics_v3_hourly rand()}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local metrics_v3_hourly_mv}} {{on_cluster}}
TO {{local metrics_v3_hourly}} AS
SELECT
    toStartOfHour(timestamp) AS hour,
    metric_name, service_name, organization_id, workspace_id, tenant_id,
    metric_type, temporality, unit,
    sum(value) AS sum_value,
    min(value) AS min_value,
    max(value) AS max_value,
    toUInt64(count()) AS count
FROM {{local metrics_v3}}
GROUP BY hour, metric_name, service_name, organization_id, workspace_id, tenant_id,
         metric_type, temporality, unit;

CREATE TABLE IF NOT EXISTS {{local metrics_v3_daily}} {{on_cluster}}
(
    date Date,
    metric_name LowCardinality(String),
    service_name LowCardinality(String),
    organization_id LowCardinality(String),
    workspace_id LowCardinality(String),
    tenant_id LowCardinality(String),
    metric_type Enum8('gauge' = 1, 'counter' = 2, 'histogram' = 3, 'exponential_histogram' = 4, 'summary' = 5),
    temporality Enum8('unspecified' = 0, 'delta' = 1, 'cumulative' = 2),
    unit LowCardinality(String),
    sum_value SimpleAggregateFunction(sum, Float64),
    min_value SimpleAggregateFunction(min, Float64),
    max_value SimpleAggregateFunction(max, Float64),
    count SimpleAggregateFunction(sum, UInt64),
    INDEX idx_tenant tenant_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_metric_name metric_name TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{engine AggregatingMergeTree}}
PARTITION BY toYYYYMM(date)
ORDER BY (workspace_id, tenant_id, metric_name, service_name, metric_type, temporality, unit, organization_id, date)
TTL {{ttl metrics_v3_daily date}}
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

{{distributed metrics_v3_daily rand()}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{local metrics_v3_daily_mv}} {{on_cluster}}
TO {{local metrics_v3_daily}} AS
SELECT
    toDate(timestamp) AS date,
    metric_name, service_name, organization_id, workspace_id, tenant_id,
    metric_type, temporality, unit,
    sum(value) AS sum_value,
    min(value) AS min_value,
    max(value) AS max_value,
    toUInt64(count()) AS count
FROM {{local metrics_v3}}
GROUP BY date, metric_name, service_name, organization_id, workspace_id, tenant_id,
         metric_type, temporality, unit;
