//! The scheduler: every enabled rule runs on its schedule (a fixed interval at a stable phase
//! of its own, or cron), at most `concurrency` at once. A rule whose evaluation is still
//! running when its next tick comes skips that tick, and the skip is counted in its state
//! (`skipped_ticks`), as Prometheus counts missed iterations. Rules are re-read every
//! `refresh`, so a created, changed or disabled rule takes effect within it.
//!
//! An evaluation runs at its tick's time (not at the moment it happened to start), so the same
//! data gives the same answer whatever the load: what backtests rely on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alert::spec::Schedule;
use chrono::Utc;
use parking_lot::Mutex;
use storage::AlertRuleRecord;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::evaluate::{Evaluated, Evaluator};

/// Called after each evaluation (where notifications start).
pub type OnEvaluated = Arc<dyn Fn(&AlertRuleRecord, &Evaluated) + Send + Sync>;

/// How the scheduler runs.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Evaluations at once.
    pub concurrency: usize,
    /// How often the rule list is re-read.
    pub refresh: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 8,
            refresh: Duration::from_secs(2),
        }
    }
}

struct Entry {
    rule: Arc<AlertRuleRecord>,
    schedule: Schedule,
    next_ms: i64,
    /// Ticks missed since the last evaluation started.
    skipped: u64,
}

/// Runs rules on their schedules until stopped.
pub struct Scheduler {
    evaluator: Arc<Evaluator>,
    config: SchedulerConfig,
    on_evaluated: Option<OnEvaluated>,
}

impl Scheduler {
    pub fn new(
        evaluator: Arc<Evaluator>,
        config: SchedulerConfig,
        on_evaluated: Option<OnEvaluated>,
    ) -> Scheduler {
        Scheduler {
            evaluator,
            config,
            on_evaluated,
        }
    }

    /// Starts the loop; it ends when `stop` turns true (running evaluations finish first).
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
            let running: Arc<Mutex<HashSet<String>>> = Arc::default();
            let mut entries: HashMap<String, Entry> = HashMap::new();
            let mut refreshed: Option<tokio::time::Instant> = None;
            let saving = Arc::new(AtomicBool::new(false));
            loop {
                if *stop.borrow() {
                    break;
                }
                let mut dropped = false;
                if refreshed.is_none_or(|t| t.elapsed() >= self.config.refresh) {
                    dropped = self.refresh(&mut entries).await;
                    refreshed = Some(tokio::time::Instant::now());
                }
                // States that waited long enough (or a dropped rule's last one) are written
                // aside, one write at a time.
                if (dropped || self.evaluator.saving_due()) && !saving.swap(true, Ordering::AcqRel)
                {
                    let evaluator = Arc::clone(&self.evaluator);
                    let saving = Arc::clone(&saving);
                    tokio::spawn(async move {
                        if let Err(e) = evaluator.save_states().await {
                            tracing::error!(error = %e, "alert states not saved; they are kept and tried again");
                        }
                        saving.store(false, Ordering::Release);
                    });
                }
                let now = Utc::now().timestamp_millis();
                for entry in entries.values_mut() {
                    if entry.next_ms > now {
                        continue;
                    }
                    let due = entry.next_ms;
                    // Ticks that went by entirely (the process was busy or asleep) count as
                    // skipped, and the rule runs once, at the latest of them.
                    let mut at = due;
                    while let Some(n) = entry.schedule.next_after(at).filter(|n| *n <= now) {
                        at = n;
                        entry.skipped += 1;
                        if entry.skipped > 10_000 {
                            break;
                        }
                    }
                    entry.next_ms = entry.schedule.next_after(at).unwrap_or(i64::MAX);
                    let id = entry.rule.alert_rule_id.clone();
                    if !running.lock().insert(id.clone()) {
                        entry.skipped += 1;
                        metrics::counter!("telemetryflow_alert_ticks_skipped_total").increment(1);
                        continue;
                    }
                    let skipped = std::mem::take(&mut entry.skipped);
                    let rule = Arc::clone(&entry.rule);
                    let evaluator = Arc::clone(&self.evaluator);
                    let running = Arc::clone(&running);
                    let hook = self.on_evaluated.clone();
                    // Waiting here for a free slot holds back later ticks too (they are then
                    // counted as skipped), rather than piling up tasks.
                    let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                        break;
                    };
                    tokio::spawn(async move {
                        let _slot = slot;
                        match evaluator.evaluate(&rule, at, skipped).await {
                            Ok(done) => {
                                if let Some(e) = &done.error {
                                    tracing::warn!(rule = %rule.alert_rule_id, error = %e,
                                        "alert evaluation failed");
                                }
                                if let Some(h) = hook {
                                    h(&rule, &done);
                                }
                            }
                            Err(e) => tracing::error!(rule = %rule.alert_rule_id, error = %e,
                                "alert state could not be read or written"),
                        }
                        running.lock().remove(&rule.alert_rule_id);
                    });
                }
                let next = entries
                    .values()
                    .map(|e| e.next_ms)
                    .min()
                    .unwrap_or(i64::MAX);
                let wait = (next - Utc::now().timestamp_millis()).clamp(10, 250);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
                    _ = stop.changed() => {}
                }
            }
            // Let running evaluations finish their writes, then write what waits.
            let _ = slots
                .acquire_many(u32::try_from(self.config.concurrency.max(1)).unwrap_or(1))
                .await;
            match self.evaluator.save_states().await {
                Ok(n) => tracing::debug!(states = n, "alert states saved at shutdown"),
                Err(e) => tracing::error!(error = %e, "alert states not saved at shutdown"),
            }
        })
    }

    /// Re-reads the enabled rules: new ones are scheduled from now, changed ones get their new
    /// schedule, gone ones are dropped; whether any was.
    async fn refresh(&self, entries: &mut HashMap<String, Entry>) -> bool {
        let rules = match self.evaluator.alerts.enabled_rules().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read alert rules; keeping the last list");
                return false;
            }
        };
        let now = Utc::now().timestamp_millis();
        let mut keep = HashSet::with_capacity(rules.len());
        for r in rules {
            keep.insert(r.alert_rule_id.clone());
            let unchanged = entries
                .get(&r.alert_rule_id)
                .is_some_and(|e| e.rule.updated_at == r.updated_at);
            if unchanged {
                continue;
            }
            let schedule = match crate::rule_spec(&r, Vec::new()) {
                Ok(spec) => spec.schedule(&r.alert_rule_id),
                Err(_) => alert::spec::Schedule::Every {
                    interval_ms: 60_000,
                    phase_ms: alert::spec::phase_ms(&r.alert_rule_id, 60_000),
                },
            };
            let next_ms = schedule.next_after(now).unwrap_or(i64::MAX);
            entries.insert(
                r.alert_rule_id.clone(),
                Entry {
                    rule: Arc::new(r),
                    schedule,
                    next_ms,
                    skipped: 0,
                },
            );
        }
        let before = entries.len();
        entries.retain(|id, _| {
            let kept = keep.contains(id);
            if !kept {
                self.evaluator.forget(id);
            }
            kept
        });
        entries.len() < before
    }
}
