//! What users write: rules, groups and silences are checked field by field, with paths.

use alert::spec::{GroupSpec, RuleSpec, Schedule, SilenceSpec, parse_duration, phase_ms};
use serde_json::json;

fn rule(v: serde_json::Value) -> RuleSpec {
    serde_json::from_value(v).expect("parses")
}

fn paths(errors: &[alert::spec::FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn durations_read_like_prometheus() {
    assert_eq!(parse_duration("90s"), Ok(90_000));
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration("250ms"), Ok(250));
    assert_eq!(parse_duration("2d"), Ok(172_800_000));
    assert_eq!(parse_duration("0"), Ok(0));
    for bad in ["", "5", "m", "5x", "-5m", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_good_rule_passes_and_gives_its_lifecycle() {
    let r = rule(json!({
        "name": "High error rate",
        "queries": [{"name": "A", "sql": "SELECT 1", "range": "10m"}],
        "condition": {"plugin": "builtin-threshold", "config": {"op": "above", "value": 5}},
        "for": "5m", "keep_firing_for": "2m", "recovery": {"below": 3},
        "no_data": "ok", "error": "keep_last", "severity": "critical",
        "labels": {"team": "db"},
    }));
    assert_eq!(r.check(), vec![]);
    let l = r.lifecycle();
    assert_eq!(l.for_ms, 300_000);
    assert_eq!(l.keep_firing_for_ms, 120_000);
    assert_eq!(l.recovery, Some(alert::Recovery::Below(3.0)));
    assert_eq!(l.no_data, alert::Policy::Normal);
    assert_eq!(l.error, alert::Policy::KeepLast);
    let labels = r.static_labels();
    assert!(labels.contains(&("alertname".into(), "High error rate".into())));
    assert!(labels.contains(&("severity".into(), "critical".into())));
    assert!(labels.contains(&("team".into(), "db".into())));
}

#[test]
fn every_bad_field_is_named_by_its_path() {
    let r = rule(json!({
        "name": "",
        "queries": [{"name": "A", "sql": " "}, {"name": "A", "sql": "SELECT 1", "range": "forever"}],
        "condition": {"plugin": "builtin-threshold"},
        "for": "5 minutes", "interval": "500ms", "severity": "loud",
        "schedule": "* * * * *", "recovery": {"below": 1, "above": 2},
        "labels": {"1bad": "x"},
    }));
    let errors = r.check();
    let p = paths(&errors);
    for want in [
        "/name",
        "/queries/0/sql",
        "/queries/1/name",
        "/queries/1/range",
        "/for",
        "/interval",
        "/severity",
        "/schedule",
        "/recovery",
        "/labels/1bad",
    ] {
        assert!(p.contains(&want), "{want} missing from {errors:?}");
    }
    let unknown = serde_json::from_value::<RuleSpec>(json!({"name": "x", "colour": "red"}));
    assert!(
        unknown
            .expect_err("unknown field")
            .to_string()
            .contains("colour")
    );
}

#[test]
fn composite_rules_have_no_queries_of_their_own() {
    let ok = rule(json!({"name": "both", "composite": {"op": "and", "rules": ["r1", "r2"]}}));
    assert_eq!(ok.check(), vec![]);
    let bad = rule(json!({
        "name": "both", "composite": {"op": "or", "rules": []},
        "queries": [{"name": "A", "sql": "SELECT 1"}],
    }));
    assert_eq!(paths(&bad.check()), vec!["/composite/rules", "/queries"]);
}

#[test]
fn intervals_have_a_stable_phase_and_cron_counts_sunday_as_one() {
    let r = rule(json!({"name": "x", "interval": "1m",
        "queries": [{"name": "A", "sql": "SELECT 1"}], "condition": {"plugin": "p"}}));
    let s = r.schedule("rule-42");
    let phase = phase_ms("rule-42", 60_000);
    assert!((0..60_000).contains(&phase));
    assert_eq!(phase, phase_ms("rule-42", 60_000), "stable");
    assert_ne!(phase, phase_ms("rule-43", 60_000), "spread");
    let t0: i64 = 1_800_000_000_000;
    let first = s.next_after(t0).expect("tick");
    assert_eq!(first.rem_euclid(60_000), phase);
    assert_eq!(s.next_after(first), Some(first + 60_000));
    assert_eq!(s.interval_ms(t0), 60_000);

    // 09:00:00 on Sundays (1 = Sunday): 2026-11-29 is one.
    let c = rule(json!({"name": "x", "schedule": "0 0 9 * * 1",
        "queries": [{"name": "A", "sql": "SELECT 1"}], "condition": {"plugin": "p"}}));
    assert_eq!(c.check(), vec![]);
    let Schedule::Cron(_) = c.schedule("r") else {
        panic!("a cron schedule")
    };
    let from = chrono::DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z")
        .expect("time")
        .timestamp_millis();
    let next = c.schedule("r").next_after(from).expect("tick");
    assert_eq!(
        chrono::DateTime::from_timestamp_millis(next)
            .expect("time")
            .to_rfc3339(),
        "2026-11-29T09:00:00+00:00"
    );
}

#[test]
fn groups_check_matchers_timers_and_windows() {
    let g: GroupSpec = serde_json::from_value(json!({
        "name": "oncall", "matchers": ["severity=\"critical\"", "team=~db|infra"],
        "group_by": ["alertname", "service"], "group_wait": "10s",
        "mute_time_windows": [{"times": [[0, 360]], "location": "Europe/Paris"}],
        "inhibit": [{"source": ["severity=critical"], "target": ["severity=warning"], "equal": ["service"]}],
    }))
    .expect("parses");
    assert_eq!(g.check(), vec![]);
    assert_eq!(g.settings().group_wait_ms, 10_000);
    assert_eq!(g.matchers().len(), 2);
    assert_eq!(g.inhibitions().len(), 1);
    let bad: GroupSpec = serde_json::from_value(json!({
        "name": "x", "matchers": ["team~db"], "group_interval": "0s",
        "mute_time_windows": [{"location": "Mars/Olympus"}],
    }))
    .expect("parses");
    assert_eq!(
        paths(&bad.check()),
        vec!["/matchers/0", "/group_interval", "/mute_time_windows/0"]
    );
}

#[test]
fn silences_need_matchers_and_an_end() {
    let now = 1_800_000_000_000;
    let s: SilenceSpec =
        serde_json::from_value(json!({"matchers": ["service=api"], "duration": "2h"}))
            .expect("parses");
    let (m, start, end) = s.window(now).expect("valid");
    assert_eq!((m.len(), start, end), (1, now, now + 7_200_000));
    let s: SilenceSpec =
        serde_json::from_value(json!({"matchers": ["service=~.*"]})).expect("parses");
    let errors = s.window(now).expect_err("invalid");
    assert_eq!(paths(&errors), vec!["/ends_at", "/matchers"]);
}
