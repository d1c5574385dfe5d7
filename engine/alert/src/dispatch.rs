//! Grouping and timing of notifications, as Alertmanager does it: alerts are gathered into
//! groups by the values of `group_by` labels; a new group waits `group_wait` before its first
//! notification (so related alerts arrive together), later changes go out at most every
//! `group_interval`, and an unchanged firing group is notified again after `repeat_interval`.
//! A notification log per group (what was last sent) keeps the same set of alerts from being
//! sent twice. Pure: the caller feeds alerts and the time, and sends what comes back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Labels;

/// The timers and grouping of a notification group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Labels that split alerts into groups; `["..."]` groups by every label (one group per
    /// alert); empty puts all alerts in one group.
    pub group_by: Vec<String>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    pub send_resolved: bool,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            group_by: vec!["alertname".into()],
            group_wait_ms: 30_000,
            group_interval_ms: 5 * 60_000,
            repeat_interval_ms: 4 * 3_600_000,
            send_resolved: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

/// An alert as notifications carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub labels: Labels,
    pub annotations: Labels,
    pub status: Status,
    pub starts_at_ms: i64,
    pub ends_at_ms: Option<i64>,
    pub value: Option<f64>,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable for the group (PagerDuty's `dedup_key`, Alertmanager's `groupKey`).
    pub group_key: String,
    pub group_labels: Labels,
    pub status: Status,
    pub alerts: Vec<Alert>,
    /// The same for every retry of this notification.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Group {
    labels: Labels,
    alerts: BTreeMap<String, Alert>,
    next_flush_ms: i64,
    flushed: bool,
    /// What the last notification carried: firing and resolved fingerprints, and when.
    sent_firing: BTreeSet<String>,
    sent_resolved: BTreeSet<String>,
    sent_at_ms: Option<i64>,
}

/// The groups of one notification group (receiver). Serializes, so timers and the
/// notification log survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dispatcher {
    groups: BTreeMap<String, Group>,
}

fn group_of(settings: &GroupSettings, labels: &[(String, String)]) -> (String, Labels) {
    let picked: Labels = if settings.group_by.iter().any(|g| g == "...") {
        labels.to_vec()
    } else {
        settings
            .group_by
            .iter()
            .filter_map(|g| labels.iter().find(|(k, _)| k == g).cloned())
            .collect()
    };
    let mut sorted = picked.clone();
    sorted.sort();
    let key = format!(
        "{{{}}}",
        sorted
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    (key, sorted)
}

impl Dispatcher {
    /// Adds or updates an alert (firing, or resolved) at `now_ms`.
    pub fn insert(&mut self, settings: &GroupSettings, alert: Alert, now_ms: i64) {
        let (key, labels) = group_of(settings, &alert.labels);
        let group = self.groups.entry(key).or_insert_with(|| Group {
            labels,
            next_flush_ms: now_ms + settings.group_wait_ms,
            ..Group::default()
        });
        // A group already notified runs on its own ticker (every group_interval from its last
        // flush): a new or changed alert goes out at the next tick, never earlier.
        group.alerts.insert(alert.fingerprint.clone(), alert);
    }

    /// When the next group is due (to sleep until then).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// The notifications due at `now_ms`. `muted` says whether an alert is held back (silence,
    /// inhibition, mute window); muted alerts are left out and not recorded as sent.
    pub fn due(
        &mut self,
        settings: &GroupSettings,
        now_ms: i64,
        muted: impl Fn(&Alert) -> bool,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        for (key, g) in &mut self.groups {
            if g.next_flush_ms > now_ms {
                continue;
            }
            g.flushed = true;
            g.next_flush_ms = now_ms + settings.group_interval_ms;
            let firing: BTreeSet<String> = g
                .alerts
                .values()
                .filter(|a| a.status == Status::Firing && !muted(a))
                .map(|a| a.fingerprint.clone())
                .collect();
            let resolved: BTreeSet<String> = g
                .alerts
                .values()
                .filter(|a| a.status == Status::Resolved && g.sent_firing.contains(&a.fingerprint))
                .map(|a| a.fingerprint.clone())
                .collect();
            let new_firing = !firing.is_subset(&g.sent_firing);
            let new_resolved = settings.send_resolved
                && !resolved.is_subset(&g.sent_resolved)
                && !resolved.is_empty();
            let repeat = !firing.is_empty()
                && g.sent_at_ms
                    .is_some_and(|t| now_ms - t >= settings.repeat_interval_ms);
            let all_resolved_now = firing.is_empty() && !resolved.is_empty();
            if new_firing || new_resolved || repeat {
                let alerts: Vec<Alert> = g
                    .alerts
                    .values()
                    .filter(|a| {
                        firing.contains(&a.fingerprint)
                            || (settings.send_resolved && resolved.contains(&a.fingerprint))
                    })
                    .cloned()
                    .collect();
                out.push(Notification {
                    group_key: key.clone(),
                    group_labels: g.labels.clone(),
                    status: if firing.is_empty() {
                        Status::Resolved
                    } else {
                        Status::Firing
                    },
                    alerts,
                    idempotency_key: format!("{key}@{now_ms}"),
                });
                g.sent_firing.clone_from(&firing);
                g.sent_resolved = resolved.clone();
                g.sent_at_ms = Some(now_ms);
            } else if all_resolved_now && !settings.send_resolved {
                g.sent_firing.clear();
            }
            // Resolved alerts leave the group once they have been dealt with.
            g.alerts.retain(|fp, a| {
                a.status == Status::Firing || !resolved.contains(fp) && g.sent_firing.contains(fp)
            });
            if firing.is_empty() {
                g.sent_firing.clear();
            }
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }
}
