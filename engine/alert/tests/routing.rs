//! Matchers, silences, inhibition, mute windows, and the timing of grouped notifications.

use alert::dispatch::{Alert, Dispatcher, GroupSettings, Notification, Status};
use alert::route::{Inhibition, Matcher, Op, Silence, TimeWindow, inhibited, silenced_by};

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn m(text: &str) -> Matcher {
    Matcher::parse(text).expect("matcher")
}

#[test]
fn matchers_compare_like_alertmanager() {
    let l = labels(&[("team", "db"), ("env", "prod-eu")]);
    assert!(m("team=db").matches(&l));
    assert!(m(r#"team="db""#).matches(&l));
    assert!(!m("team!=db").matches(&l));
    assert!(m(r#"env=~"prod-.*""#).matches(&l));
    assert!(!m(r#"env=~"prod""#).matches(&l), "regexes are anchored");
    assert!(m(r#"env!~"staging|dev""#).matches(&l));
    assert!(
        m(r#"owner="""#).matches(&l),
        "a missing label is the empty string"
    );
    assert!(!m(r#"owner!="""#).matches(&l));
    assert!(Matcher::parse("team").is_err());
    assert!(Matcher::parse(r#"env=~"(""#).is_err());
    assert!(Matcher::parse(r#"bad name=x"#).is_err());
    assert_eq!(m("env=~a|b").op, Op::Re);
    assert_eq!(m(r#"team="db""#).to_string(), r#"team="db""#);
}

#[test]
fn silences_mute_matching_alerts_while_active() {
    let s = vec![Silence {
        id: "s1".into(),
        matchers: vec![m("team=db"), m(r#"severity=~"warning|info""#)],
        starts_at_ms: 1_000,
        ends_at_ms: 5_000,
    }];
    let warn = labels(&[("team", "db"), ("severity", "warning")]);
    let crit = labels(&[("team", "db"), ("severity", "critical")]);
    assert_eq!(
        silenced_by(&s, &warn, 2_000).map(|s| s.id.as_str()),
        Some("s1")
    );
    assert!(silenced_by(&s, &crit, 2_000).is_none());
    assert!(silenced_by(&s, &warn, 500).is_none(), "not started");
    assert!(silenced_by(&s, &warn, 5_000).is_none(), "expired");
}

#[test]
fn a_firing_critical_inhibits_warnings_of_the_same_cluster() {
    let rules = vec![Inhibition {
        source: vec![m("severity=critical")],
        target: vec![m("severity=warning")],
        equal: vec!["cluster".into()],
    }];
    let crit_a = labels(&[("severity", "critical"), ("cluster", "a")]);
    let warn_a = labels(&[("severity", "warning"), ("cluster", "a")]);
    let warn_b = labels(&[("severity", "warning"), ("cluster", "b")]);
    let firing = vec![crit_a.clone(), warn_a.clone(), warn_b.clone()];
    assert!(inhibited(&rules, &warn_a, &firing));
    assert!(!inhibited(&rules, &warn_b, &firing));
    assert!(!inhibited(&rules, &crit_a, &firing));
    assert!(!inhibited(&rules, &warn_a, std::slice::from_ref(&warn_a)));
}

#[test]
fn mute_windows_follow_their_time_zone() {
    // Weekdays 09:00-17:00 in Paris.
    let office = TimeWindow {
        times: vec![(9 * 60, 17 * 60)],
        weekdays: vec![1, 2, 3, 4, 5],
        location: Some("Europe/Paris".into()),
        ..TimeWindow::default()
    };
    office.check().expect("valid");
    // Monday 2026-01-05 08:30 UTC is 09:30 in Paris (UTC+1 in winter).
    let monday_0830_utc = 1_767_601_800_000;
    assert!(office.contains(monday_0830_utc));
    // 07:30 UTC is 08:30 in Paris: outside.
    assert!(!office.contains(monday_0830_utc - 3_600_000));
    // Saturday is outside whatever the hour.
    assert!(!office.contains(monday_0830_utc - 2 * 86_400_000));
    // In summer Paris is UTC+2: Monday 2026-07-06 07:30 UTC is 09:30 there.
    assert!(office.contains(1_783_323_000_000));
    let last_day = TimeWindow {
        days_of_month: vec![-1],
        ..TimeWindow::default()
    };
    assert!(last_day.contains(1_769_817_600_000), "2026-01-31");
    assert!(!last_day.contains(1_769_731_200_000), "2026-01-30");
    assert!(
        TimeWindow {
            location: Some("Mars/Olympus".into()),
            ..TimeWindow::default()
        }
        .check()
        .is_err()
    );
    assert!(
        TimeWindow {
            times: vec![(600, 500)],
            ..TimeWindow::default()
        }
        .check()
        .is_err()
    );
}

fn alert(name: &str, status: Status, at: i64) -> Alert {
    let l = labels(&[("alertname", "HighLatency"), ("service", name)]);
    Alert {
        fingerprint: alert::fingerprint(&l),
        labels: l,
        annotations: Vec::new(),
        status,
        starts_at_ms: at,
        ends_at_ms: (status == Status::Resolved).then_some(at),
        value: None,
    }
}

/// Feeds `events` (time in seconds, service, status) and ticks every 10 s up to `until` s;
/// returns (second, status, services) of each notification.
fn simulate(
    settings: &GroupSettings,
    events: &[(i64, &str, Status)],
    until: i64,
    muted: &dyn Fn(&Alert) -> bool,
) -> Vec<(i64, Status, Vec<String>)> {
    let mut d = Dispatcher::default();
    let mut sent: Vec<Notification> = Vec::new();
    let mut at = Vec::new();
    for t in (0..=until).step_by(10) {
        for (when, name, status) in events {
            if *when == t {
                d.insert(settings, alert(name, *status, t * 1000), t * 1000);
            }
        }
        for n in d.due(settings, t * 1000, muted) {
            at.push(t);
            sent.push(n);
        }
    }
    sent.iter()
        .zip(at)
        .map(|(n, t)| {
            let names = n
                .alerts
                .iter()
                .map(|a| {
                    let svc = &a.labels[1].1;
                    match a.status {
                        Status::Firing => svc.clone(),
                        Status::Resolved => format!("{svc}(resolved)"),
                    }
                })
                .collect();
            let mut names: Vec<String> = names;
            names.sort();
            (t, n.status, names)
        })
        .collect()
}

fn settings() -> GroupSettings {
    GroupSettings {
        group_by: vec!["alertname".into()],
        group_wait_ms: 30_000,
        group_interval_ms: 300_000,
        repeat_interval_ms: 3_600_000,
        send_resolved: true,
    }
}

#[test]
fn group_wait_interval_repeat_and_resolve() {
    let got = simulate(
        &settings(),
        &[
            (0, "api", Status::Firing),
            (20, "db", Status::Firing),
            (60, "web", Status::Firing),
            (700, "api", Status::Resolved),
            (4000, "db", Status::Resolved),
            (4000, "web", Status::Resolved),
        ],
        5000,
        &|_| false,
    );
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            // group_wait: api and db arrive together.
            (30, Status::Firing, s(&["api", "db"])),
            // web joins: sent at the next group_interval tick.
            (330, Status::Firing, s(&["api", "db", "web"])),
            // api resolves at 700 s: sent at the group's next tick (330 + 2 × 300).
            (930, Status::Firing, s(&["api(resolved)", "db", "web"])),
            // the rest resolve at 4000 s: sent at the next tick, before a repeat was due.
            (
                4230,
                Status::Resolved,
                s(&["db(resolved)", "web(resolved)"])
            ),
        ]
    );
}

#[test]
fn unchanged_groups_repeat_and_nothing_is_sent_twice() {
    let got = simulate(&settings(), &[(0, "api", Status::Firing)], 8000, &|_| false);
    let times: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        times,
        vec![30, 3630, 7230],
        "group_wait, then every repeat_interval"
    );
    // Flapping within an interval sends nothing new.
    let flap = simulate(
        &settings(),
        &[
            (0, "api", Status::Firing),
            (100, "api", Status::Resolved),
            (110, "api", Status::Firing),
        ],
        600,
        &|_| false,
    );
    assert_eq!(flap.len(), 1, "{flap:?}");
}

#[test]
fn muted_alerts_are_left_out_and_resolved_can_be_skipped() {
    let muted = |a: &Alert| a.labels[1].1 == "db";
    let got = simulate(
        &settings(),
        &[(0, "api", Status::Firing), (0, "db", Status::Firing)],
        100,
        &muted,
    );
    assert_eq!(got, vec![(30, Status::Firing, vec!["api".to_string()])]);
    let quiet = GroupSettings {
        send_resolved: false,
        ..settings()
    };
    let got = simulate(
        &quiet,
        &[(0, "api", Status::Firing), (100, "api", Status::Resolved)],
        1000,
        &|_| false,
    );
    assert_eq!(got.len(), 1, "no resolved notification: {got:?}");
}

#[test]
fn grouping_by_every_label_or_none() {
    let per_alert = GroupSettings {
        group_by: vec!["...".into()],
        ..settings()
    };
    let got = simulate(
        &per_alert,
        &[(0, "api", Status::Firing), (0, "db", Status::Firing)],
        100,
        &|_| false,
    );
    assert_eq!(got.len(), 2);
    let one = GroupSettings {
        group_by: Vec::new(),
        ..settings()
    };
    let got = simulate(
        &one,
        &[(0, "api", Status::Firing), (0, "db", Status::Firing)],
        100,
        &|_| false,
    );
    assert_eq!(got.len(), 1);
}
