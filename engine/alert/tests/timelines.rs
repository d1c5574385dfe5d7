//! The state machine, told as timelines. Each line is an evaluation: its time, what the
//! condition saw per series (`a=alert:90` — series `a` alerting with value 90; `ok`, `nodata`,
//! `error`; a series not named is absent), or `FAIL` for an evaluation that failed as a whole;
//! after `|`, the states expected then. Instances not named after `|` must be normal or gone.

use alert::{
    Lifecycle, Observation, Outcome, Policy, Recovery, RuleState, State, Transition, Verdict,
};

fn minutes(t: &str) -> i64 {
    let n: i64 = t.trim_end_matches('m').parse().expect("minutes");
    n * 60_000
}

fn state_of(s: &str) -> State {
    match s {
        "normal" => State::Normal,
        "pending" => State::Pending,
        "firing" => State::Firing,
        "nodata" => State::NoData,
        "error" => State::Error,
        other => panic!("unknown state {other}"),
    }
}

fn outcome(seen: &str) -> Outcome {
    if seen.trim() == "FAIL" {
        return Outcome::Failed("the query timed out".into());
    }
    let series = seen
        .split_whitespace()
        .map(|tok| {
            let (name, rest) = tok.split_once('=').expect("series=verdict");
            let (verdict, value) = match rest.split_once(':') {
                Some((v, x)) => (v, Some(x.parse::<f64>().expect("value"))),
                None => (rest, None),
            };
            Observation {
                labels: vec![("series".into(), name.into())],
                verdict: match verdict {
                    "alert" => Verdict::Alerting,
                    "ok" => Verdict::Ok,
                    "nodata" => Verdict::NoData,
                    "error" => Verdict::Error,
                    other => panic!("unknown verdict {other}"),
                },
                value,
                severity: None,
                annotations: Vec::new(),
            }
        })
        .collect();
    Outcome::Series(series)
}

/// Runs a timeline from `state`, checking each line; returns every transition.
fn run_from(state: &mut RuleState, l: &Lifecycle, timeline: &str) -> Vec<Transition> {
    let mut all = Vec::new();
    for line in timeline.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (left, expect) = line.split_once('|').expect("a | in every line");
        let (time, seen) = left.trim().split_once(' ').unwrap_or((left.trim(), ""));
        let now = minutes(time);
        all.extend(state.apply(l, &outcome(seen), now));
        let mut named = Vec::new();
        for tok in expect.split_whitespace() {
            let (name, st) = tok.split_once('=').expect("series=state");
            let labels = if name == "_" {
                Vec::new()
            } else {
                vec![("series".to_string(), name.to_string())]
            };
            let got = state
                .instances
                .get(&alert::fingerprint(&labels))
                .map_or(State::Normal, |i| i.state);
            assert_eq!(got, state_of(st), "at {time}: {name} in line `{line}`");
            named.push(alert::fingerprint(&labels));
        }
        for (fp, i) in &state.instances {
            if !named.contains(fp) {
                assert_eq!(
                    i.state,
                    State::Normal,
                    "at {time}: {:?} in line `{line}`",
                    i.labels
                );
            }
        }
    }
    all
}

fn run(l: &Lifecycle, timeline: &str) -> Vec<Transition> {
    run_from(&mut RuleState::default(), l, timeline)
}

fn lifecycle(for_m: i64, keep_m: i64) -> Lifecycle {
    Lifecycle {
        for_ms: for_m * 60_000,
        keep_firing_for_ms: keep_m * 60_000,
        ..Lifecycle::default()
    }
}

#[test]
fn pending_for_then_firing_then_resolved() {
    let t = run(
        &lifecycle(2, 0),
        "
        0m a=alert:90 b=ok:1 | a=pending
        1m a=alert:91 b=ok:1 | a=pending
        2m a=alert:95 b=ok:1 | a=firing
        3m a=alert:92 b=ok:1 | a=firing
        4m a=ok:10    b=ok:1 |
        ",
    );
    let summary: Vec<(State, State, i64)> = t.iter().map(|t| (t.from, t.to, t.at_ms)).collect();
    assert_eq!(
        summary,
        vec![
            (State::Normal, State::Pending, 0),
            (State::Pending, State::Firing, 120_000),
            (State::Firing, State::Normal, 240_000),
        ]
    );
    assert!(t[1].reason.contains("for 2m"), "{}", t[1].reason);
    assert!(t[2].is_resolve());
    assert_eq!(t[1].value, Some(95.0));
}

#[test]
fn without_for_an_alert_fires_at_once() {
    run(
        &lifecycle(0, 0),
        "
        0m a=alert | a=firing
        1m a=ok    |
        ",
    );
}

#[test]
fn flapping_never_outlasts_for() {
    let t = run(
        &lifecycle(2, 0),
        "
        0m a=alert | a=pending
        1m a=ok    |
        2m a=alert | a=pending
        3m a=ok    |
        4m a=alert | a=pending
        5m a=alert | a=pending
        6m a=alert | a=firing
        ",
    );
    assert_eq!(t.iter().filter(|t| t.to == State::Firing).count(), 1);
}

#[test]
fn keep_firing_for_rides_out_a_gap() {
    let l = lifecycle(0, 2);
    let t = run(
        &l,
        "
        0m a=alert | a=firing
        1m a=ok    | a=firing
        2m a=alert | a=firing
        3m a=ok    | a=firing
        4m a=ok    | a=firing
        5m a=ok    |
        ",
    );
    assert_eq!(t.len(), 2, "one firing and one resolve: {t:?}");
    assert_eq!(t[1].at_ms, 300_000);
    assert!(t[1].reason.contains("for 2m"), "{}", t[1].reason);
}

#[test]
fn a_recovery_threshold_holds_firing_until_the_value_recovers() {
    let l = Lifecycle {
        recovery: Some(Recovery::Below(50.0)),
        ..lifecycle(0, 0)
    };
    let t = run(
        &l,
        "
        0m a=alert:90 | a=firing
        1m a=ok:70    | a=firing
        2m a=ok:55    | a=firing
        3m a=ok:40    |
        ",
    );
    assert!(t[1].reason.contains("below 50"), "{}", t[1].reason);
}

#[test]
fn no_data_under_each_policy() {
    let with = |p: Policy| Lifecycle {
        no_data: p,
        ..lifecycle(1, 0)
    };
    run(
        &with(Policy::OwnState),
        "
        0m a=nodata | a=nodata
        1m a=ok     |
        ",
    );
    run(
        &with(Policy::Alerting),
        "
        0m a=nodata | a=pending
        1m a=nodata | a=firing
        ",
    );
    run(
        &with(Policy::Normal),
        "
        0m a=alert  | a=pending
        1m a=nodata |
        ",
    );
    run(
        &with(Policy::KeepLast),
        "
        0m a=alert  | a=pending
        1m a=alert  | a=firing
        2m a=nodata | a=firing
        3m a=nodata | a=firing
        4m a=ok     |
        ",
    );
}

#[test]
fn errors_under_each_policy() {
    let with = |p: Policy| Lifecycle {
        error: p,
        ..lifecycle(0, 0)
    };
    // A failed evaluation with no instance yet: one instance without labels carries it.
    let t = run(
        &with(Policy::OwnState),
        "
        0m FAIL | _=error
        1m a=ok |
        ",
    );
    assert!(
        t[0].reason.contains("the query timed out"),
        "{}",
        t[0].reason
    );
    run(
        &with(Policy::OwnState),
        "
        0m a=alert b=ok | a=firing
        1m FAIL         | a=error b=error
        2m a=alert b=ok | a=firing
        ",
    );
    run(
        &with(Policy::KeepLast),
        "
        0m a=alert | a=firing
        1m FAIL    | a=firing
        2m a=error | a=firing
        ",
    );
    run(
        &with(Policy::Alerting),
        "
        0m a=ok    |
        1m FAIL    | a=firing
        2m a=ok    |
        ",
    );
    run(
        &with(Policy::Normal),
        "
        0m a=alert | a=firing
        1m FAIL    |
        ",
    );
}

#[test]
fn a_vanished_series_resolves_after_n_evaluations() {
    let t = run(
        &lifecycle(0, 0),
        "
        0m a=alert b=alert | a=firing b=firing
        1m b=alert         | a=firing b=firing
        2m b=alert         | b=firing
        ",
    );
    let gone = t.iter().find(|t| t.to == State::Normal).expect("resolved");
    assert!(
        gone.reason.contains("gone (2 evaluations"),
        "{}",
        gone.reason
    );
    run(
        &lifecycle(5, 0),
        "
        0m a=alert | a=pending
        1m         |
        ",
    );
}

#[test]
fn state_survives_a_restart() {
    let l = lifecycle(3, 1);
    let first = "
        0m a=alert:1 b=alert:2 | a=pending b=pending
        1m a=alert:1 b=alert:2 | a=pending b=pending
        ";
    let second = "
        2m a=alert:1 b=ok:2 | a=pending
        3m a=alert:1        | a=firing
        4m a=ok:1           | a=firing
        5m a=ok:1           |
        ";
    let mut straight = RuleState::default();
    let mut expected = run_from(&mut straight, &l, first);
    expected.extend(run_from(&mut straight, &l, second));

    let mut before = RuleState::default();
    let mut got = run_from(&mut before, &l, first);
    let saved = serde_json::to_string(&before).expect("serialize");
    let mut restored: RuleState = serde_json::from_str(&saved).expect("deserialize");
    assert_eq!(restored, before);
    got.extend(run_from(&mut restored, &l, second));
    assert_eq!(got, expected);
    assert_eq!(restored, straight);
}

#[test]
fn resolved_instances_are_kept_for_a_while_then_dropped() {
    let l = Lifecycle {
        resolved_retention_ms: 5 * 60_000,
        ..lifecycle(0, 0)
    };
    let mut s = RuleState::default();
    run_from(
        &mut s,
        &l,
        "
        0m a=alert | a=firing
        1m a=ok    |
        ",
    );
    let a = s.instances.values().next().expect("kept");
    assert_eq!(a.resolved_at_ms, Some(60_000));
    assert_eq!(a.fired_at_ms, Some(0));
    s.apply(&l, &Outcome::Series(Vec::new()), 7 * 60_000);
    assert!(s.instances.is_empty(), "{s:?}");
}

#[test]
fn fingerprints_ignore_label_order() {
    let a = vec![
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "1".to_string()),
    ];
    let b = vec![
        ("a".to_string(), "1".to_string()),
        ("b".to_string(), "2".to_string()),
    ];
    assert_eq!(alert::fingerprint(&a), alert::fingerprint(&b));
    assert_ne!(
        alert::fingerprint(&a),
        alert::fingerprint(&[("a".to_string(), "12".to_string())])
    );
    assert_eq!(alert::fingerprint(&[]).len(), 16);
    assert_eq!(alert::duration(90_000), "90s");
    assert_eq!(alert::duration(300_000), "5m");
    assert_eq!(alert::duration(5_400_000), "1h30m");
}

/// The course of a rule (what the evaluator writes at once) changes with states and their
/// clocks, not with values: a firing series whose value moves keeps its course.
#[test]
fn the_course_moves_with_states_and_clocks_not_with_values() {
    let l = lifecycle(1, 2);
    let mut s = RuleState::default();
    let mut courses = Vec::new();
    for line in [
        "0m a=alert:90 | a=pending",
        "1m a=alert:91 | a=firing",
        "2m a=alert:97 | a=firing",
        "3m a=ok:10    | a=firing",
        "4m a=ok:12    | a=firing",
        "6m a=ok:11    |",
    ] {
        run_from(&mut s, &l, line);
        courses.push(s.course());
    }
    // Pending, then firing: two changes. A new value while firing: the same course. The
    // condition going quiet starts the keep-firing clock: a change; staying quiet: none.
    // Resolving: a change.
    let same: Vec<bool> = courses.windows(2).map(|w| w[0] == w[1]).collect();
    assert_eq!(same, [false, true, false, true, false]);
    assert_ne!(RuleState::default().course(), courses[0]);
}

/// A state is stored without its empty fields and reads back the same; a state stored with
/// them as `null` (as earlier versions wrote it) reads the same too.
#[test]
fn a_state_reads_back_as_it_was_stored_with_or_without_its_empty_fields() {
    let mut s = RuleState::default();
    run_from(
        &mut s,
        &lifecycle(1, 0),
        "
        0m a=alert:90 b=ok:1 | a=pending
        1m a=alert:95 b=ok:1 | a=firing
        ",
    );
    let text = serde_json::to_string(&s).expect("json");
    assert!(!text.contains("null"), "{text}");
    assert_eq!(serde_json::from_str::<RuleState>(&text).expect("reads"), s);
    let mut old: serde_json::Value = serde_json::from_str(&text).expect("json");
    for i in old["instances"].as_object_mut().expect("map").values_mut() {
        let i = i.as_object_mut().expect("instance");
        for k in [
            "fired_at_ms",
            "resolved_at_ms",
            "quiet_since_ms",
            "value",
            "severity",
        ] {
            i.entry(k).or_insert(serde_json::Value::Null);
        }
        i.entry("last_error").or_insert(serde_json::Value::Null);
        i.entry("annotations").or_insert(serde_json::json!([]));
        i.entry("missing").or_insert(serde_json::json!(0));
    }
    assert_eq!(serde_json::from_value::<RuleState>(old).expect("reads"), s);
}
