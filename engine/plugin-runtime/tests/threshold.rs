//! The `threshold` condition plugin (plugins/condition-threshold) as a component: query results
//! in as Arrow IPC, series with severities out, config errors with the field's path.

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use plugin_runtime::{
    EvaluationContext, PluginError, PluginKind, PluginRuntime, QueryResult, RuntimeConfig,
    SeriesStatus,
};

#[path = "../../../tests/common/guests.rs"]
mod guests;

fn ipc(rows: &[(&str, f64)]) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("error_rate", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch");
    plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc")
}

#[test]
fn threshold_judges_each_series_with_its_severity() {
    let rt = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = guests::guest(
        "condition-threshold",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    );
    let plugin = rt
        .compile(&bytes, Some(PluginKind::AlertCondition))
        .expect("compiles");
    assert_eq!(plugin.metadata.name, "threshold");
    assert!(plugin.metadata.config_schema.contains("thresholds"));

    let config = r#"{"reducer":"avg","thresholds":[
        {"severity":"critical","op":"above","value":0.1},
        {"severity":"warning","op":"above","value":0.05}]}"#;
    assert!(
        rt.validate_config(&plugin, config)
            .expect("validate")
            .is_empty()
    );
    let bad = rt
        .validate_config(&plugin, r#"{"thresholds":[{"op":"between","value":1}]}"#)
        .expect("validate");
    assert_eq!(bad[0].path, "/thresholds/0/value2");

    let ctx = EvaluationContext {
        rule_id: "r".into(),
        evaluation_time_ms: 0,
        interval_ms: 60_000,
        range_start_ms: -300_000,
        range_end_ms: 0,
        config: config.into(),
        state: None,
    };
    let input = QueryResult {
        name: "A".into(),
        data: ipc(&[
            ("checkout", 0.2),
            ("checkout", 0.4),
            ("search", 0.06),
            ("home", 0.0),
        ]),
    };
    let e = rt.evaluate(&plugin, &ctx, &[input]).expect("evaluates");
    let by = |svc: &str| {
        e.series
            .iter()
            .find(|s| s.labels == vec![("service".to_string(), svc.to_string())])
            .expect("series")
    };
    assert_eq!(by("checkout").status, SeriesStatus::Alerting);
    assert_eq!(by("checkout").severity.as_deref(), Some("critical"));
    assert!((by("checkout").value.expect("value") - 0.3).abs() < 1e-9);
    assert_eq!(by("search").severity.as_deref(), Some("warning"));
    assert_eq!(by("home").status, SeriesStatus::Ok);

    let empty = rt
        .evaluate(
            &plugin,
            &ctx,
            &[QueryResult {
                name: "A".into(),
                data: ipc(&[]),
            }],
        )
        .expect("evaluates");
    assert_eq!(empty.series.len(), 1);
    assert_eq!(empty.series[0].status, SeriesStatus::NoData);

    let garbage = rt.evaluate(
        &plugin,
        &ctx,
        &[QueryResult {
            name: "A".into(),
            data: b"not arrow".to_vec(),
        }],
    );
    assert!(
        matches!(&garbage, Err(PluginError::Failed { message, .. }) if message.contains("invalid input")),
        "{garbage:?}"
    );
}
