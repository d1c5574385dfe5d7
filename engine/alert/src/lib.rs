//! Alert evaluation as a pure state machine, after Prometheus, Alertmanager and Grafana.
//!
//! A rule's condition (a plugin) says, at each evaluation, what it sees per series: alerting,
//! ok, no data or error, with a value. [`RuleState::apply`] turns that, and the evaluation time,
//! into the next state of every alert *instance* (one per label set, identified by
//! [`fingerprint`]) and the [`Transition`]s, each with its reason. No clock, no IO: the same
//! inputs give the same outputs, which is what the timeline tests (`tests/timelines.rs`) and
//! backtests rely on, and the state serializes so it survives a restart.
//!
//! The rules, per instance:
//! - **normal → pending** when the condition alerts; **pending → firing** once it has alerted
//!   for `for_ms` (at once when `for_ms` is 0); **pending → normal** when it stops alerting
//!   first.
//! - **firing → normal** (resolved) when the condition stops alerting, unless a **recovery
//!   threshold** says the value has not recovered yet (fire above X, resolve only below Y), and
//!   only after **`keep_firing_for_ms`** of not alerting (alerting again meanwhile keeps it
//!   firing without a new notification).
//! - **no data** and **error** map through the rule's policies to alerting, their own state
//!   (`no_data`, `error`), normal, or keep-last (no change). An evaluation that failed as a whole
//!   (query error, plugin trap) applies the error policy to every instance, or to one instance
//!   without labels when there are none.
//! - A series that **vanishes** (absent from an evaluation) resolves after `missing_after`
//!   evaluations without it; a pending one returns to normal at once, and an instance put in
//!   `error` by a failed evaluation as soon as an evaluation succeeds.
//! - Resolved instances are kept for `resolved_retention_ms` (so a resolved notification can go
//!   out), then dropped.

pub mod delivery;
pub mod dispatch;
pub mod route;
pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label pairs, sorted by name when they form an instance's identity.
pub type Labels = Vec<(String, String)>;

/// The identity of a label set: FNV-1a (64 bit) over the sorted pairs, as 16 hex digits. Stable
/// across versions and processes (it names instances in history and notifications).
pub fn fingerprint(labels: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in sorted {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// An instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Normal,
    Pending,
    Firing,
    NoData,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Normal => "normal",
            State::Pending => "pending",
            State::Firing => "firing",
            State::NoData => "no_data",
            State::Error => "error",
        }
    }
}

/// What no data, or an error, becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// As if the condition alerted (through pending and `for`).
    Alerting,
    /// Its own state (`no_data` or `error`), entered at once.
    #[default]
    OwnState,
    /// As if the condition were ok.
    Normal,
    /// No change.
    KeepLast,
}

/// A recovery threshold: a firing instance resolves only once its value is on this side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    Below(f64),
    Above(f64),
}

impl Recovery {
    fn recovered(self, value: Option<f64>) -> bool {
        match (self, value) {
            (_, None) => true,
            (Recovery::Below(y), Some(v)) => v < y,
            (Recovery::Above(y), Some(v)) => v > y,
        }
    }

    fn describe(self) -> String {
        match self {
            Recovery::Below(y) => format!("below {y}"),
            Recovery::Above(y) => format!("above {y}"),
        }
    }
}

/// The lifecycle settings of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub recovery: Option<Recovery>,
    pub no_data: Policy,
    pub error: Policy,
    /// Evaluations a series may be absent before its instance resolves.
    pub missing_after: u32,
    pub resolved_retention_ms: i64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            for_ms: 0,
            keep_firing_for_ms: 0,
            recovery: None,
            no_data: Policy::OwnState,
            error: Policy::OwnState,
            missing_after: 2,
            resolved_retention_ms: 15 * 60_000,
        }
    }
}

/// What the condition said about one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Alerting,
    NoData,
    Error,
}

/// One series of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub labels: Labels,
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub severity: Option<String>,
    pub annotations: Labels,
}

/// An evaluation's outcome: the series the condition returned, or why it could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Series(Vec<Observation>),
    Failed(String),
}

/// One alert instance. Stored as JSON (`alert_rule_state.instances`), without the fields that
/// are empty: a rule's state is written after its evaluations, and most fields of most
/// instances are empty. Rows written with those fields as `null` read the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub labels: Labels,
    pub state: State,
    /// Since when it has been in this state.
    pub since_ms: i64,
    /// When it started firing (kept through keep-firing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at_ms: Option<i64>,
    /// When it resolved (kept for the retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_ms: Option<i64>,
    /// When the condition last stopped alerting while firing (the keep-firing clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Labels,
    /// Evaluations in a row without this series.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A change of state, for history and notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub fingerprint: String,
    pub labels: Labels,
    pub from: State,
    pub to: State,
    pub at_ms: i64,
    pub value: Option<f64>,
    pub reason: String,
}

impl Transition {
    /// Firing ended: a resolved notification is due.
    pub fn is_resolve(&self) -> bool {
        self.from == State::Firing && self.to == State::Normal
    }
}

/// Every instance of one rule, by fingerprint. Serializes for persistence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub instances: BTreeMap<String, Instance>,
    pub last_evaluation_ms: Option<i64>,
}

/// What a series asks for, once policies are applied.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Alert,
    Clear,
    Own(State),
    Keep,
}

fn want(verdict: Verdict, l: &Lifecycle) -> Want {
    let mapped = |p: Policy, own: State| match p {
        Policy::Alerting => Want::Alert,
        Policy::OwnState => Want::Own(own),
        Policy::Normal => Want::Clear,
        Policy::KeepLast => Want::Keep,
    };
    match verdict {
        Verdict::Alerting => Want::Alert,
        Verdict::Ok => Want::Clear,
        Verdict::NoData => mapped(l.no_data, State::NoData),
        Verdict::Error => mapped(l.error, State::Error),
    }
}

impl RuleState {
    /// A digest of the rule's course: which instances it holds, in which state since when,
    /// and the clocks and severity that decide what comes next. Values, annotations, missing
    /// counts and the evaluation time are left out: they change from one evaluation to the next
    /// without the alert changing. Two states with the same course differ only in those.
    pub fn course(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.instances.len().hash(&mut h);
        for (fp, i) in &self.instances {
            fp.hash(&mut h);
            i.state.as_str().hash(&mut h);
            i.since_ms.hash(&mut h);
            i.fired_at_ms.hash(&mut h);
            i.resolved_at_ms.hash(&mut h);
            i.quiet_since_ms.hash(&mut h);
            i.severity.hash(&mut h);
        }
        h.finish()
    }

    /// The instances that are not normal.
    pub fn active(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values().filter(|i| i.state != State::Normal)
    }

    /// Applies one evaluation at `now_ms`; returns the transitions it caused, in fingerprint
    /// order.
    pub fn apply(&mut self, l: &Lifecycle, outcome: &Outcome, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        match outcome {
            Outcome::Series(series) => {
                let mut seen = std::collections::BTreeSet::new();
                for o in series {
                    let mut labels = o.labels.clone();
                    labels.sort();
                    let fp = fingerprint(&labels);
                    seen.insert(fp.clone());
                    let inst = self
                        .instances
                        .entry(fp.clone())
                        .or_insert_with(|| Instance {
                            labels: labels.clone(),
                            state: State::Normal,
                            since_ms: now_ms,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            quiet_since_ms: None,
                            value: None,
                            severity: None,
                            annotations: Vec::new(),
                            missing: 0,
                            last_error: None,
                        });
                    inst.missing = 0;
                    inst.last_error = None;
                    inst.value = o.value;
                    if o.severity.is_some() {
                        inst.severity.clone_from(&o.severity);
                    }
                    inst.annotations.clone_from(&o.annotations);
                    let reason = match o.verdict {
                        Verdict::Alerting => "the condition is met",
                        Verdict::Ok => "the condition is not met",
                        Verdict::NoData => "no data",
                        Verdict::Error => "the condition reported an error",
                    };
                    step(inst, &fp, l, want(o.verdict, l), reason, now_ms, &mut out);
                }
                // Series missing from this evaluation.
                for (fp, inst) in &mut self.instances {
                    if seen.contains(fp) {
                        continue;
                    }
                    inst.missing += 1;
                    if inst.state == State::Error && inst.last_error.take().is_some() {
                        // Put there by a failed evaluation, which has now succeeded.
                        set(
                            inst,
                            fp,
                            State::Normal,
                            "the evaluation succeeded again",
                            now_ms,
                            &mut out,
                        );
                        continue;
                    }
                    let gone = match inst.state {
                        State::Pending => true,
                        State::Firing | State::NoData | State::Error => {
                            inst.missing >= l.missing_after
                        }
                        State::Normal => false,
                    };
                    if gone {
                        let reason = format!(
                            "the series is gone ({} evaluation{} without it)",
                            inst.missing,
                            if inst.missing == 1 { "" } else { "s" }
                        );
                        set(inst, fp, State::Normal, &reason, now_ms, &mut out);
                    }
                }
            }
            Outcome::Failed(error) => {
                let w = want(Verdict::Error, l);
                if self.instances.is_empty() && w != Want::Clear && w != Want::Keep {
                    let fp = fingerprint(&[]);
                    self.instances.insert(
                        fp,
                        Instance {
                            labels: Vec::new(),
                            state: State::Normal,
                            since_ms: now_ms,
                            fired_at_ms: None,
                            resolved_at_ms: None,
                            quiet_since_ms: None,
                            value: None,
                            severity: None,
                            annotations: Vec::new(),
                            missing: 0,
                            last_error: None,
                        },
                    );
                }
                let reason = format!("the evaluation failed: {error}");
                for (fp, inst) in &mut self.instances {
                    inst.last_error = Some(error.clone());
                    step(inst, fp, l, w, &reason, now_ms, &mut out);
                }
            }
        }
        // Forget instances resolved long enough ago, and normal ones nobody reports any more.
        self.instances.retain(|_, i| match i.state {
            State::Normal => match i.resolved_at_ms {
                Some(at) => now_ms - at < l.resolved_retention_ms,
                None => i.missing < l.missing_after.max(1),
            },
            _ => true,
        });
        self.last_evaluation_ms = Some(now_ms);
        out
    }
}

fn set(
    inst: &mut Instance,
    fp: &str,
    to: State,
    reason: &str,
    now_ms: i64,
    out: &mut Vec<Transition>,
) {
    if inst.state == to {
        return;
    }
    out.push(Transition {
        fingerprint: fp.to_string(),
        labels: inst.labels.clone(),
        from: inst.state,
        to,
        at_ms: now_ms,
        value: inst.value,
        reason: reason.to_string(),
    });
    if to == State::Firing && inst.state != State::Firing {
        inst.fired_at_ms = Some(now_ms);
        inst.resolved_at_ms = None;
    }
    if inst.state == State::Firing && to == State::Normal {
        inst.resolved_at_ms = Some(now_ms);
    }
    if to != State::Firing {
        inst.quiet_since_ms = None;
    }
    inst.state = to;
    inst.since_ms = now_ms;
}

fn step(
    inst: &mut Instance,
    fp: &str,
    l: &Lifecycle,
    w: Want,
    reason: &str,
    now_ms: i64,
    out: &mut Vec<Transition>,
) {
    match w {
        Want::Keep => {}
        Want::Own(s) => set(inst, fp, s, reason, now_ms, out),
        Want::Alert => match inst.state {
            State::Firing => inst.quiet_since_ms = None,
            State::Pending if now_ms - inst.since_ms >= l.for_ms => {
                let r = format!("{reason} for {}", duration(now_ms - inst.since_ms));
                set(inst, fp, State::Firing, &r, now_ms, out);
            }
            State::Pending => {}
            State::Normal | State::NoData | State::Error => {
                if l.for_ms <= 0 {
                    set(inst, fp, State::Firing, reason, now_ms, out);
                } else {
                    set(inst, fp, State::Pending, reason, now_ms, out);
                }
            }
        },
        Want::Clear => match inst.state {
            State::Firing => {
                if let Some(r) = l.recovery
                    && !r.recovered(inst.value)
                {
                    // Not recovered yet: keep firing, and the keep-firing clock has not started.
                    inst.quiet_since_ms = None;
                    return;
                }
                let quiet = *inst.quiet_since_ms.get_or_insert(now_ms);
                if now_ms - quiet >= l.keep_firing_for_ms {
                    let why = match l.recovery {
                        Some(r) => format!("{reason}; the value is {}", r.describe()),
                        None if l.keep_firing_for_ms > 0 => {
                            format!("{reason} for {}", duration(now_ms - quiet))
                        }
                        None => reason.to_string(),
                    };
                    set(inst, fp, State::Normal, &why, now_ms, out);
                }
            }
            State::Normal => {}
            State::Pending | State::NoData | State::Error => {
                set(inst, fp, State::Normal, reason, now_ms, out);
            }
        },
    }
}

/// `90s`, `5m`, `1h30m`: a duration in words for reasons.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if s < 120 && s % 60 != 0 || s < 60 => format!("{s}s"),
        _ if s < 3600 => format!("{}m", s / 60),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
