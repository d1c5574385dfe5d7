//! From alert states to notifications: routing to notification groups, Alertmanager-style
//! grouping and timers (`alert::dispatch`), silences, inhibition and mute windows, then
//! delivery through each of the group's channels (a channel plugin), at least once, with
//! retries after `alert::delivery`. Every attempt is recorded; a channel that keeps failing
//! holds up only its own deliveries.
//!
//! A group receives an alert when its matchers all match the alert's labels, or, for a group
//! without matchers, when the alert's rule is linked to it. Each group's dispatch state and
//! cooldowns are persisted after they change, so a restart neither loses a pending
//! notification nor repeats one early. Each delivery a group makes due is written to the
//! outbox in the same transaction as the group's state and removed when it ends; at shutdown,
//! deliveries under way get [`Notifier::drain`] to finish, and what is still in the outbox
//! (cut short, or the server died) resumes at the next start with its attempt count.
//! Inhibition (which alerts fire) and cooldowns are rebuilt from the rules' stored states at
//! start, so they hold from the first tick after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alert::delivery::{Attempt, Next, RetryPolicy};
use alert::dispatch::{Alert, Dispatcher, Notification, Status};
use alert::spec::GroupSpec;
use alert::{Labels, RuleState, State};
use chrono::{DateTime, Utc};
use plugin_runtime::{Capabilities, SendError};
use serde::{Deserialize, Serialize};
use storage::{
    AlertRuleRecord, AlertStore, AttemptRecord, ChannelRecord, OutboxRecord, OutboxStep,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::Plugins;

/// What a channel's sealed config is bound to: its tenant, workspace and id.
pub fn channel_owner(tenant_id: &str, workspace_id: &str, channel_id: &str) -> String {
    format!("notification_channel:{tenant_id}:{workspace_id}:{channel_id}")
}

/// What delivery needs.
pub struct Notifier {
    pub alerts: Arc<dyn AlertStore>,
    pub plugins: Arc<dyn Plugins>,
    pub capabilities: Arc<dyn Capabilities>,
    /// Opens channel configs.
    pub secrets: iam::SecretBox,
    /// Where people reach the console (links in notifications).
    pub external_url: String,
    pub retry: RetryPolicy,
    /// How often due groups are looked for.
    pub tick: Duration,
    /// How long deliveries under way may take to finish at shutdown.
    pub drain: Duration,
}

/// A rule's alerts after an evaluation, for the notifier.
#[derive(Debug, Clone)]
pub struct RuleAlerts {
    pub rule: Arc<AlertRuleRecord>,
    /// Firing alerts, and resolved ones still kept by the state machine.
    pub alerts: Vec<Alert>,
}

/// The alerts of a rule's state that notifications carry.
pub fn alerts_of(state: &RuleState) -> Vec<Alert> {
    state
        .instances
        .iter()
        .filter_map(|(fp, i)| {
            let (status, ends) = match (i.state, i.fired_at_ms, i.resolved_at_ms) {
                (State::Firing, _, _) => (Status::Firing, None),
                (State::Normal, Some(_), Some(r)) => (Status::Resolved, Some(r)),
                _ => return None,
            };
            Some(Alert {
                fingerprint: fp.clone(),
                labels: i.labels.clone(),
                annotations: i.annotations.clone(),
                status,
                starts_at_ms: i.fired_at_ms.unwrap_or(i.since_ms),
                ends_at_ms: ends,
                value: i.value,
            })
        })
        .collect()
}

/// Rules' cooldowns, per notification group: after a group sent a notification about an
/// alert, it sends no other about it for the rule's `cooldown_minutes` (its resolve always goes
/// out, so receivers can close what they opened).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cooldown {
    /// Fingerprint → when a notification about it last went out.
    sent: HashMap<String, i64>,
}

impl Cooldown {
    /// Drops the firing alerts still cooling down (`of`: fingerprint → its rule's cooldown);
    /// false when nothing is left to send.
    fn admit(&mut self, of: &HashMap<String, i64>, n: &mut Notification, now_ms: i64) -> bool {
        n.alerts.retain(|a| {
            let cd = of.get(&a.fingerprint).copied().unwrap_or(0);
            a.status == Status::Resolved
                || cd <= 0
                || self
                    .sent
                    .get(&a.fingerprint)
                    .is_none_or(|t| now_ms - t >= cd)
        });
        if n.alerts.is_empty() {
            return false;
        }
        for a in n.alerts.iter().filter(|a| a.status == Status::Firing) {
            if of.get(&a.fingerprint).is_some_and(|cd| *cd > 0) {
                self.sent.insert(a.fingerprint.clone(), now_ms);
            }
        }
        // Forget alerts not notified about for a day (no cooldown is that long).
        if self.sent.len() > 10_000 {
            self.sent.retain(|_, t| now_ms - *t < 86_400_000);
        }
        true
    }
}

/// What the notifier knows of every rule's alerts: what fires (for inhibition: rule id →
/// tenant, label sets) and each alert's cooldown (fingerprint → its rule's, in ms).
#[derive(Default)]
struct Known {
    firing: HashMap<String, (String, Vec<Labels>)>,
    cooldowns: HashMap<String, i64>,
}

impl Known {
    fn note(&mut self, rule: &AlertRuleRecord, alerts: &[Alert]) {
        self.firing.insert(
            rule.alert_rule_id.clone(),
            (
                rule.tenant_id.clone(),
                alerts
                    .iter()
                    .filter(|a| a.status == Status::Firing)
                    .map(|a| a.labels.clone())
                    .collect(),
            ),
        );
        let ms = rule.cooldown_minutes.saturating_mul(60_000);
        for a in alerts {
            self.cooldowns.insert(a.fingerprint.clone(), ms);
        }
    }
}

/// What is persisted per group.
#[derive(Debug, Default, Serialize, Deserialize)]
struct GroupState {
    dispatcher: Dispatcher,
    #[serde(default)]
    cooldown: Cooldown,
}

struct Group {
    spec: GroupSpec,
    tenant_id: String,
    state: GroupState,
    dirty: bool,
}

/// The notifier's handle: where evaluations send their alerts.
#[derive(Clone)]
pub struct NotifierHandle {
    tx: mpsc::UnboundedSender<RuleAlerts>,
}

impl NotifierHandle {
    pub fn send(&self, alerts: RuleAlerts) {
        let _ = self.tx.send(alerts);
    }
}

impl Notifier {
    /// Starts the notifier; it ends when `stop` turns true.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> (NotifierHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Arc::new(self).run(rx, stop));
        (NotifierHandle { tx }, task)
    }

    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<RuleAlerts>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut known = Known::default();
        self.recall(&mut known).await;
        let mut deliveries = JoinSet::new();
        self.resume(&mut deliveries).await;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        known.note(&m.rule, &m.alerts);
                        if let Err(e) = self.route(&mut groups, &m).await {
                            tracing::error!(rule = %m.rule.alert_rule_id, error = %e,
                                "alerts could not be routed");
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep(self.tick) => {
                    self.flush(&mut groups, &known, &mut deliveries).await;
                    while deliveries.try_join_next().is_some() {}
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        break;
                    }
                }
            }
        }
        self.persist(&mut groups).await;
        self.finish(deliveries).await;
    }

    /// What every rule's stored state says fires, and the cooldowns of their alerts: inhibition
    /// and cooldowns hold from the first tick after a restart, not from each rule's next
    /// evaluation.
    async fn recall(&self, known: &mut Known) {
        let rules = match self.alerts.enabled_rules().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "rules could not be read; inhibition starts empty");
                return;
            }
        };
        for rule in rules {
            let Ok(Some(stored)) = self.alerts.rule_state(&rule.alert_rule_id).await else {
                continue;
            };
            if let Ok(state) = serde_json::from_str::<RuleState>(&stored.instances) {
                known.note(&rule, &alerts_of(&state));
            }
        }
    }

    /// Restarts the deliveries the outbox still holds (the server stopped in their middle),
    /// each at its next attempt and with its attempt count.
    async fn resume(self: &Arc<Self>, deliveries: &mut JoinSet<()>) {
        let pending = match self.alerts.outbox().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the delivery outbox could not be read");
                return;
            }
        };
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "resuming deliveries from the outbox"
            );
        }
        for row in pending {
            let channel = match self.alerts.channel(&row.channel_id).await {
                Ok(Some(c)) if c.is_active => c,
                Ok(_) => {
                    tracing::warn!(channel = %row.channel_id,
                        "a pending delivery's channel is gone or switched off; dropped");
                    let _ = self.alerts.outbox_done(&row.outbox_id).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a pending delivery's channel could not be read");
                    continue;
                }
            };
            let Ok(n) = serde_json::from_str::<Notification>(&row.notification) else {
                tracing::error!(outbox = %row.outbox_id, "a pending delivery does not parse; dropped");
                let _ = self.alerts.outbox_done(&row.outbox_id).await;
                continue;
            };
            let me = Arc::clone(self);
            deliveries.spawn(async move {
                let wait = (row.next_attempt_at.timestamp_millis() - Utc::now().timestamp_millis())
                    .max(0)
                    .unsigned_abs();
                tokio::time::sleep(Duration::from_millis(wait)).await;
                me.deliver(&row, &channel, &n).await;
            });
        }
    }

    /// Lets deliveries under way finish for up to [`Notifier::drain`]; what is left is cut
    /// short (its attempts so far are recorded), logged, and resumed from the outbox at the
    /// next start.
    async fn finish(&self, mut deliveries: JoinSet<()>) {
        let pending = deliveries.len();
        if pending == 0 {
            return;
        }
        tracing::info!(pending, "waiting for notifications under way");
        let all = async { while deliveries.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain, all).await.is_err() {
            tracing::warn!(
                left = deliveries.len(),
                "notifications still retrying at shutdown were cut short; they resume at the next start"
            );
            deliveries.abort_all();
        }
    }

    /// Puts a rule's alerts into the dispatchers of the groups that receive them.
    async fn route(
        &self,
        groups: &mut HashMap<String, Group>,
        m: &RuleAlerts,
    ) -> Result<(), storage::MetaError> {
        if m.alerts.is_empty() {
            return Ok(());
        }
        let linked = self.alerts.rule_groups(&m.rule.alert_rule_id).await?;
        let now = Utc::now().timestamp_millis();
        for g in self.alerts.groups(&m.rule.tenant_id).await? {
            let Ok(spec) = crate::group_spec(&g) else {
                continue;
            };
            if !spec.active {
                continue;
            }
            let matchers = spec.matchers();
            let takes = |a: &Alert| {
                if matchers.is_empty() {
                    linked.contains(&g.group_id)
                } else {
                    alert::route::all_match(&matchers, &a.labels)
                }
            };
            let chosen: Vec<&Alert> = m.alerts.iter().filter(|a| takes(a)).collect();
            if chosen.is_empty() {
                continue;
            }
            if !groups.contains_key(&g.group_id) {
                let state = self
                    .alerts
                    .group_state(&g.group_id)
                    .await?
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                groups.insert(
                    g.group_id.clone(),
                    Group {
                        spec: spec.clone(),
                        tenant_id: g.tenant_id.clone(),
                        state,
                        dirty: false,
                    },
                );
            }
            if let Some(entry) = groups.get_mut(&g.group_id) {
                entry.spec = spec;
                let settings = entry.spec.settings();
                for a in chosen {
                    entry.state.dispatcher.insert(&settings, a.clone(), now);
                }
                entry.dirty = true;
            }
        }
        Ok(())
    }

    /// Sends what is due, holding back silenced, inhibited and muted alerts.
    async fn flush(
        self: &Arc<Self>,
        groups: &mut HashMap<String, Group>,
        known: &Known,
        deliveries: &mut JoinSet<()>,
    ) {
        let now = Utc::now().timestamp_millis();
        let mut silences: HashMap<String, Vec<alert::route::Silence>> = HashMap::new();
        for (group_id, g) in groups.iter_mut() {
            if g.state.dispatcher.next_due_ms().is_none_or(|t| t > now) {
                continue;
            }
            if !silences.contains_key(&g.tenant_id) {
                let list = self.silences(&g.tenant_id).await;
                silences.insert(g.tenant_id.clone(), list);
            }
            let tenant_silences = silences.get(&g.tenant_id).map_or(&[][..], Vec::as_slice);
            let inhibitions = g.spec.inhibitions();
            let tenant_firing: Vec<Labels> = known
                .firing
                .values()
                .filter(|(t, _)| *t == g.tenant_id)
                .flat_map(|(_, l)| l.iter().cloned())
                .collect();
            let muted_window = g.spec.mute_time_windows.iter().any(|w| w.contains(now));
            let muted = |a: &Alert| {
                muted_window
                    || alert::route::silenced_by(tenant_silences, &a.labels, now).is_some()
                    || alert::route::inhibited(&inhibitions, &a.labels, &tenant_firing)
            };
            let due = g.state.dispatcher.due(&g.spec.settings(), now, muted);
            g.dirty = true;
            if due.is_empty() {
                continue;
            }
            let channels = match self.alerts.channels(&g.tenant_id, Some(group_id)).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(group = %group_id, error = %e, "channels could not be read");
                    continue;
                }
            };
            let mut out = Vec::new();
            for mut n in due {
                if !g.state.cooldown.admit(&known.cooldowns, &mut n, now) {
                    continue;
                }
                let Ok(text) = serde_json::to_string(&n) else {
                    continue;
                };
                for c in channels.iter().filter(|c| c.is_active) {
                    let at = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_else(Utc::now);
                    let row = OutboxRecord {
                        outbox_id: uuid::Uuid::now_v7().to_string(),
                        channel_id: c.channel_id.clone(),
                        notification_group_id: group_id.clone(),
                        workspace_id: c.workspace_id.clone(),
                        tenant_id: c.tenant_id.clone(),
                        notification: text.clone(),
                        attempts: 0,
                        created_at: at,
                        next_attempt_at: at,
                    };
                    out.push((row, c.clone(), n.clone()));
                }
            }
            // The group's state and its deliveries in one transaction: once the state says
            // sent, the outbox holds what is to be sent.
            let rows: Vec<OutboxRecord> = out.iter().map(|(r, _, _)| r.clone()).collect();
            match serde_json::to_string(&g.state) {
                Ok(text) => match self.alerts.put_group_state(group_id, &text, &rows).await {
                    Ok(()) => g.dirty = false,
                    Err(e) => {
                        tracing::error!(group = %group_id, error = %e,
                            "dispatch state and outbox not saved; delivering from memory");
                    }
                },
                Err(e) => tracing::error!(group = %group_id, error = %e, "dispatch state"),
            }
            for (row, c, n) in out {
                let me = Arc::clone(self);
                deliveries.spawn(async move { me.deliver(&row, &c, &n).await });
            }
        }
        self.persist(groups).await;
    }

    async fn persist(&self, groups: &mut HashMap<String, Group>) {
        for (id, g) in groups.iter_mut().filter(|(_, g)| g.dirty) {
            let Ok(text) = serde_json::to_string(&g.state) else {
                continue;
            };
            match self.alerts.put_group_state(id, &text, &[]).await {
                Ok(()) => g.dirty = false,
                Err(e) => tracing::error!(group = %id, error = %e, "dispatch state not saved"),
            }
        }
    }

    async fn silences(&self, tenant_id: &str) -> Vec<alert::route::Silence> {
        let now = Utc::now();
        let list = match self.alerts.silences(tenant_id, Some(now)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "silences could not be read");
                return Vec::new();
            }
        };
        list.into_iter()
            .map(|s| {
                let texts: Vec<String> = serde_json::from_str(&s.matchers).unwrap_or_default();
                alert::route::Silence {
                    id: s.silence_id,
                    matchers: texts
                        .iter()
                        .filter_map(|m| alert::route::Matcher::parse(m).ok())
                        .collect(),
                    starts_at_ms: s.starts_at.timestamp_millis(),
                    ends_at_ms: s.ends_at.timestamp_millis(),
                }
            })
            .collect()
    }

    /// Delivers one notification through one channel: attempts until delivered, permanently
    /// refused, or out of retries; each attempt recorded, and the outbox row kept in step
    /// (attempts made, when the next is due) until the delivery ends.
    async fn deliver(&self, row: &OutboxRecord, c: &ChannelRecord, n: &Notification) {
        let group_id = row.notification_group_id.as_str();
        let created = row.created_at.timestamp_millis();
        let mut attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        loop {
            attempt += 1;
            let outcome = self.attempt(c, n).await;
            let now = Utc::now().timestamp_millis();
            let next = self
                .retry
                .next(&n.idempotency_key, attempt, created, now, &outcome);
            let (label, message) = match &outcome {
                Attempt::Delivered => ("delivered", String::new()),
                Attempt::Permanent(m) => ("permanent", m.clone()),
                Attempt::Transient(m) => ("transient", m.clone()),
                Attempt::RateLimited { message, .. } => ("rate_limited", message.clone()),
            };
            let mut records = vec![attempt_record(group_id, c, n, attempt, label, &message)];
            let step = match &next {
                Next::Done => {
                    metrics::counter!("telemetryflow_notifications_delivered_total").increment(1);
                    OutboxStep::Done {
                        outbox_id: &row.outbox_id,
                    }
                }
                Next::GiveUp(why) => {
                    metrics::counter!("telemetryflow_notifications_failed_total").increment(1);
                    tracing::warn!(channel = %c.channel_id, reason = %why, "notification not delivered");
                    records.push(attempt_record(group_id, c, n, attempt, "gave_up", why));
                    OutboxStep::Done {
                        outbox_id: &row.outbox_id,
                    }
                }
                Next::RetryAt(at) => OutboxStep::Retry {
                    outbox_id: &row.outbox_id,
                    attempts: i64::from(attempt),
                    next_attempt_at: DateTime::<Utc>::from_timestamp_millis(*at)
                        .unwrap_or_else(Utc::now),
                },
            };
            // The records and the outbox row move together: a delivery cut here (shutdown)
            // resumes at the next start with the attempt count its records show.
            if let Err(e) = self.alerts.record_attempt(&records, step).await {
                tracing::error!(channel = %c.channel_id, outbox = %row.outbox_id, error = %e,
                    "delivery attempt not recorded (a finished delivery may be sent again at restart)");
            }
            match next {
                Next::Done | Next::GiveUp(_) => return,
                Next::RetryAt(at) => {
                    let wait = (at - now).max(0).unsigned_abs();
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
    }

    async fn attempt(&self, c: &ChannelRecord, n: &Notification) -> Attempt {
        let config = match self.secrets.open(
            &c.config_encrypted,
            &channel_owner(&c.tenant_id, &c.workspace_id, &c.channel_id),
        ) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => {
                return Attempt::Permanent(
                    "the channel's config does not open with the server's root key".into(),
                );
            }
        };
        let plugin = match self.plugins.plugin(&c.workspace_id, &c.plugin_id).await {
            Ok(p) => p,
            Err(m) => return Attempt::Permanent(m),
        };
        let wire = self.wire(c, n, config);
        let rt = self.plugins.runtime();
        let caps = Arc::clone(&self.capabilities);
        match tokio::task::spawn_blocking(move || rt.send(&plugin, &wire, caps)).await {
            Ok(Ok(Ok(_))) => Attempt::Delivered,
            Ok(Ok(Err(SendError::Permanent(m)))) => Attempt::Permanent(m),
            Ok(Ok(Err(SendError::Transient(m)))) => Attempt::Transient(m),
            Ok(Ok(Err(SendError::RateLimited(r)))) => Attempt::RateLimited {
                retry_after_ms: r.retry_after_ms,
                message: r.message,
            },
            // A plugin that traps or overruns may do better next time (a deadline on a slow
            // receiver); the retry limits bound it.
            Ok(Err(e)) => Attempt::Transient(e.to_string()),
            Err(e) => Attempt::Transient(format!("the delivery did not finish: {e}")),
        }
    }

    /// The notification as the channel plugin gets it.
    fn wire(
        &self,
        c: &ChannelRecord,
        n: &Notification,
        config: String,
    ) -> plugin_runtime::Notification {
        let status = |s: Status| match s {
            Status::Firing => plugin_runtime::AlertStatus::Firing,
            Status::Resolved => plugin_runtime::AlertStatus::Resolved,
        };
        let common = |pick: fn(&Alert) -> &Labels| -> Labels {
            let mut it = n.alerts.iter();
            let Some(first) = it.next() else {
                return Vec::new();
            };
            let rest: Vec<&Alert> = it.collect();
            pick(first)
                .iter()
                .filter(|kv| rest.iter().all(|a| pick(a).contains(kv)))
                .cloned()
                .collect()
        };
        plugin_runtime::Notification {
            idempotency_key: format!("{}:{}", c.channel_id, n.idempotency_key),
            group_key: format!("{}:{}", c.notification_group_id, n.group_key),
            group_labels: n.group_labels.clone(),
            common_labels: common(|a| &a.labels),
            common_annotations: common(|a| &a.annotations),
            status: status(n.status),
            alerts: n
                .alerts
                .iter()
                .map(|a| plugin_runtime::Alert {
                    status: status(a.status),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    value: a.value,
                    starts_at_ms: a.starts_at_ms,
                    ends_at_ms: a.ends_at_ms,
                    generator_url: format!("{}/alerts", self.external_url.trim_end_matches('/')),
                    fingerprint: a.fingerprint.clone(),
                })
                .collect(),
            external_url: self.external_url.clone(),
            config,
        }
    }
}

/// One attempt as the channel's attempt log shows it.
fn attempt_record(
    group_id: &str,
    c: &ChannelRecord,
    n: &Notification,
    attempt: u32,
    outcome: &str,
    message: &str,
) -> AttemptRecord {
    AttemptRecord {
        attempt_id: uuid::Uuid::now_v7().to_string(),
        channel_id: c.channel_id.clone(),
        notification_group_id: group_id.to_string(),
        workspace_id: c.workspace_id.clone(),
        tenant_id: c.tenant_id.clone(),
        group_key: n.group_key.clone(),
        idempotency_key: n.idempotency_key.clone(),
        attempt: i64::from(attempt),
        outcome: outcome.to_string(),
        message: message.chars().take(2000).collect(),
        alerts: i64::try_from(n.alerts.len()).unwrap_or(i64::MAX),
        status: match n.status {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
        .to_string(),
        created_at: DateTime::<Utc>::from_timestamp_millis(Utc::now().timestamp_millis())
            .unwrap_or_else(Utc::now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(alerts: &[(&str, Status)]) -> Notification {
        Notification {
            group_key: "g".into(),
            group_labels: Vec::new(),
            status: Status::Firing,
            alerts: alerts
                .iter()
                .map(|(fp, status)| Alert {
                    fingerprint: (*fp).to_string(),
                    labels: Vec::new(),
                    annotations: Vec::new(),
                    status: *status,
                    starts_at_ms: 0,
                    ends_at_ms: None,
                    value: None,
                })
                .collect(),
            idempotency_key: "k".into(),
        }
    }

    #[test]
    fn a_cooldown_holds_back_repeats_and_flaps_but_never_a_resolve() {
        let mut c = Cooldown::default();
        let of = HashMap::from([("a".to_string(), 600_000), ("b".to_string(), 0)]);
        let mut first = n(&[("a", Status::Firing), ("b", Status::Firing)]);
        assert!(c.admit(&of, &mut first, 0));
        assert_eq!(first.alerts.len(), 2);
        let mut again = n(&[("a", Status::Firing), ("b", Status::Firing)]);
        assert!(c.admit(&of, &mut again, 60_000));
        assert_eq!(again.alerts.len(), 1, "a cools down, b has no cooldown");
        let mut resolved = n(&[("a", Status::Resolved)]);
        assert!(
            c.admit(&of, &mut resolved, 120_000),
            "a resolve always goes out"
        );
        // The cooldown is part of the group's persisted state: a restart keeps it.
        let text = serde_json::to_string(&GroupState {
            dispatcher: Dispatcher::default(),
            cooldown: c,
        })
        .expect("serialize");
        let mut c = serde_json::from_str::<GroupState>(&text)
            .expect("restore")
            .cooldown;
        let mut flap = n(&[("a", Status::Firing)]);
        assert!(
            !c.admit(&of, &mut flap, 180_000),
            "firing again within the cooldown, after a restart"
        );
        let mut later = n(&[("a", Status::Firing)]);
        assert!(c.admit(&of, &mut later, 600_000), "after the cooldown");
    }
}
