//! Specs survive the trip through rows; annotations fill in; the alerts a state notifies.

use alert::spec::{GroupSpec, RuleSpec};
use alert::{Instance, RuleState, State};
use serde_json::json;

fn record(w: &storage::RuleWrite) -> storage::AlertRuleRecord {
    let now = chrono::Utc::now();
    storage::AlertRuleRecord {
        alert_rule_id: "r1".into(),
        organization_id: "o".into(),
        workspace_id: "w".into(),
        tenant_id: "t".into(),
        name: w.name.clone(),
        description: w.description.clone(),
        query_type: w.query_type.clone(),
        query_config: w.query_config.clone(),
        condition_config: w.condition_config.clone(),
        settings: w.settings.clone(),
        severity: w.severity.clone(),
        cooldown_minutes: w.cooldown_minutes,
        is_enabled: w.is_enabled,
        last_evaluated_at: None,
        created_by: None,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

#[test]
fn rules_and_groups_round_trip_through_their_rows() {
    let spec: RuleSpec = serde_json::from_value(json!({
        "name": "cpu", "queries": [{"name": "A", "sql": "SELECT 1", "range": "10m"}],
        "condition": {"plugin": "builtin-threshold", "config": {"thresholds": [{"op": "above", "value": 1}]}},
        "for": "5m", "labels": {"team": "db"}, "annotations": {"summary": "x"},
        "schedule": "0 */5 * * * *", "cooldown_minutes": 3, "notification_groups": ["g1"],
    }))
    .expect("spec");
    let w = alerting::rule_write(&spec);
    assert_eq!((w.cooldown_minutes, w.severity.as_str()), (3, "warning"));
    assert!(!w.settings.contains("\"queries\""), "{}", w.settings);
    let back = alerting::rule_spec(&record(&w), vec!["g1".into()]).expect("back");
    assert_eq!(back, spec);

    let composite: RuleSpec = serde_json::from_value(
        json!({"name": "both", "composite": {"op": "or", "rules": ["a", "b"]}}),
    )
    .expect("spec");
    let back =
        alerting::rule_spec(&record(&alerting::rule_write(&composite)), vec![]).expect("back");
    assert_eq!(back, composite);

    let group: GroupSpec = serde_json::from_value(json!({
        "name": "oncall", "matchers": ["team=db"], "group_wait": "10s",
        "mute_time_windows": [{"weekdays": [0, 6]}],
    }))
    .expect("group");
    let gw = alerting::group_write(&group);
    let now = chrono::Utc::now();
    let row = storage::GroupRecord {
        group_id: "g".into(),
        workspace_id: "w".into(),
        tenant_id: "t".into(),
        name: gw.name.clone(),
        description: gw.description.clone(),
        routing: gw.routing.clone(),
        is_active: gw.is_active,
        created_at: now,
        updated_at: now,
    };
    assert_eq!(alerting::group_spec(&row).expect("back"), group);
}

#[test]
fn annotations_fill_labels_and_values() {
    let labels = vec![
        ("service_name".to_string(), "checkout".to_string()),
        ("severity".to_string(), "critical".to_string()),
    ];
    assert_eq!(
        alerting::render_annotation(
            "{{ $labels.service_name }} is {{$severity}} at {{ $value }}; {{ other }} {{ $labels.none }}.",
            &labels,
            Some(12.5)
        ),
        "checkout is critical at 12.5; {{ other }} ."
    );
    assert_eq!(
        alerting::render_annotation("no {{ end", &labels, None),
        "no {{ end"
    );
}

#[test]
fn notifications_carry_firing_and_recently_resolved_alerts() {
    let inst = |state, fired: Option<i64>, resolved: Option<i64>| Instance {
        labels: vec![("a".into(), "b".into())],
        state,
        since_ms: 10,
        fired_at_ms: fired,
        resolved_at_ms: resolved,
        quiet_since_ms: None,
        value: Some(1.0),
        severity: None,
        annotations: vec![],
        missing: 0,
        last_error: None,
    };
    let mut s = RuleState::default();
    s.instances
        .insert("f1".into(), inst(State::Firing, Some(5), None));
    s.instances
        .insert("f2".into(), inst(State::Pending, None, None));
    s.instances
        .insert("f3".into(), inst(State::Normal, Some(5), Some(20)));
    s.instances
        .insert("f4".into(), inst(State::Normal, None, None));
    let alerts = alerting::alerts_of(&s);
    let got: Vec<(&str, alert::dispatch::Status, i64, Option<i64>)> = alerts
        .iter()
        .map(|a| {
            (
                a.fingerprint.as_str(),
                a.status,
                a.starts_at_ms,
                a.ends_at_ms,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("f1", alert::dispatch::Status::Firing, 5, None),
            ("f3", alert::dispatch::Status::Resolved, 5, Some(20)),
        ]
    );
}
