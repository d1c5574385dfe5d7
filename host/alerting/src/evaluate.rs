//! One evaluation of one rule: its queries through the query engine, their results as Arrow
//! IPC to the condition plugin, the plugin's series through the state machine, every
//! transition written to `alert_history` with its reason, and the new state persisted.
//!
//! A failure anywhere (a query error, a plugin trap, a missing plugin) becomes that rule's
//! `Outcome::Failed` with the reason; it never reaches another rule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alert::spec::{RuleSpec, render_sql};
use alert::{Labels, Lifecycle, Observation, Outcome, RuleState, State, Transition, Verdict};
use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use chrono::{DateTime, Utc};
use model::{Scope, Table};
use parking_lot::Mutex;
use plugin_runtime::{EvaluationContext, QueryResult, SeriesStatus};
use serde_json::json;
use storage::{AlertRuleRecord, AlertStore, MetaError, RuleStateRecord, TelemetryStore};

use crate::Plugins;
use crate::states::States;

/// How long a rule's state that moved only in values and counts may wait to be written (see
/// `states`): the API's evaluation counts and values are at most this far behind.
pub const STATE_SAVE_EVERY: Duration = Duration::from_secs(2);

/// Most evaluations one backtest runs.
pub const MAX_BACKTEST_EVALUATIONS: usize = 10_000;

/// What evaluations need.
pub struct Evaluator {
    pub alerts: Arc<dyn AlertStore>,
    pub telemetry: Arc<dyn TelemetryStore>,
    pub plugins: Arc<dyn Plugins>,
    pub limits: query::QueryLimits,
    states: States,
    /// Rules' queries planned once: (rule id, query name) → (its text, the plan, or `None`
    /// when it is rendered and planned each time).
    prepared: Mutex<HashMap<(String, String), Prepared>>,
}

type Prepared = (String, Option<Arc<query::Prepared>>);

/// What one evaluation did.
#[derive(Debug)]
pub struct Evaluated {
    pub transitions: Vec<Transition>,
    /// Why the evaluation failed, if it did.
    pub error: Option<String>,
    /// The rule's state after it (shared with the evaluator's memory).
    pub state: Arc<RuleState>,
}

/// The labels of an alert: the series' own, then the rule's (which win), `alertname`, and the
/// severity the plugin gave the series, else the rule's.
fn alert_labels(series: &Labels, spec: &RuleSpec, severity: Option<&str>) -> Labels {
    let mut out: Labels = series
        .iter()
        .filter(|(k, _)| !spec.labels.contains_key(k) && k != "alertname" && k != "severity")
        .cloned()
        .collect();
    for (k, v) in spec.static_labels() {
        let v = match (k.as_str(), severity) {
            ("severity", Some(s)) if !spec.labels.contains_key("severity") => s.to_string(),
            _ => v,
        };
        out.push((k, v));
    }
    out.sort();
    out
}

/// Fills `{{ $labels.name }}`, `{{ $value }}` and `{{ $severity }}` in an annotation.
pub fn render_annotation(template: &str, labels: &Labels, value: Option<f64>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        let label = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let filled = if let Some(name) = expr.strip_prefix("$labels.") {
            label(name)
        } else if expr == "$value" {
            value.map(|v| format!("{v}")).unwrap_or_default()
        } else if expr == "$severity" {
            label("severity")
        } else {
            rest[start..start + end + 2].to_string()
        };
        out.push_str(&filled);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn verdict(s: SeriesStatus) -> Verdict {
    match s {
        SeriesStatus::Ok => Verdict::Ok,
        SeriesStatus::Alerting => Verdict::Alerting,
        SeriesStatus::NoData => Verdict::NoData,
        SeriesStatus::Error => Verdict::Error,
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

impl Evaluator {
    pub fn new(
        alerts: Arc<dyn AlertStore>,
        telemetry: Arc<dyn TelemetryStore>,
        plugins: Arc<dyn Plugins>,
        limits: query::QueryLimits,
    ) -> Evaluator {
        Evaluator {
            states: States::new(Arc::clone(&alerts), STATE_SAVE_EVERY),
            prepared: Mutex::default(),
            alerts,
            telemetry,
            plugins,
            limits,
        }
    }

    /// Writes the rules' states that wait to be written, in one transaction; how many. The
    /// scheduler calls it when [`Evaluator::saving_due`], when it drops a rule and at shutdown.
    ///
    /// # Errors
    /// The store failing; the states are kept and tried again.
    pub async fn save_states(&self) -> Result<usize, MetaError> {
        self.states.save_waiting().await
    }

    /// Whether states have waited [`STATE_SAVE_EVERY`].
    pub fn saving_due(&self) -> bool {
        self.states.saving_due()
    }

    /// Forgets what is kept in memory of a rule that is no longer scheduled.
    pub fn forget(&self, rule_id: &str) {
        self.states.forget(rule_id);
        self.prepared.lock().retain(|(id, _), _| id != rule_id);
    }

    /// Evaluates `rule` at `now_ms`, writes its history and state. `skipped` ticks were missed
    /// since the last evaluation (it ran over).
    ///
    /// # Errors
    /// Only when the metadata store cannot be read or written; everything the rule itself gets
    /// wrong is in [`Evaluated::error`].
    pub async fn evaluate(
        &self,
        rule: &AlertRuleRecord,
        now_ms: i64,
        skipped: u64,
    ) -> Result<Evaluated, MetaError> {
        let (prev, mut state) = match self.states.take(&rule.alert_rule_id).await? {
            // A copy only while the last state still waits to be written.
            Some(kept) => (Some(kept.record), Arc::unwrap_or_clone(kept.state)),
            None => (None, RuleState::default()),
        };
        let mut plugin_state = prev.as_ref().and_then(|p| p.plugin_state.clone());
        let (outcome, lifecycle, spec) = match crate::rule_spec(rule, Vec::new()) {
            Err(m) => (Outcome::Failed(m), Lifecycle::default(), None),
            Ok(spec) => {
                let outcome = match &spec.composite {
                    Some(c) => self.composite(rule, &spec, c).await?,
                    None => self.condition(rule, &spec, now_ms, &mut plugin_state).await,
                };
                (outcome, spec.lifecycle(), Some(spec))
            }
        };
        let error = match &outcome {
            Outcome::Failed(m) => Some(m.clone()),
            Outcome::Series(_) => None,
        };
        let course = state.course();
        let transitions = state.apply(&lifecycle, &outcome, now_ms);
        if !transitions.is_empty() {
            self.write_history(rule, spec.as_ref(), &transitions).await;
        }
        let at = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_else(Utc::now);
        let record = RuleStateRecord {
            alert_rule_id: rule.alert_rule_id.clone(),
            // Written from `state` by `States`.
            instances: String::new(),
            plugin_state,
            last_evaluated_at: Some(at),
            last_error: error.clone(),
            evaluations: prev.as_ref().map_or(0, |p| p.evaluations) + 1,
            skipped_ticks: prev.as_ref().map_or(0, |p| p.skipped_ticks)
                + i64::try_from(skipped).unwrap_or(i64::MAX),
            updated_at: Utc::now(),
        };
        // The alert's course (and whether the rule fails) is durable before this returns; a
        // state that moved only in values and counts is written with the next batch.
        let now = !transitions.is_empty()
            || state.course() != course
            || prev.as_ref().is_none_or(|p| {
                p.last_error.is_some() != record.last_error.is_some()
                    || p.plugin_state != record.plugin_state
            });
        let state = Arc::new(state);
        self.states.put(record, Arc::clone(&state), now).await?;
        metrics::counter!("telemetryflow_alert_evaluations_total").increment(1);
        if error.is_some() {
            metrics::counter!("telemetryflow_alert_evaluation_failures_total").increment(1);
        }
        Ok(Evaluated {
            transitions,
            error,
            state,
        })
    }

    /// Replays a rule over `[from_ms, to_ms]`: each tick of its schedule in that range runs its
    /// queries and condition as a live evaluation at that tick would, through a fresh state
    /// machine; nothing is written. The transitions it would have produced, in order.
    ///
    /// # Errors
    /// A composite rule, or more than [`MAX_BACKTEST_EVALUATIONS`] ticks in the range.
    pub async fn backtest(
        &self,
        rule: &AlertRuleRecord,
        spec: &RuleSpec,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Transition>, String> {
        if spec.composite.is_some() {
            return Err("a composite rule follows other rules' live states; backtest those".into());
        }
        let schedule = spec.schedule(&rule.alert_rule_id);
        let mut ticks = Vec::new();
        let mut t = schedule.next_after(from_ms - 1);
        while let Some(at) = t.filter(|at| *at <= to_ms) {
            if ticks.len() == MAX_BACKTEST_EVALUATIONS {
                return Err(format!(
                    "the range holds more than {MAX_BACKTEST_EVALUATIONS} evaluations of this rule; shorten it"
                ));
            }
            ticks.push(at);
            t = schedule.next_after(at);
        }
        let lifecycle = spec.lifecycle();
        let mut state = RuleState::default();
        let mut plugin_state = None;
        let mut out = Vec::new();
        for at in ticks {
            let outcome = self.condition(rule, spec, at, &mut plugin_state).await;
            out.extend(state.apply(&lifecycle, &outcome, at));
        }
        Ok(out)
    }

    /// Runs one of a rule's queries over `[from_ms, to_ms)`. The query is planned once per
    /// rule and text (`query::Prepared`, its window left as parameters) and only run after
    /// that; a query that cannot be kept so is rendered with its window and planned each time.
    async fn run_query(
        &self,
        rule: &AlertRuleRecord,
        scope: &Scope,
        name: &str,
        sql: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<query::SqlOutput, query::QueryError> {
        let key = (rule.alert_rule_id.clone(), name.to_string());
        let cached = self
            .prepared
            .lock()
            .get(&key)
            .filter(|(text, _)| text == sql)
            .map(|(_, p)| p.clone());
        let prepared = match cached {
            Some(p) => p,
            None => {
                let p = query::Prepared::new(
                    self.telemetry.as_ref(),
                    scope,
                    sql,
                    &["__from", "__to"],
                    &self.limits,
                )
                .await?
                .map(Arc::new);
                self.prepared
                    .lock()
                    .insert(key, (sql.to_string(), p.clone()));
                p
            }
        };
        match prepared {
            Some(p) => {
                use query::Param::TimestampMs;
                let window = [
                    ("__from", TimestampMs(from_ms)),
                    ("__to", TimestampMs(to_ms)),
                ];
                p.run(&window, &self.limits).await
            }
            None => {
                let sql = render_sql(sql, from_ms, to_ms);
                query::run_scoped_sql(self.telemetry.as_ref(), scope, &sql, &self.limits).await
            }
        }
    }

    /// Runs the queries and the condition plugin; the series it saw, or why not.
    async fn condition(
        &self,
        rule: &AlertRuleRecord,
        spec: &RuleSpec,
        now_ms: i64,
        plugin_state: &mut Option<Vec<u8>>,
    ) -> Outcome {
        let Some(condition) = &spec.condition else {
            return Outcome::Failed("the rule has no condition".into());
        };
        let scope = Scope {
            organization_id: rule.organization_id.clone(),
            workspace_id: rule.workspace_id.clone(),
            tenant_id: rule.tenant_id.clone(),
        };
        let to = now_ms - spec.query_offset_ms();
        let mut earliest = to;
        let mut inputs = Vec::with_capacity(spec.queries.len());
        for q in &spec.queries {
            let from = to - alert::spec::parse_duration(&q.range).unwrap_or(300_000);
            earliest = earliest.min(from);
            let out = match self
                .run_query(rule, &scope, &q.name, &q.sql, from, to)
                .await
            {
                Ok(out) => out,
                Err(e) => return Outcome::Failed(format!("query {}: {e}", q.name)),
            };
            match out.to_arrow_ipc() {
                Ok(data) => inputs.push(QueryResult {
                    name: q.name.clone(),
                    data,
                }),
                Err(e) => return Outcome::Failed(format!("query {}: {e}", q.name)),
            }
        }
        let plugin = match self
            .plugins
            .plugin(&rule.workspace_id, &condition.plugin)
            .await
        {
            Ok(p) => p,
            Err(m) => return Outcome::Failed(m),
        };
        let ctx = EvaluationContext {
            rule_id: rule.alert_rule_id.clone(),
            evaluation_time_ms: now_ms,
            interval_ms: u64::try_from(spec.schedule(&rule.alert_rule_id).interval_ms(now_ms))
                .unwrap_or(60_000),
            range_start_ms: earliest,
            range_end_ms: to,
            config: condition.config.to_string(),
            state: plugin_state.clone(),
        };
        let rt = self.plugins.runtime();
        let result = tokio::task::spawn_blocking(move || rt.evaluate(&plugin, &ctx, &inputs)).await;
        if let Ok(r) = &result {
            self.plugins
                .report(
                    &rule.workspace_id,
                    &condition.plugin,
                    r.as_ref().map(|_| ()),
                )
                .await;
        }
        let evaluation = match result {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return Outcome::Failed(e.to_string()),
            Err(e) => return Outcome::Failed(format!("the evaluation did not finish: {e}")),
        };
        if evaluation.state.is_some() {
            plugin_state.clone_from(&evaluation.state);
        }
        Outcome::Series(
            evaluation
                .series
                .into_iter()
                .map(|s| {
                    let labels = alert_labels(&s.labels, spec, s.severity.as_deref());
                    let mut annotations: Labels = s.annotations.clone();
                    for (k, t) in &spec.annotations {
                        annotations.retain(|(a, _)| a != k);
                        annotations.push((k.clone(), render_annotation(t, &labels, s.value)));
                    }
                    Observation {
                        labels,
                        verdict: verdict(s.status),
                        value: s.value,
                        severity: s.severity,
                        annotations,
                    }
                })
                .collect(),
        )
    }

    /// A composite rule: one series, alerting when the listed rules' states say so (a rule
    /// counts as alerting while one of its instances fires).
    async fn composite(
        &self,
        rule: &AlertRuleRecord,
        spec: &RuleSpec,
        c: &alert::spec::CompositeSpec,
    ) -> Result<Outcome, MetaError> {
        let mut states = Vec::with_capacity(c.rules.len());
        for id in &c.rules {
            let found = self
                .alerts
                .rule(id)
                .await?
                .filter(|r| r.tenant_id == rule.tenant_id && r.deleted_at.is_none());
            if found.is_none() {
                return Ok(Outcome::Failed(format!(
                    "rule {id} of the composite is gone"
                )));
            }
            let firing = self
                .alerts
                .rule_state(id)
                .await?
                .and_then(|s| serde_json::from_str::<RuleState>(&s.instances).ok())
                .is_some_and(|s| s.instances.values().any(|i| i.state == State::Firing));
            states.push(firing);
        }
        let alerting = match c.op {
            alert::spec::CompositeOp::And => states.iter().all(|f| *f),
            alert::spec::CompositeOp::Or => states.iter().any(|f| *f),
        };
        let labels = alert_labels(&Vec::new(), spec, None);
        Ok(Outcome::Series(vec![Observation {
            labels,
            verdict: if alerting {
                Verdict::Alerting
            } else {
                Verdict::Ok
            },
            value: Some(states.iter().filter(|f| **f).count() as f64),
            severity: None,
            annotations: Vec::new(),
        }]))
    }

    /// Appends the transitions to `alert_history`. A failed write is logged, not fatal: the
    /// state (what notifications follow) matters more than the log of it.
    async fn write_history(
        &self,
        rule: &AlertRuleRecord,
        spec: Option<&RuleSpec>,
        transitions: &[Transition],
    ) {
        let n = transitions.len();
        let col = |f: &dyn Fn(&Transition) -> String| -> ArrayRef {
            Arc::new(StringArray::from(
                transitions.iter().map(f).collect::<Vec<String>>(),
            ))
        };
        let rule_severity = spec.map_or_else(|| rule.severity.clone(), |s| s.severity.clone());
        let batch = RecordBatch::try_new(
            model::schema_of(Table::AlertHistory),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(
                        transitions
                            .iter()
                            .map(|t| t.at_ms.saturating_mul(1_000_000))
                            .collect::<Vec<i64>>(),
                    )
                    .with_timezone("UTC"),
                ),
                col(&|_| rule.alert_rule_id.clone()),
                col(&|_| rule.name.clone()),
                col(&|t| {
                    t.labels
                        .iter()
                        .find(|(k, _)| k == "severity")
                        .map_or_else(|| rule_severity.clone(), |(_, v)| v.clone())
                }),
                col(&|t| t.to.as_str().to_string()),
                col(&|t| t.reason.clone()),
                col(&|_| rule.organization_id.clone()),
                col(&|_| rule.workspace_id.clone()),
                col(&|_| rule.tenant_id.clone()),
                col(&|t| {
                    json!({
                        "fingerprint": t.fingerprint,
                        "from": t.from.as_str(),
                        "labels": t.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                        "value": t.value,
                    })
                    .to_string()
                }),
            ],
        );
        let result = match batch {
            Ok(b) => self
                .telemetry
                .write(vec![(Table::AlertHistory, b)])
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::error!(rule = %rule.alert_rule_id, transitions = n, error = %e,
                "alert history not written");
        }
    }
}

/// When a rule last ran, from its stored state (for the scheduler after a restart).
pub fn last_run_ms(state: Option<&RuleStateRecord>) -> Option<i64> {
    state.and_then(|s| s.last_evaluated_at).map(millis)
}
