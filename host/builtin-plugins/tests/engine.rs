//! Every built-in plugin as the server runs it: compiled by the plugin runtime, described by its
//! metadata, checking configs, and giving the right answer on Arrow data through the component
//! boundary.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use plugin_runtime::{
    CompiledPlugin, EvaluationContext, PluginKind, PluginRuntime, QueryResult, RuntimeConfig,
    SeriesStatus,
};

fn runtime() -> &'static PluginRuntime {
    static RT: OnceLock<PluginRuntime> = OnceLock::new();
    RT.get_or_init(|| PluginRuntime::new(RuntimeConfig::default()).expect("runtime"))
}

fn plugins() -> &'static Vec<CompiledPlugin> {
    static P: OnceLock<Vec<CompiledPlugin>> = OnceLock::new();
    P.get_or_init(|| {
        builtin_plugins::ALL
            .iter()
            .map(|(package, bytes)| {
                runtime()
                    .compile(bytes, None)
                    .unwrap_or_else(|e| panic!("{package}: {e}"))
            })
            .collect()
    })
}

fn plugin(name: &str) -> &'static CompiledPlugin {
    plugins()
        .iter()
        .find(|p| p.metadata.name == name)
        .unwrap_or_else(|| panic!("no built-in {name}"))
}

/// `(service, unix ms, value)` rows as an Arrow IPC stream.
fn ipc(rows: &[(&str, i64, f64)]) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch");
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).expect("writer");
    w.write(&batch).expect("write");
    w.finish().expect("finish");
    drop(w);
    out
}

fn read(bytes: &[u8]) -> RecordBatch {
    let reader = arrow::ipc::reader::StreamReader::try_new(bytes, None).expect("stream");
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

fn evaluate(
    name: &str,
    config: &str,
    now: i64,
    state: Option<Vec<u8>>,
    rows: &[(&str, i64, f64)],
) -> plugin_runtime::Evaluation {
    let ctx = EvaluationContext {
        rule_id: "r1".into(),
        evaluation_time_ms: now,
        interval_ms: 60_000,
        range_start_ms: now - 600_000,
        range_end_ms: now,
        config: config.into(),
        state,
    };
    let inputs = [QueryResult {
        name: "A".into(),
        data: ipc(rows),
    }];
    runtime()
        .evaluate(plugin(name), &ctx, &inputs)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn statuses(e: &plugin_runtime::Evaluation) -> Vec<(String, SeriesStatus)> {
    e.series
        .iter()
        .map(|s| {
            (
                s.labels.first().map(|l| l.1.clone()).unwrap_or_default(),
                s.status,
            )
        })
        .collect()
}

#[test]
fn every_builtin_compiles_describes_itself_and_checks_configs() {
    let mut names: Vec<(&str, PluginKind)> = plugins()
        .iter()
        .map(|p| (p.metadata.name.as_str(), p.kind))
        .collect();
    names.sort_by_key(|n| n.0);
    assert_eq!(
        names,
        vec![
            ("absence", PluginKind::AlertCondition),
            ("discord", PluginKind::NotificationChannel),
            ("email", PluginKind::NotificationChannel),
            ("fill-gaps", PluginKind::WidgetTransform),
            ("moving-average", PluginKind::WidgetTransform),
            ("msteams", PluginKind::NotificationChannel),
            ("pagerduty", PluginKind::NotificationChannel),
            ("percent-change", PluginKind::WidgetTransform),
            ("rate", PluginKind::WidgetTransform),
            ("rate-of-change", PluginKind::AlertCondition),
            ("slack", PluginKind::NotificationChannel),
            ("sms", PluginKind::NotificationChannel),
            ("telegram", PluginKind::NotificationChannel),
            ("threshold", PluginKind::AlertCondition),
            ("top-k", PluginKind::WidgetTransform),
            ("webhook", PluginKind::NotificationChannel),
            ("z-score", PluginKind::AlertCondition),
        ]
    );
    for p in plugins() {
        let schema: serde_json::Value =
            serde_json::from_str(&p.metadata.config_schema).expect("the schema is JSON");
        assert!(
            schema["properties"].is_object(),
            "{}: {schema}",
            p.metadata.name
        );
        let errors = runtime()
            .validate_config(p, r#"{"no_such_field": 1}"#)
            .expect("validate");
        assert_eq!(errors.len(), 1, "{}", p.metadata.name);
    }
}

#[test]
fn conditions_judge_series_through_the_component() {
    let rows = [("api", 1_000, 700.0), ("db", 1_000, 100.0)];
    let t = evaluate(
        "threshold",
        r#"{"thresholds":[{"op":"above","value":500}]}"#,
        60_000,
        None,
        &rows,
    );
    assert_eq!(
        statuses(&t),
        vec![
            ("api".into(), SeriesStatus::Alerting),
            ("db".into(), SeriesStatus::Ok)
        ]
    );

    let a = evaluate(
        "absence",
        r#"{"for":"5m"}"#,
        400_000,
        None,
        &[("api", 390_000, 1.0), ("db", 50_000, 1.0)],
    );
    assert_eq!(
        statuses(&a),
        vec![
            ("api".into(), SeriesStatus::Ok),
            ("db".into(), SeriesStatus::Alerting)
        ]
    );
    let later = evaluate("absence", r#"{"for":"5m"}"#, 1_000_000, a.state, &[]);
    assert!(
        later
            .series
            .iter()
            .all(|s| s.status == SeriesStatus::Alerting),
        "remembered"
    );

    let r = evaluate(
        "rate-of-change",
        r#"{"measure":"percent","thresholds":[{"op":"above","value":50}]}"#,
        60_000,
        None,
        &[
            ("api", 0, 100.0),
            ("api", 30_000, 200.0),
            ("db", 0, 100.0),
            ("db", 30_000, 101.0),
        ],
    );
    assert_eq!(
        statuses(&r),
        vec![
            ("api".into(), SeriesStatus::Alerting),
            ("db".into(), SeriesStatus::Ok)
        ]
    );

    let mut state = None;
    for i in 0..12 {
        let v = if i % 2 == 0 { 99.0 } else { 101.0 };
        let z = evaluate(
            "z-score",
            r#"{"min_samples":5}"#,
            i * 60_000,
            state,
            &[("api", i * 60_000, v)],
        );
        assert_eq!(z.series[0].status, SeriesStatus::Ok);
        state = z.state;
    }
    let spike = evaluate(
        "z-score",
        r#"{"min_samples":5}"#,
        13 * 60_000,
        state,
        &[("api", 13 * 60_000, 160.0)],
    );
    assert_eq!(spike.series[0].status, SeriesStatus::Alerting);
}

fn transform(name: &str, config: &str, rows: &[(&str, i64, f64)]) -> RecordBatch {
    let out = runtime()
        .transform(plugin(name), &ipc(rows), config)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    read(&out)
}

fn values(b: &RecordBatch, column: &str) -> Vec<Option<f64>> {
    let a = b
        .column_by_name(column)
        .expect("column")
        .as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

#[test]
fn transforms_reshape_batches_through_the_component() {
    let rows = [
        ("api", 0, 10.0),
        ("api", 60_000, 30.0),
        ("api", 180_000, 90.0),
        ("db", 0, 1.0),
        ("db", 60_000, 2.0),
        ("web", 0, 500.0),
    ];
    let top = transform("top-k", r#"{"k":1}"#, &rows);
    assert_eq!(top.num_rows(), 1, "web has the highest average");

    let rate = transform("rate", r#"{"per":"1m"}"#, &rows);
    assert_eq!(
        values(&rate, "value"),
        vec![Some(20.0), Some(30.0), Some(1.0)]
    );

    let filled = transform("fill-gaps", r#"{"step":"1m","fill":"linear"}"#, &rows);
    assert_eq!(
        values(&filled, "value")[..4],
        [Some(10.0), Some(30.0), Some(60.0), Some(90.0)]
    );

    let avg = transform("moving-average", r#"{"window":2}"#, &rows);
    assert_eq!(
        values(&avg, "value")[..3],
        [Some(10.0), Some(20.0), Some(60.0)]
    );

    let pct = transform("percent-change", r#"{"offset":"1m"}"#, &rows);
    assert_eq!(
        values(&pct, "percent_change"),
        vec![Some(200.0), Some(100.0)]
    );

    let schema = runtime()
        .output_schema(plugin("percent-change"), &ipc(&[]), r#"{"offset":"1d"}"#)
        .expect("schema");
    assert_eq!(read(&schema).schema().fields().len(), 5);
}
