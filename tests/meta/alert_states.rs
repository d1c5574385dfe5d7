//! When an alert rule's evaluation state reaches the metadata store, on both backends: a
//! change of the alert's course at once (durable before the evaluation returns); values and
//! counts that move without one with the next batch write.

use std::sync::Arc;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use plugin_runtime::{CompiledPlugin, PluginRuntime, RuntimeConfig};
use storage::{AlertStore, TelemetryStore};

use super::{admin_of, backends};

struct Threshold {
    rt: Arc<PluginRuntime>,
    plugin: Arc<CompiledPlugin>,
}

#[async_trait]
impl ::alerting::Plugins for Threshold {
    async fn plugin(&self, _: &str, _: &str) -> Result<Arc<CompiledPlugin>, String> {
        Ok(Arc::clone(&self.plugin))
    }

    fn runtime(&self) -> Arc<PluginRuntime> {
        Arc::clone(&self.rt)
    }

    async fn report(&self, _: &str, _: &str, _: Result<(), &plugin_runtime::PluginError>) {}
}

fn queue_depth(at_ns: u64, value: f64) -> ExportMetricsServiceRequest {
    let service = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("checkout".into())),
        }),
        ..KeyValue::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![service],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: at_ns,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..NumberDataPoint::default()
                        }],
                    })),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

/// What the store holds of the rule: (evaluations, the checkout instance's state).
async fn stored(alerts: &dyn AlertStore, rule_id: &str) -> (i64, String) {
    let r = alerts
        .rule_state(rule_id)
        .await
        .expect("read")
        .expect("a state");
    let state: alert::RuleState = serde_json::from_str(&r.instances).expect("instances");
    let checkout = state
        .instances
        .values()
        .next()
        .map_or_else(String::new, |i| i.state.as_str().to_string());
    (r.evaluations, checkout)
}

#[tokio::test]
async fn an_alert_change_is_stored_at_once_and_values_and_counts_with_the_next_batch() {
    let rt = Arc::new(PluginRuntime::new(RuntimeConfig::default()).expect("runtime"));
    let bytes = builtin_plugins::ALL
        .iter()
        .find(|(p, _)| p.ends_with("threshold"))
        .map(|(_, b)| *b)
        .expect("built-in threshold");
    let plugins = Arc::new(Threshold {
        plugin: Arc::new(rt.compile(bytes, None).expect("compile")),
        rt,
    });
    for b in backends().await {
        let admin = admin_of(b.store.as_ref()).await;
        let scope = admin.scope.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = storage_embedded::EmbeddedStore::open(
            storage_embedded::EmbeddedConfig::new(dir.path().join("telemetry")),
            None,
        )
        .expect("store");
        let now_ms = chrono::Utc::now().timestamp_millis();
        let at_ns = u64::try_from(now_ms - 60_000).expect("positive") * 1_000_000;
        let converted = otlp::metrics_to_batches(
            &queue_depth(at_ns, 12.0),
            &scope,
            &otlp::Limits::default(),
            at_ns,
        )
        .expect("convert");
        store.write(converted.batches).await.expect("write");
        let telemetry: Arc<dyn TelemetryStore> = store.clone();

        let spec: alert::spec::RuleSpec = serde_json::from_value(serde_json::json!({
            "name": "QueueDeep",
            "queries": [{"name": "A", "range": "1h", "sql":
                "SELECT service_name, max(value) AS depth FROM metrics_v3 \
                 WHERE metric_name = 'queue_depth' AND timestamp >= $__from \
                 AND timestamp < $__to GROUP BY service_name"}],
            "condition": {"plugin": "builtin-threshold",
                          "config": {"thresholds": [{"op": "above", "value": 5}]}},
            "for": "2m",
        }))
        .expect("rule");
        let rule = b
            .alerts
            .create_rule(&scope, ::alerting::rule_write(&spec), &[], None)
            .await
            .expect("create");
        let id = rule.alert_rule_id.clone();
        let evaluator = ::alerting::Evaluator::new(
            Arc::clone(&b.alerts),
            telemetry,
            plugins.clone(),
            query::QueryLimits::default(),
        );

        let evaluate = async |after_ms: i64| {
            evaluator
                .evaluate(&rule, now_ms + after_ms, 0)
                .await
                .expect("evaluate")
                .transitions
                .len()
        };
        let in_store = async || stored(b.alerts.as_ref(), &id).await;
        let save = async || evaluator.save_states().await.expect("save");

        // The first evaluation: pending, stored at once.
        assert_eq!(evaluate(0).await, 1, "{}", b.name);
        assert_eq!(in_store().await, (1, "pending".into()), "{}", b.name);
        // Still pending: nothing but the count moved, so the store waits for the batch.
        evaluate(30_000).await;
        assert_eq!(in_store().await, (1, "pending".into()), "{}: later", b.name);
        assert!(!evaluator.saving_due(), "{}", b.name);
        assert_eq!(save().await, 1, "{}", b.name);
        assert_eq!(in_store().await, (2, "pending".into()), "{}", b.name);
        // Once more in waiting, then `for` has passed: firing is stored at once, over the
        // waiting state, and nothing older is written after it.
        evaluate(60_000).await;
        assert_eq!(evaluate(180_000).await, 1, "{}", b.name);
        assert_eq!(in_store().await, (4, "firing".into()), "{}", b.name);
        assert_eq!(save().await, 0, "{}", b.name);
        assert_eq!(in_store().await, (4, "firing".into()), "{}", b.name);
    }
}
