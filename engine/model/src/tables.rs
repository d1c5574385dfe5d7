//! The telemetry tables and their Arrow schemas.
//!
//! Column names and meanings follow the schema document's ClickHouse tables (`metrics_v3`,
//! `metric_histograms`, `exemplars_v3`, `logs_v3`, `traces_v3`), so every backend stores the same
//! shape. Where the document is silent we add columns rather than lose OTLP data:
//! `start_timestamp`, `description` and `flags` on metric points, the native exponential-histogram
//! and summary fields on `metric_histograms`, `dropped_attributes_count` on logs and events.
//! Enum columns hold their lowercase names as strings (`span_kind = 'server'`).
//! `spans_v3` and `logs_v3_by_trace` are views over `traces_v3` and `logs_v3`.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// A stored telemetry table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Traces,
    Logs,
    Metrics,
    Histograms,
    Exemplars,
    /// Who did what to IAM, and every sign-in (written by the host, read by admins only).
    AuditLogs,
    /// Every state change of every alert instance, with its reason (written by alert
    /// evaluation, read through the alerting API).
    AlertHistory,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Traces,
        Table::Logs,
        Table::Metrics,
        Table::Histograms,
        Table::Exemplars,
        Table::AuditLogs,
        Table::AlertHistory,
    ];

    /// The tables of telemetry signals, which users query.
    pub const TELEMETRY: [Table; 5] = [
        Table::Traces,
        Table::Logs,
        Table::Metrics,
        Table::Histograms,
        Table::Exemplars,
    ];

    /// The table's name in SQL and on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Traces => "traces_v3",
            Table::Logs => "logs_v3",
            Table::Metrics => "metrics_v3",
            Table::Histograms => "metric_histograms",
            Table::Exemplars => "exemplars_v3",
            Table::AuditLogs => "audit_logs",
            Table::AlertHistory => "alert_history",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A stable one-byte tag, used in write-ahead-log records.
    pub fn tag(self) -> u8 {
        match self {
            Table::Traces => 1,
            Table::Logs => 2,
            Table::Metrics => 3,
            Table::Histograms => 4,
            Table::Exemplars => 5,
            Table::AuditLogs => 6,
            Table::AlertHistory => 7,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.tag() == tag)
    }

    /// Default retention in days (the schema document's 30–90 day TTLs).
    pub fn default_retention_days(self) -> u32 {
        match self {
            Table::Traces | Table::Logs | Table::Exemplars => 30,
            Table::Metrics | Table::Histograms => 90,
            Table::AuditLogs => 400,
            Table::AlertHistory => 365,
        }
    }
}

/// The Arrow type of every `Map(String, String)` column.
///
/// It is exactly what `arrow::array::MapBuilder` produces by default, so batches built with it
/// match the declared schemas.
pub fn attributes_map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn s(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn m(name: &str) -> Field {
    Field::new(name, attributes_map_type(), false)
}

fn tenant_fields() -> [Field; 3] {
    [s("organization_id"), s("workspace_id"), s("tenant_id")]
}

/// The struct type of one span event.
pub fn event_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("timestamp", ts(), false),
        s("name"),
        m("attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]))
}

/// The struct type of one span link.
pub fn link_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        s("trace_id"),
        s("span_id"),
        s("trace_state"),
        m("attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]))
}

fn traces_schema() -> Schema {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        s("trace_id"),
        s("span_id"),
        s("parent_span_id"),
        s("trace_state"),
        s("span_name"),
        s("span_kind"),
        s("service_name"),
    ];
    f.extend(tenant_fields());
    f.extend([
        m("resource_attributes"),
        s("scope_name"),
        s("scope_version"),
        m("span_attributes"),
        Field::new("duration_nano", DataType::UInt64, false),
        Field::new("end_timestamp", ts(), false),
        s("status_code"),
        s("status_message"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("dropped_links_count", DataType::UInt32, false),
        Field::new("events", list(event_type()), false),
        Field::new("links", list(link_type()), false),
    ]);
    Schema::new(f)
}

fn logs_schema() -> Schema {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        Field::new("observed_timestamp", ts(), false),
        s("trace_id"),
        s("span_id"),
        Field::new("trace_flags", DataType::UInt32, false),
        s("severity_text"),
        Field::new("severity_number", DataType::UInt8, false),
        s("service_name"),
    ];
    f.extend(tenant_fields());
    f.extend([
        s("body"),
        m("resource_attributes"),
        s("scope_name"),
        s("scope_version"),
        m("log_attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ]);
    Schema::new(f)
}

/// The columns every metric data point has, up to and including its attributes.
fn point_fields() -> Vec<Field> {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        Field::new("start_timestamp", ts(), true),
        s("metric_name"),
        s("description"),
        s("service_name"),
    ];
    f.extend(tenant_fields());
    f.extend([
        m("resource_attributes"),
        s("scope_name"),
        s("scope_version"),
        m("attributes"),
    ]);
    f
}

fn metrics_schema() -> Schema {
    let mut f = point_fields();
    f.extend([
        Field::new("value", DataType::Float64, false),
        s("unit"),
        s("metric_type"),
        s("temporality"),
        Field::new("is_monotonic", DataType::UInt8, false),
        Field::new("flags", DataType::UInt32, false),
        s("exemplar_trace_id"),
        s("exemplar_span_id"),
        Field::new("exemplar_timestamp", ts(), true),
        Field::new("exemplar_value", DataType::Float64, true),
        m("exemplar_attributes"),
    ]);
    Schema::new(f)
}

fn histograms_schema() -> Schema {
    let mut f = point_fields();
    f.extend([
        s("unit"),
        s("metric_type"),
        s("temporality"),
        Field::new("flags", DataType::UInt32, false),
        Field::new("bucket_bounds", list(DataType::Float64), false),
        Field::new("bucket_counts", list(DataType::UInt64), false),
        Field::new("sum", DataType::Float64, true),
        Field::new("count", DataType::UInt64, false),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("scale", DataType::Int32, false),
        Field::new("zero_count", DataType::UInt64, false),
        Field::new("zero_threshold", DataType::Float64, false),
        Field::new("positive_offset", DataType::Int32, false),
        Field::new("positive_bucket_counts", list(DataType::UInt64), false),
        Field::new("negative_offset", DataType::Int32, false),
        Field::new("negative_bucket_counts", list(DataType::UInt64), false),
        Field::new("quantiles", list(DataType::Float64), false),
        Field::new("quantile_values", list(DataType::Float64), false),
        Field::new("exemplar_timestamps", list(ts()), false),
        Field::new("exemplar_values", list(DataType::Float64), false),
        Field::new("exemplar_trace_ids", list(DataType::Utf8), false),
        Field::new("exemplar_span_ids", list(DataType::Utf8), false),
        Field::new("exemplar_attributes", list(attributes_map_type()), false),
    ]);
    Schema::new(f)
}

fn exemplars_schema() -> Schema {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        s("metric_name"),
        s("trace_id"),
        s("span_id"),
        Field::new("value", DataType::Float64, false),
        m("attributes"),
        s("service_name"),
    ];
    f.extend(tenant_fields());
    Schema::new(f)
}

fn audit_logs_schema() -> Schema {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        s("user_id"),
        s("action"),
        s("resource_type"),
        s("resource_id"),
        s("ip_address"),
        s("user_agent"),
    ];
    f.extend(tenant_fields());
    f.push(s("result"));
    f.push(s("metadata"));
    Schema::new(f)
}

/// `status` is the state entered (`pending`, `firing`, `normal`, `no_data`, `error`; a
/// firing → normal change is a resolve); `metadata` a JSON object (fingerprint, labels, the
/// state left, the value).
fn alert_history_schema() -> Schema {
    let mut f = vec![
        Field::new("timestamp", ts(), false),
        s("alert_rule_id"),
        s("alert_rule_name"),
        s("severity"),
        s("status"),
        s("message"),
    ];
    f.extend(tenant_fields());
    f.push(s("metadata"));
    Schema::new(f)
}

static SCHEMAS: LazyLock<[SchemaRef; 7]> = LazyLock::new(|| {
    [
        Arc::new(traces_schema()),
        Arc::new(logs_schema()),
        Arc::new(metrics_schema()),
        Arc::new(histograms_schema()),
        Arc::new(exemplars_schema()),
        Arc::new(audit_logs_schema()),
        Arc::new(alert_history_schema()),
    ]
});

/// The Arrow schema of a table. Cheap: the schemas are built once.
pub fn schema_of(table: Table) -> SchemaRef {
    let i = match table {
        Table::Traces => 0,
        Table::Logs => 1,
        Table::Metrics => 2,
        Table::Histograms => 3,
        Table::Exemplars => 4,
        Table::AuditLogs => 5,
        Table::AlertHistory => 6,
    };
    Arc::clone(&SCHEMAS[i])
}

/// The metric rollups: `metrics_v3` points aggregated per hour or per day and per
/// (metric, service, organization, workspace, tenant, metric type, temporality, unit).
///
/// `sum_value`, `min_value`, `max_value` and `count` merge exactly; `avg_value` is
/// `sum_value / count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rollup {
    Hourly,
    Daily,
}

impl Rollup {
    pub const ALL: [Rollup; 2] = [Rollup::Hourly, Rollup::Daily];

    pub fn name(self) -> &'static str {
        match self {
            Rollup::Hourly => "metrics_v3_hourly",
            Rollup::Daily => "metrics_v3_daily",
        }
    }

    /// The bucket column: `hour` (a timestamp) or `date` (a date).
    pub fn bucket_column(self) -> &'static str {
        match self {
            Rollup::Hourly => "hour",
            Rollup::Daily => "date",
        }
    }

    /// The columns rows are grouped by, after the bucket.
    pub const KEY: [&'static str; 8] = [
        "metric_name",
        "service_name",
        "organization_id",
        "workspace_id",
        "tenant_id",
        "metric_type",
        "temporality",
        "unit",
    ];

    /// Default retention in days: rollups outlive the raw points they summarize.
    pub fn default_retention_days(self) -> u32 {
        match self {
            Rollup::Hourly => 400,
            Rollup::Daily => 1830,
        }
    }
}

static ROLLUP_SCHEMAS: LazyLock<[SchemaRef; 2]> = LazyLock::new(|| {
    [Rollup::Hourly, Rollup::Daily].map(|r| {
        let bucket = match r {
            Rollup::Hourly => Field::new("hour", ts(), false),
            Rollup::Daily => Field::new("date", DataType::Date32, false),
        };
        let mut f = vec![bucket];
        f.extend(Rollup::KEY.iter().map(|c| s(c)));
        f.extend([
            Field::new("sum_value", DataType::Float64, false),
            Field::new("min_value", DataType::Float64, false),
            Field::new("max_value", DataType::Float64, false),
            Field::new("count", DataType::UInt64, false),
            Field::new("avg_value", DataType::Float64, false),
        ]);
        Arc::new(Schema::new(f))
    })
});

/// The Arrow schema of a rollup.
pub fn rollup_schema(rollup: Rollup) -> SchemaRef {
    match rollup {
        Rollup::Hourly => Arc::clone(&ROLLUP_SCHEMAS[0]),
        Rollup::Daily => Arc::clone(&ROLLUP_SCHEMAS[1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_carries_the_tenant_columns_and_a_timestamp() {
        for t in Table::ALL {
            let schema = schema_of(t);
            for col in ["timestamp", "organization_id", "workspace_id", "tenant_id"] {
                assert!(
                    schema.field_with_name(col).is_ok(),
                    "{} lacks {col}",
                    t.name()
                );
            }
            assert_eq!(Table::from_name(t.name()), Some(t));
            assert_eq!(Table::from_tag(t.tag()), Some(t));
        }
    }
}
