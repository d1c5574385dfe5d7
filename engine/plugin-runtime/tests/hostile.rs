//! The runtime against real components: a condition that runs and keeps its state, and the
//! same component asked to misbehave (loop, allocate without end, panic, recurse, flood its
//! output). Each bad call fails alone with its reason; the next good call still works.
//!
//! The guest is `plugins/hostile-condition`, built here for `wasm32-wasip2` with plain cargo.

use std::sync::OnceLock;

use plugin_runtime::{
    EvaluationContext, PluginError, PluginKind, PluginRuntime, QueryResult, RuntimeConfig,
    SeriesStatus,
};

#[path = "../../../tests/common/guests.rs"]
mod guests;

fn guest(package: &str) -> Vec<u8> {
    guests::guest(package, std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
}

fn runtime() -> &'static PluginRuntime {
    static RT: OnceLock<PluginRuntime> = OnceLock::new();
    RT.get_or_init(|| PluginRuntime::new(RuntimeConfig::default()).expect("runtime"))
}

fn ctx(config: &str, state: Option<Vec<u8>>) -> EvaluationContext {
    EvaluationContext {
        rule_id: "rule-1".into(),
        evaluation_time_ms: 1_800_000_000_000,
        interval_ms: 60_000,
        range_start_ms: 1_799_999_700_000,
        range_end_ms: 1_800_000_000_000,
        config: config.into(),
        state,
    }
}

fn input(name: &str, bytes: usize) -> QueryResult {
    QueryResult {
        name: name.into(),
        data: vec![0u8; bytes],
    }
}

#[test]
fn a_condition_compiles_describes_itself_runs_and_keeps_its_state() {
    let rt = runtime();
    let plugin = rt
        .compile(
            &guest("hostile-condition"),
            Some(PluginKind::AlertCondition),
        )
        .expect("compiles");
    assert_eq!(plugin.kind, PluginKind::AlertCondition);
    assert_eq!(plugin.metadata.name, "hostile-condition");
    assert!(plugin.metadata.config_schema.contains("\"mode\""));
    assert_eq!(plugin.sha256.len(), 64);

    let config = r#"{"mode":"ok","threshold":100}"#;
    assert!(
        rt.validate_config(&plugin, config)
            .expect("validates")
            .is_empty()
    );
    let errors = rt
        .validate_config(&plugin, r#"{"mode":"fly"}"#)
        .expect("validates");
    assert_eq!(errors[0].path, "/mode");

    let first = rt
        .evaluate(
            &plugin,
            &ctx(config, None),
            &[input("A", 10), input("B", 500)],
        )
        .expect("evaluates");
    assert_eq!(first.series.len(), 2);
    assert_eq!(first.series[0].status, SeriesStatus::Ok);
    assert_eq!(first.series[1].status, SeriesStatus::Alerting);
    assert_eq!(first.series[1].value, Some(500.0));
    let second = rt
        .evaluate(&plugin, &ctx(config, first.state.clone()), &[input("A", 1)])
        .expect("evaluates");
    assert_eq!(
        second.state.as_deref(),
        Some(&b"2"[..]),
        "the state blob comes back"
    );

    // An artifact round-trips through serialize / load_compiled.
    let artifact = plugin.serialize().expect("serialize");
    // SAFETY: the bytes come from `serialize` just above.
    #[allow(unsafe_code)]
    let again = unsafe { rt.load_compiled(&artifact, plugin.sha256.clone()) }.expect("load");
    assert_eq!(again.metadata.name, "hostile-condition");
}

#[test]
fn each_hostile_call_fails_alone_with_its_reason() {
    let rt = runtime();
    let plugin = rt
        .compile(&guest("hostile-condition"), None)
        .expect("compiles");
    let run = |mode: &str| {
        rt.evaluate(
            &plugin,
            &ctx(&format!(r#"{{"mode":"{mode}"}}"#), None),
            &[input("A", 8)],
        )
    };

    match run("loop") {
        Err(PluginError::Deadline { plugin, budget_ms }) => {
            assert_eq!(plugin, "hostile-condition@0.1.0");
            assert_eq!(budget_ms, 200);
        }
        other => panic!("an infinite loop must hit the deadline, got {other:?}"),
    }
    match run("memory") {
        Err(PluginError::OutOfMemory { limit_bytes, .. }) => assert_eq!(limit_bytes, 64 << 20),
        other => panic!("a memory bomb must be reported as out of memory, got {other:?}"),
    }
    match run("panic") {
        Err(PluginError::Panic { message, .. }) => {
            assert!(
                message.contains("boom"),
                "the guest's panic message: {message}"
            );
        }
        other => panic!("a panic must be reported as one, got {other:?}"),
    }
    assert!(
        matches!(run("recursion"), Err(PluginError::StackOverflow { .. })),
        "deep recursion must be a stack overflow"
    );
    match run("huge-output") {
        Err(PluginError::InvalidOutput { message, .. }) => {
            assert!(message.contains("20000 series"))
        }
        other => panic!("too many series must be refused, got {other:?}"),
    }
    assert!(
        matches!(run("nope"), Err(PluginError::Failed { message, .. }) if message.contains("invalid config")),
        "the plugin's own error is passed on"
    );
    // After all that, the plugin and the runtime still work.
    let ok = run("ok").expect("a good call after bad ones");
    assert_eq!(ok.series.len(), 1);
}

#[test]
fn uploads_are_checked_against_the_world_they_claim() {
    let rt = runtime();
    let bytes = guest("hostile-condition");
    let err = rt
        .compile(&bytes, Some(PluginKind::WidgetTransform))
        .expect_err("wrong world");
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.contains("implements the alert-condition world")),
        "{err}"
    );
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let err = rt.compile(&core_module, None).expect_err("a core module");
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.contains("not a WebAssembly component")),
        "{err}"
    );
    let err = rt.compile(b"hello", None).expect_err("garbage");
    assert!(matches!(err, PluginError::Invalid(_)));
    let mut big = bytes.clone();
    big.resize(11 << 20, 0);
    let err = rt.compile(&big, None).expect_err("too big");
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.contains("limit")),
        "{err}"
    );
    let mut truncated = bytes.clone();
    truncated.truncate(bytes.len() / 2);
    assert!(matches!(
        rt.compile(&truncated, None),
        Err(PluginError::Invalid(_))
    ));
}

#[test]
fn a_hundred_concurrent_calls_give_correct_results() {
    let rt = runtime();
    let plugin = rt
        .compile(&guest("hostile-condition"), None)
        .expect("compiles");
    let config = r#"{"mode":"ok","threshold":50}"#;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let plugin = &plugin;
                s.spawn(move || {
                    let e = rt
                        .evaluate(plugin, &ctx(config, None), &[input(&format!("q{i}"), i)])
                        .expect("evaluates");
                    (i, e)
                })
            })
            .collect();
        for h in handles {
            let (i, e) = h.join().expect("thread");
            assert_eq!(e.series.len(), 1);
            assert_eq!(
                e.series[0].labels,
                vec![("query".to_string(), format!("q{i}"))]
            );
            assert_eq!(e.series[0].value, Some(i as f64));
            let expected = if i > 50 {
                SeriesStatus::Alerting
            } else {
                SeriesStatus::Ok
            };
            assert_eq!(e.series[0].status, expected);
        }
    });
}

#[test]
fn a_condition_importing_the_network_is_refused_at_upload() {
    let rt = runtime();
    let err = rt
        .compile(&guest("hostile-imports"), Some(PluginKind::AlertCondition))
        .expect_err("a condition may not import http");
    assert!(
        matches!(&err, PluginError::Invalid(m) if m.contains("may not import telemetryflow:plugin/http")),
        "{err}"
    );
}
