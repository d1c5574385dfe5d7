//! `telemetryflow plugin check|run` as an author uses them, on components built from the
//! workspace's plugin crates.

use std::process::Command;

use serde_json::Value;

fn component(package: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let bytes = crate::guests::guest(package, std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let path = dir.join(format!("{package}.wasm"));
    std::fs::write(&path, bytes).expect("write component");
    path
}

fn telemetryflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_telemetryflow-e2e"))
        .args(args)
        .env("TELEMETRYFLOW_LOG", "warn")
        .output()
        .expect("run telemetryflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_check_describes_a_component_or_says_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let threshold = component("condition-threshold", dir.path());
    let file = threshold.to_str().expect("path");
    let (ok, out, err) = telemetryflow(&["plugin", "check", file]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["world"], "alert-condition");
    assert_eq!(v["name"], "threshold");
    assert!(
        v["config_schema"]["properties"]["thresholds"].is_object(),
        "{v}"
    );
    assert!(
        v["exports"]
            .as_array()
            .expect("exports")
            .iter()
            .any(|e| e == "telemetryflow:plugin/condition@0.1.0"),
        "{v}"
    );

    let (ok, _, err) = telemetryflow(&["plugin", "check", "--kind", "widget-transform", file]);
    assert!(!ok);
    assert!(
        err.contains("implements the alert-condition world"),
        "{err}"
    );
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").expect("write");
    let (ok, _, err) = telemetryflow(&["plugin", "check", junk.to_str().expect("path")]);
    assert!(!ok);
    assert!(err.contains("not a WebAssembly component"), "{err}");
}

#[test]
fn plugin_run_evaluates_a_condition_on_local_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let threshold = component("condition-threshold", dir.path());
    let rows = dir.path().join("rows.json");
    std::fs::write(
        &rows,
        r#"[{"service":"checkout","p99_ms":900.0},{"service":"search","p99_ms":120.0}]"#,
    )
    .expect("rows");
    let config = r#"{"thresholds":[{"severity":"critical","op":"above","value":500}]}"#;
    let (ok, out, err) = telemetryflow(&[
        "plugin",
        "run",
        threshold.to_str().expect("path"),
        "--input",
        rows.to_str().expect("path"),
        "--config",
        config,
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let series = v["series"].as_array().expect("series");
    let checkout = series
        .iter()
        .find(|s| s["labels"]["service"] == "checkout")
        .expect("checkout");
    assert_eq!(checkout["status"], "alerting");
    assert_eq!(checkout["severity"], "critical");
    let search = series
        .iter()
        .find(|s| s["labels"]["service"] == "search")
        .expect("search");
    assert_eq!(search["status"], "ok");

    let (ok, _, err) = telemetryflow(&[
        "plugin",
        "run",
        threshold.to_str().expect("path"),
        "--input",
        rows.to_str().expect("path"),
        "--config",
        r#"{"thresholds":[{"op":"between","value":1}]}"#,
    ]);
    assert!(!ok);
    assert!(err.contains("/thresholds/0/value2"), "{err}");

    let hostile = component("hostile-condition", dir.path());
    let (ok, _, err) = telemetryflow(&[
        "plugin",
        "run",
        hostile.to_str().expect("path"),
        "--input",
        rows.to_str().expect("path"),
        "--config",
        r#"{"mode":"loop"}"#,
    ]);
    assert!(!ok);
    assert!(err.contains("time budget"), "{err}");
}
