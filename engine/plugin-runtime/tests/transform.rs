//! The `moving-average` transform plugin (plugins/transform-moving-average) as a component:
//! Arrow IPC in, Arrow IPC out, its output schema known before data arrives.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use plugin_runtime::{PluginError, PluginKind, PluginRuntime, RuntimeConfig};

#[path = "../../../tests/common/guests.rs"]
mod guests;

#[test]
fn moving_average_transforms_arrow_batches() {
    let rt = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = guests::guest(
        "transform-moving-average",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
    );
    let plugin = rt.compile(&bytes, None).expect("compiles");
    assert_eq!(plugin.kind, PluginKind::WidgetTransform);
    assert_eq!(plugin.metadata.name, "moving-average");

    let schema = Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("cpu", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["a", "a", "a", "b"])),
            Arc::new(Int64Array::from(vec![10, 20, 60, 7])),
        ],
    )
    .expect("batch");
    let config = r#"{"window":2}"#;

    let planned = rt
        .output_schema(
            &plugin,
            &plugin_sdk::ipc::write(&schema, &[]).expect("ipc"),
            config,
        )
        .expect("output schema");
    let (out_schema, none) = plugin_sdk::ipc::read(&planned).expect("read");
    assert!(none.is_empty());
    assert_eq!(out_schema.field(1).data_type(), &DataType::Float64);

    let out = rt
        .transform(
            &plugin,
            &plugin_sdk::ipc::write(&schema, &[batch]).expect("ipc"),
            config,
        )
        .expect("transform");
    let (s, batches) = plugin_sdk::ipc::read(&out).expect("read");
    assert_eq!(s, out_schema, "run's output has the planned schema");
    let avg = batches[0].column(1).as_primitive::<Float64Type>();
    assert_eq!(avg.values().to_vec(), vec![10.0, 15.0, 40.0, 7.0]);

    let bad = rt.transform(&plugin, &out, r#"{"window":0}"#);
    assert!(
        matches!(&bad, Err(PluginError::Failed { message, .. }) if message.contains("/window")),
        "{bad:?}"
    );
    let evaluate = rt.evaluate(
        &plugin,
        &plugin_runtime::EvaluationContext {
            rule_id: "r".into(),
            evaluation_time_ms: 0,
            interval_ms: 1,
            range_start_ms: 0,
            range_end_ms: 0,
            config: "{}".into(),
            state: None,
        },
        &[],
    );
    assert!(
        matches!(evaluate, Err(PluginError::Invalid(_))),
        "a transform is not a condition"
    );
}
