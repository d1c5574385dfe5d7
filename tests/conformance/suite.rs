//! The checks, each run against every backend.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use model::{Scope, Table, schema_of};
use query::{QueryLimits, TelemetryTables, run_scoped_sql};
use storage::TelemetryStore;

use crate::data::{self, DAY, Export, HOUR, hour_start, now, scope};
use crate::harness::{Backend, backends, clickhouse_with};

async fn scoped(store: &dyn TelemetryStore, scope: &Scope, sql: &str) -> Vec<RecordBatch> {
    let tables: &dyn TelemetryTables = store;
    run_scoped_sql(tables, scope, sql, &QueryLimits::default())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .batches
}

async fn text(store: &dyn TelemetryStore, scope: &Scope, sql: &str) -> String {
    pretty_format_batches(&scoped(store, scope, sql).await)
        .expect("format")
        .to_string()
}

async fn count(store: &dyn TelemetryStore, scope: &Scope, sql: &str) -> i64 {
    let batches = scoped(store, scope, sql).await;
    let col = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("an Int64 count");
    col.value(0)
}

/// The same query over the rows as written (what a perfect store would answer).
async fn expected(written: &[(Table, RecordBatch)], table: Table, sql: &str) -> String {
    let ctx = SessionContext::new();
    let batches: Vec<RecordBatch> = written
        .iter()
        .filter(|(t, _)| *t == table)
        .map(|(_, b)| b.clone())
        .collect();
    let mem = MemTable::try_new(schema_of(table), vec![batches]).expect("memtable");
    ctx.register_table(table.name(), Arc::new(mem))
        .expect("register");
    let out = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    pretty_format_batches(&out).expect("format").to_string()
}

fn rfc3339(nanos: u64) -> String {
    let secs = i64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, sub)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[tokio::test]
async fn every_signal_and_metric_type_round_trips() {
    for b in backends().await {
        let sc = scope("t-roundtrip");
        let t0 = hour_start(1, 123_456_789);
        let mut written = Vec::new();
        written.extend(data::store(b.store.as_ref(), &sc, &Export::Traces(data::traces(t0))).await);
        written.extend(
            data::store(
                b.store.as_ref(),
                &sc,
                &Export::Logs(data::logs("checkout", "rt", 5, t0)),
            )
            .await,
        );
        written
            .extend(data::store(b.store.as_ref(), &sc, &Export::Metrics(data::metrics(t0))).await);
        for (table, order) in [
            (Table::Traces, "span_id"),
            (Table::Logs, "timestamp, body"),
            (Table::Metrics, "metric_name, value"),
            (Table::Histograms, "metric_name, timestamp"),
            (Table::Exemplars, "metric_name, value"),
        ] {
            let sql = format!("SELECT * FROM {} ORDER BY {order}", table.name());
            // An answer has the table's declared types on every store (strings as Utf8, however
            // the store read them).
            let tables: &dyn TelemetryTables = b.store.as_ref();
            let answer = run_scoped_sql(tables, &sc, &sql, &QueryLimits::default())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let types =
                |s: &arrow::datatypes::Schema| -> Vec<(String, arrow::datatypes::DataType)> {
                    s.fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect()
                };
            let declared = schema_of(table);
            assert_eq!(
                types(&answer.schema),
                types(&declared),
                "{}: {}",
                b.name,
                table.name()
            );
            for batch in &answer.batches {
                assert_eq!(types(&batch.schema()), types(&declared), "{}", b.name);
            }
            let want = expected(&written, table, &sql).await;
            let got = text(b.store.as_ref(), &sc, &sql).await;
            assert!(
                want.lines().count() > 4,
                "{}: the data has {} rows",
                b.name,
                table.name()
            );
            assert_eq!(
                got,
                want,
                "{}: {} differs from what was written",
                b.name,
                table.name()
            );
        }
        // Nested events and links keep their fields.
        let events = text(
            b.store.as_ref(),
            &sc,
            "SELECT span_id, events[2]['name'] AS e, events[2]['attributes']['exception.type'] AS t, \
             links[1]['trace_id'] AS l, links[1]['dropped_attributes_count'] AS d \
             FROM traces_v3 WHERE cardinality(events) > 0 OR cardinality(links) > 0 ORDER BY span_id",
        )
        .await;
        assert!(
            events.contains("exception") && events.contains("Timeout"),
            "{}: {events}",
            b.name
        );
        assert!(events.contains(&"77".repeat(16)), "{}: {events}", b.name);
        // The schema document's views.
        let trace = "5a".repeat(16);
        let by_trace = text(
            b.store.as_ref(),
            &sc,
            &format!("SELECT body, span_id FROM logs_v3_by_trace WHERE trace_id = '{trace}'"),
        )
        .await;
        assert!(
            by_trace.contains("rt-0") && !by_trace.contains("rt-1"),
            "{}: {by_trace}",
            b.name
        );
        let spans = count(
            b.store.as_ref(),
            &sc,
            &format!(
                "SELECT count(*) FROM spans_v3 WHERE trace_id = '{trace}' AND span_kind = 'server'"
            ),
        )
        .await;
        assert_eq!(spans, 1, "{}", b.name);
    }
}

#[tokio::test]
async fn reads_are_confined_to_the_tenant_and_the_time_range() {
    for b in backends().await {
        let a = scope("tenant-a");
        let bb = scope("tenant-b");
        let other_ws = Scope {
            workspace_id: "ws-2".into(),
            ..scope("tenant-a")
        };
        let t0 = hour_start(3, 0);
        data::store(
            b.store.as_ref(),
            &a,
            &Export::Logs(data::logs("svc", "a", 10, t0)),
        )
        .await;
        data::store(
            b.store.as_ref(),
            &bb,
            &Export::Logs(data::logs("svc", "b", 4, t0)),
        )
        .await;
        data::store(
            b.store.as_ref(),
            &other_ws,
            &Export::Logs(data::logs("svc", "w", 2, t0)),
        )
        .await;
        let all = "SELECT count(*) FROM logs_v3";
        assert_eq!(count(b.store.as_ref(), &a, all).await, 10, "{}", b.name);
        assert_eq!(count(b.store.as_ref(), &bb, all).await, 4, "{}", b.name);
        assert_eq!(
            count(b.store.as_ref(), &other_ws, all).await,
            2,
            "{}",
            b.name
        );
        for sneaky in [
            "SELECT count(*) FROM logs_v3 WHERE tenant_id = 'tenant-b'",
            "SELECT count(*) FROM logs_v3 WHERE workspace_id = 'ws-2' OR tenant_id <> 'tenant-a'",
            "SELECT count(*) FROM (SELECT * FROM logs_v3 UNION ALL SELECT * FROM logs_v3 WHERE body LIKE 'b-%') x WHERE body LIKE 'b-%'",
        ] {
            assert_eq!(
                count(b.store.as_ref(), &a, sneaky).await,
                0,
                "{}: {sneaky}",
                b.name
            );
        }
        // Logs are 1 ms apart: [t0 + 3 ms, t0 + 7 ms) holds 4 of them.
        let range = format!(
            "SELECT count(*) FROM logs_v3 WHERE timestamp >= '{}' AND timestamp < '{}'",
            rfc3339(t0 + 3_000_000),
            rfc3339(t0 + 7_000_000)
        );
        assert_eq!(
            count(b.store.as_ref(), &a, &range).await,
            4,
            "{}: {range}",
            b.name
        );
        let between = format!(
            "SELECT count(*) FROM logs_v3 WHERE timestamp BETWEEN '{}' AND '{}' AND severity_number >= 13",
            rfc3339(t0),
            rfc3339(t0 + 9_000_000)
        );
        // Severities cycle 9, 13, 17: of ten logs, i % 3 != 0 → 6.
        assert_eq!(
            count(b.store.as_ref(), &a, &between).await,
            6,
            "{}: {between}",
            b.name
        );
        let listed = "SELECT count(*) FROM logs_v3 WHERE severity_text IN ('WARN', 'ERROR') AND body <> 'a-1'";
        assert_eq!(count(b.store.as_ref(), &a, listed).await, 5, "{}", b.name);
    }
}

#[tokio::test]
async fn retention_drops_rows_older_than_the_table_keeps() {
    for b in backends().await {
        let sc = scope("t-retention");
        let old = now() - 100 * DAY;
        let recent = now() - HOUR;
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Logs(data::logs("svc", "old", 3, old)),
        )
        .await;
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Logs(data::logs("svc", "new", 2, recent)),
        )
        .await;
        b.store.enforce_retention().await.expect("retention runs");
        let left = text(
            b.store.as_ref(),
            &sc,
            "SELECT body FROM logs_v3 ORDER BY body",
        )
        .await;
        assert!(
            !left.contains("old-"),
            "{}: logs keep 30 days: {left}",
            b.name
        );
        assert!(
            left.contains("new-0") && left.contains("new-1"),
            "{}: {left}",
            b.name
        );
    }
}

#[tokio::test]
async fn rollups_equal_the_raw_aggregates() {
    for b in backends().await {
        let sc = scope("t-rollup");
        let h2 = hour_start(2, 0);
        let h1 = hour_start(1, 0);
        let sec = 1_000_000_000;
        // Two requests, so a store that writes per request holds two parts for hour h2.
        let first = data::gauge_points(
            "load",
            &[(h2 + sec, 1.0), (h2 + 2 * sec, 2.0), (h1 + sec, 10.0)],
        );
        let second = data::gauge_points("load", &[(h2 + 3 * sec, 6.0), (h2 + 4 * sec, 3.0)]);
        let third = data::gauge_points("load", &[(h2 + 5 * sec, 8.0)]);
        // Flushed twice (the embedded store keeps partial rollups per flush), then a point not
        // flushed yet: the rollups merge all three.
        data::store(b.store.as_ref(), &sc, &Export::Metrics(first)).await;
        b.store.flush().await.expect("flush");
        data::store(b.store.as_ref(), &sc, &Export::Metrics(second)).await;
        b.store.flush().await.expect("flush");
        data::store(b.store.as_ref(), &sc, &Export::Metrics(third)).await;
        let rollup = "SELECT hour, sum_value, min_value, max_value, count, avg_value \
                      FROM metrics_v3_hourly WHERE metric_name = 'load' ORDER BY hour";
        let raw = "SELECT date_trunc('hour', timestamp) AS hour, sum(value) AS sum_value, \
                   min(value) AS min_value, max(value) AS max_value, \
                   arrow_cast(count(value), 'UInt64') AS count, avg(value) AS avg_value \
                   FROM metrics_v3 WHERE metric_name = 'load' GROUP BY 1 ORDER BY hour";
        let got = text(b.store.as_ref(), &sc, rollup).await;
        assert_eq!(got, text(b.store.as_ref(), &sc, raw).await, "{}", b.name);
        assert!(
            got.contains("| 20.0      | 1.0       | 8.0       | 5     | 4.0"),
            "{}: {got}",
            b.name
        );
        let daily = "SELECT date, sum_value, count FROM metrics_v3_daily WHERE metric_name = 'load' ORDER BY date";
        let raw_daily = "SELECT arrow_cast(timestamp, 'Date32') AS date, sum(value) AS sum_value, \
                         arrow_cast(count(value), 'UInt64') AS count FROM metrics_v3 \
                         WHERE metric_name = 'load' GROUP BY 1 ORDER BY date";
        assert_eq!(
            text(b.store.as_ref(), &sc, daily).await,
            text(b.store.as_ref(), &sc, raw_daily).await,
            "{}",
            b.name
        );
        // Another tenant's rollups are not visible.
        let other = count(
            b.store.as_ref(),
            &scope("t-rollup-other"),
            "SELECT count(*) FROM metrics_v3_hourly",
        )
        .await;
        assert_eq!(other, 0, "{}", b.name);
    }
}

#[tokio::test]
async fn a_retried_batch_is_stored_once() {
    for b in backends().await {
        let sc = scope("t-dedup");
        let t0 = hour_start(1, 0);
        let (batches, raw) = data::convert(&Export::Logs(data::logs("svc", "req", 7, t0)), &sc);
        for _ in 0..3 {
            b.store
                .write_export(batches.clone(), raw.clone())
                .await
                .expect("write");
        }
        assert_eq!(
            count(b.store.as_ref(), &sc, "SELECT count(*) FROM logs_v3").await,
            7,
            "{}",
            b.name
        );
        // Rows written without a request behind them are recognised by their content.
        let (rows, _) = data::convert(&Export::Logs(data::logs("svc", "rows", 3, t0)), &sc);
        b.store.write(rows.clone()).await.expect("write");
        b.store.write(rows).await.expect("write");
        assert_eq!(
            count(b.store.as_ref(), &sc, "SELECT count(*) FROM logs_v3").await,
            10,
            "{}",
            b.name
        );
        // The rollups see a retried metric request once too.
        let (points, raw) = data::convert(
            &Export::Metrics(data::gauge_points("dedup", &[(t0, 1.0), (t0 + 1, 2.0)])),
            &sc,
        );
        b.store
            .write_export(points.clone(), raw.clone())
            .await
            .expect("write");
        b.store.write_export(points, raw).await.expect("write");
        let n = count(
            b.store.as_ref(),
            &sc,
            "SELECT arrow_cast(sum(count), 'Int64') FROM metrics_v3_hourly WHERE metric_name = 'dedup'",
        )
        .await;
        assert_eq!(n, 2, "{}", b.name);
        // A different tenant sending the same bytes is a different request.
        let (batches, raw) = data::convert(
            &Export::Logs(data::logs("svc", "req", 7, t0)),
            &scope("t-dedup-2"),
        );
        b.store.write_export(batches, raw).await.expect("write");
        assert_eq!(
            count(
                b.store.as_ref(),
                &scope("t-dedup-2"),
                "SELECT count(*) FROM logs_v3"
            )
            .await,
            7,
            "{}",
            b.name
        );
    }
}

async fn clickhouse() -> Option<Backend> {
    clickhouse_with(|_| {}).await
}

#[tokio::test]
async fn clickhouse_migrations_are_recorded_and_run_once() {
    let Some(b) = clickhouse().await else { return };
    let ch = b.clickhouse.as_ref().expect("clickhouse");
    let layout = ch.layout().clone();
    let again = storage_clickhouse::migrate::apply(ch.client(), &layout)
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "nothing left to apply: {again:?}");
    assert_eq!(again.already, vec![1, 2, 3]);
    let log = ch
        .client()
        .execute(
            &format!(
                "SELECT version, name FROM {} FINAL ORDER BY version FORMAT TabSeparated",
                layout.qualified("migrations_log")
            ),
            &[],
            &[],
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("read the log");
    assert_eq!(
        String::from_utf8_lossy(&log),
        "1\ttelemetry_tables\n2\tmetric_rollups\n3\tsystem_tables\n"
    );
    // Every table and view of the schema document exists.
    let tables = ch
        .client()
        .execute(
            "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name FORMAT TabSeparated",
            &[("db".into(), layout.database.clone())],
            &[],
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("list tables");
    let tables = String::from_utf8_lossy(&tables);
    for t in [
        "alert_history",
        "audit_logs",
        "exemplars_v3",
        "logs_v3",
        "logs_v3_by_trace",
        "metric_histograms",
        "metrics_v3",
        "metrics_v3_daily",
        "metrics_v3_hourly",
        "migrations_log",
        "spans_v3",
        "traces_v3",
        "uptime_checks",
    ] {
        assert!(tables.lines().any(|l| l == t), "{t} missing from {tables}");
    }
}

#[tokio::test]
async fn clickhouse_accepts_the_generated_cluster_ddl() {
    let Some(b) = clickhouse().await else { return };
    let ch = b.clickhouse.as_ref().expect("clickhouse");
    let mut layout = storage_clickhouse::Layout::single("tf_cluster");
    layout.cluster = Some("prod_cluster".into());
    let ddl = storage_clickhouse::migrate::full_ddl(&layout).expect("render");
    assert!(ddl.len() > 20);
    for stmt in ddl {
        // ClickHouse's own parser checks every statement (running it needs a real cluster with
        // Keeper; README says how).
        ch.client()
            .execute(
                "SELECT formatQuery({q:String}) FORMAT TabSeparated",
                &[("q".into(), stmt.clone())],
                &[],
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|e| panic!("ClickHouse rejects {stmt}: {e}"));
    }
}

#[tokio::test]
async fn clickhouse_gets_user_values_only_as_typed_parameters() {
    let Some(b) = clickhouse().await else { return };
    let evil = scope("x' OR 1=1 OR tenant_id = '");
    let plain = scope("plain");
    let t0 = hour_start(1, 0);
    data::store(
        b.store.as_ref(),
        &plain,
        &Export::Logs(data::logs("svc", "p", 3, t0)),
    )
    .await;
    data::store(
        b.store.as_ref(),
        &evil,
        &Export::Logs(data::logs("svc", "e", 2, t0)),
    )
    .await;
    assert_eq!(
        count(b.store.as_ref(), &evil, "SELECT count(*) FROM logs_v3").await,
        2
    );
    let q = "SELECT count(*) FROM logs_v3 WHERE body = 'p-1'' OR ''1''=''1'";
    assert_eq!(count(b.store.as_ref(), &plain, q).await, 0);
    assert_eq!(
        count(
            b.store.as_ref(),
            &plain,
            "SELECT count(*) FROM logs_v3 WHERE body = 'p-1'"
        )
        .await,
        1
    );
    // Tabs, newlines and backslashes survive the trip as parameters (the constant folds into
    // one literal, which is pushed down).
    data::store(
        b.store.as_ref(),
        &plain,
        &Export::Logs(data::logs("svc", "l1\nl2\t\\x", 2, t0)),
    )
    .await;
    let q = "SELECT count(*) FROM logs_v3 WHERE body = concat('l1', chr(10), 'l2', chr(9), chr(92), 'x-1')";
    assert_eq!(count(b.store.as_ref(), &plain, q).await, 1);
}

#[tokio::test]
async fn alert_history_round_trips() {
    use arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray};
    for b in backends().await {
        let t0 = i64::try_from(now()).expect("now") - 60_000_000_000;
        let s = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let batch = RecordBatch::try_new(
            schema_of(Table::AlertHistory),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![t0, t0 + 60_000_000_000])
                        .with_timezone("UTC"),
                ),
                s(&["rule-1", "rule-1"]),
                s(&["High latency", "High latency"]),
                s(&["critical", "critical"]),
                s(&["firing", "normal"]),
                s(&["the condition is met for 2m", "the condition is not met"]),
                s(&["org", "org"]),
                s(&["ws", "ws"]),
                s(&["t-history", "t-history"]),
                s(&[r#"{"from":"pending"}"#, r#"{"from":"firing"}"#]),
            ],
        )
        .expect("batch");
        b.store
            .write(vec![(Table::AlertHistory, batch.clone())])
            .await
            .expect("write");
        b.store.flush().await.expect("flush");
        let ctx = SessionContext::new();
        ctx.register_table("alert_history", b.store.table_provider(Table::AlertHistory))
            .expect("register");
        let sql = "SELECT alert_rule_id, status, message, metadata FROM alert_history \
                   WHERE tenant_id = 't-history' ORDER BY timestamp";
        let got = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let got = pretty_format_batches(&got).expect("format").to_string();
        let want = expected(&[(Table::AlertHistory, batch)], Table::AlertHistory, sql).await;
        assert_eq!(got, want, "{}", b.name);
        assert!(
            got.contains("the condition is met for 2m"),
            "{}: {got}",
            b.name
        );
    }
}

/// A prepared query's answer over `[from, to)` (ms), as a table.
async fn in_window(prepared: &query::Prepared, from: i64, to: i64) -> String {
    use query::Param::TimestampMs;
    let got = prepared
        .run(
            &[("__from", TimestampMs(from)), ("__to", TimestampMs(to))],
            &QueryLimits::default(),
        )
        .await
        .expect("runs");
    pretty_format_batches(&got.batches)
        .expect("format")
        .to_string()
}

#[tokio::test]
async fn a_prepared_query_answers_as_the_rendered_one_and_sees_new_data() {
    use query::Prepared;
    for b in backends().await {
        let a = scope("tenant-a");
        let t0 = hour_start(5, 0);
        data::store(
            b.store.as_ref(),
            &a,
            &Export::Logs(data::logs("svc", "a", 10, t0)),
        )
        .await;
        data::store(
            b.store.as_ref(),
            &scope("tenant-b"),
            &Export::Logs(data::logs("svc", "b", 10, t0)),
        )
        .await;
        let sql = "SELECT service_name, count(*) AS n FROM logs_v3 \
                   WHERE timestamp >= $__from AND timestamp < $__to GROUP BY service_name";
        let tables: &dyn TelemetryTables = b.store.as_ref();
        let limits = QueryLimits::default();
        let prepared = Prepared::new(tables, &a, sql, &["__from", "__to"], &limits)
            .await
            .expect("plans")
            .expect("kept: both parameters are typed by their use");
        let ms = i64::try_from(t0 / 1_000_000).expect("ms");
        // Logs are 1 ms apart from t0.
        for (from, to) in [(ms, ms + 10), (ms + 3, ms + 7), (ms + 20, ms + 30)] {
            let rendered = alert::spec::render_sql(sql, from, to);
            assert_eq!(
                in_window(&prepared, from, to).await,
                text(b.store.as_ref(), &a, &rendered).await,
                "{}: [{from}, {to})",
                b.name
            );
        }
        // Data written after planning is read by the next run.
        data::store(
            b.store.as_ref(),
            &a,
            &Export::Logs(data::logs("svc", "c", 5, t0 + 100_000_000)),
        )
        .await;
        let got = in_window(&prepared, ms, ms + 1_000).await;
        assert_eq!(
            got,
            text(
                b.store.as_ref(),
                &a,
                &alert::spec::render_sql(sql, ms, ms + 1_000)
            )
            .await,
            "{}",
            b.name
        );
        assert!(
            got.contains("| 15 |"),
            "{}: the 5 later logs are counted",
            b.name
        );
        // Joins, a window function, a correlated subquery, ORDER BY and LIMIT plan and run
        // prepared (its session keeps only the physical rules a plan needs) as rendered.
        let shaped = "WITH per AS (SELECT service_name, count(*) AS n FROM logs_v3 \
                      WHERE timestamp >= $__from AND timestamp < $__to GROUP BY service_name) \
                      SELECT p.service_name, p.n, rank() OVER (ORDER BY p.n DESC) AS r, \
                      (SELECT max(l.timestamp) FROM logs_v3 l WHERE l.service_name = p.service_name \
                       AND l.timestamp < $__to) AS last \
                      FROM per p JOIN (SELECT DISTINCT service_name FROM logs_v3 \
                       WHERE timestamp >= $__from) s ON s.service_name = p.service_name \
                      ORDER BY p.n DESC, p.service_name LIMIT 5";
        let prepared = Prepared::new(tables, &a, shaped, &["__from", "__to"], &limits)
            .await
            .expect("plans")
            .expect("kept");
        for (from, to) in [(ms, ms + 1_000), (ms + 3, ms + 7)] {
            let want = text(
                b.store.as_ref(),
                &a,
                &alert::spec::render_sql(shaped, from, to),
            )
            .await;
            assert!(want.contains("| svc"), "{}: {want}", b.name);
            assert_eq!(
                in_window(&prepared, from, to).await,
                want,
                "{}: [{from}, {to})",
                b.name
            );
        }
        // A query whose answer depends on when it runs is not kept.
        let moving = "SELECT count(*) FROM logs_v3 \
                      WHERE timestamp >= $__from AND timestamp < $__to AND timestamp < now()";
        assert!(
            Prepared::new(tables, &a, moving, &["__from", "__to"], &limits)
                .await
                .expect("plans")
                .is_none(),
            "{}",
            b.name
        );
    }
}

/// A panel's request over `[from, to)` in minutes: avg, p99 and count of `cpu` by service (one
/// statement), and the count of logs (another).
fn panel(from: u64, to: u64) -> query::builder::Request {
    let queries = serde_json::from_value(serde_json::json!([
        {"name": "A", "signal": "metrics", "metric": "cpu", "aggregation": "avg",
         "group_by": ["service.name"]},
        {"name": "B", "signal": "metrics", "metric": "cpu", "aggregation": "p99",
         "group_by": ["service.name"]},
        {"name": "C", "signal": "metrics", "metric": "cpu", "aggregation": "count",
         "group_by": ["service.name"]},
        {"name": "L", "signal": "logs", "aggregation": "count"},
    ]))
    .expect("queries");
    query::builder::Request {
        from_ns: i64::try_from(from).expect("time"),
        to_ns: i64::try_from(to).expect("time"),
        step_ms: Some(60_000),
        max_points: 1_000,
        instant: false,
        queries,
        formulas: vec![],
    }
}

/// The cached answer, checked against a full run of the same request.
async fn cached_as_full(
    b: &Backend,
    cache: &query::BucketCache,
    sc: &Scope,
    r: &query::builder::Request,
) -> query::builder::Response {
    let limits = QueryLimits::default();
    let tables: &dyn TelemetryTables = b.store.as_ref();
    let cached = query::builder::run_cached(tables, sc, r, &limits, cache)
        .await
        .expect("the cached run answers");
    let full = query::builder::run(tables, sc, r, &limits)
        .await
        .expect("the full run answers");
    assert_eq!(
        cached, full,
        "{}: the cached answer is the full one",
        b.name
    );
    cached
}

/// The value of query `name` at `t` (ns) in its only series.
fn point(r: &query::builder::Response, name: &str, t: u64) -> Option<f64> {
    let out = r
        .results
        .iter()
        .find(|o| o.name == name)
        .expect("the query");
    let t_ms = i64::try_from(t / 1_000_000).expect("time");
    out.series[0]
        .points
        .iter()
        .find(|p| p.0 == t_ms)
        .and_then(|p| p.1)
}

#[tokio::test]
async fn a_cached_panel_answers_as_a_full_run_after_new_late_and_expired_rows() {
    const MINUTE: u64 = 60_000_000_000;
    const SECOND: u64 = 1_000_000_000;
    for b in backends().await {
        let sc = scope("t-panel-cache");
        let cache = query::BucketCache::new(16 << 20);
        let t0 = hour_start(2, 0);
        // A point every 10 s for 40 minutes, whole numbers (sums are exact in any order).
        let points: Vec<(u64, f64)> = (0..240)
            .map(|i| (t0 + i * 10 * SECOND, (i % 17) as f64))
            .collect();
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Metrics(data::gauge_points("cpu", &points)),
        )
        .await;
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Logs(data::logs("svc", "panel", 50, t0 + 3 * MINUTE)),
        )
        .await;
        b.store.flush().await.expect("flush");

        // The range starts and ends inside buckets, as `now-30m`..`now` does.
        let mut from = t0 + 30 * SECOND;
        let mut to = t0 + 30 * MINUTE + 20 * SECOND;
        let first = cached_as_full(&b, &cache, &sc, &panel(from, to)).await;
        cached_as_full(&b, &cache, &sc, &panel(from, to)).await;
        // The panel refreshes: the range moves two minutes and a half on.
        from += 150 * SECOND;
        to += 150 * SECOND;
        cached_as_full(&b, &cache, &sc, &panel(from, to)).await;

        // A late point lands in a bucket already kept; another after the range.
        let late = t0 + 10 * MINUTE + 5 * SECOND;
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Metrics(data::gauge_points(
                "cpu",
                &[(late, 1_000.0), (t0 + 50 * MINUTE, 7.0)],
            )),
        )
        .await;
        let after = cached_as_full(&b, &cache, &sc, &panel(from, to)).await;
        let bucket = t0 + 10 * MINUTE;
        assert_eq!(point(&first, "C", bucket), Some(6.0), "{}", b.name);
        assert_eq!(point(&after, "C", bucket), Some(7.0), "{}", b.name);
        let p99 = point(&after, "B", bucket).unwrap_or_default();
        assert!(p99 > 900.0, "{}: p99 sees the late point: {p99}", b.name);
        // Another tenant's panel is its own.
        let other = cached_as_full(&b, &cache, &scope("t-panel-cache-2"), &panel(from, to)).await;
        assert!(
            other.results.iter().all(|o| o
                .series
                .iter()
                .all(|s| s.points.iter().all(|p| p.1.is_none() || p.1 == Some(0.0)))),
            "{}: {other:?}",
            b.name
        );

        // Logs past their retention go, and a kept count of them with them.
        let old = now() - 100 * DAY;
        data::store(
            b.store.as_ref(),
            &sc,
            &Export::Logs(data::logs("svc", "expired", 5, old)),
        )
        .await;
        let (old_from, old_to) = (old - 10 * MINUTE - 7 * SECOND, old + 10 * MINUTE);
        let before = cached_as_full(&b, &cache, &sc, &panel(old_from, old_to)).await;
        let logs_at = |r: &query::builder::Response| -> f64 {
            r.results
                .iter()
                .find(|o| o.name == "L")
                .map(|o| {
                    o.series
                        .iter()
                        .flat_map(|s| &s.points)
                        .filter_map(|p| p.1)
                        .sum()
                })
                .unwrap_or_default()
        };
        if b.clickhouse.is_none() {
            // ClickHouse may drop rows past their TTL as soon as they arrive.
            assert_eq!(logs_at(&before), 5.0, "{}", b.name);
        }
        b.store.enforce_retention().await.expect("retention runs");
        let gone = cached_as_full(&b, &cache, &sc, &panel(old_from, old_to)).await;
        assert_eq!(logs_at(&gone), 0.0, "{}", b.name);

        // The embedded store says what changed, so refreshes reused kept buckets; ClickHouse,
        // which other writers share, is never cached.
        let stats = cache.stats();
        if b.clickhouse.is_some() {
            assert_eq!((stats.entries, stats.hits), (0, 0), "{}", b.name);
        } else {
            assert!(stats.hits >= 4, "{}: {stats:?}", b.name);
        }
    }
}
