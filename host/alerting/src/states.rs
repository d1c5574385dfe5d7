//! Rules' evaluation states between evaluations: read from the store once, then kept in memory
//! (the evaluator is their only writer), and written in group commits: evaluations that finish
//! while a commit is under way share the next one, so a commit is paid per batch, not per rule.
//! Every write is durable before the evaluation that made it returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use storage::{AlertStore, MetaError, RuleStateRecord};

/// How many failed batches are remembered (for the evaluations that waited on them).
const FAILURES_KEPT: usize = 256;

#[derive(Default)]
struct Queue {
    /// The batch being filled now.
    batch: u64,
    pending: Vec<RuleStateRecord>,
}

#[derive(Default)]
struct Committed {
    /// Batches `< upto` are written (or failed, see `failed`).
    upto: u64,
    /// Recent batches that failed, with why.
    failed: BTreeMap<u64, String>,
}

pub(crate) struct States {
    alerts: Arc<dyn AlertStore>,
    cache: Mutex<HashMap<String, RuleStateRecord>>,
    queue: Mutex<Queue>,
    committed: tokio::sync::Mutex<Committed>,
}

impl States {
    pub(crate) fn new(alerts: Arc<dyn AlertStore>) -> States {
        States {
            alerts,
            cache: Mutex::default(),
            queue: Mutex::default(),
            committed: tokio::sync::Mutex::default(),
        }
    }

    /// A rule's last state: from memory once it has been read or written here.
    pub(crate) async fn get(&self, rule_id: &str) -> Result<Option<RuleStateRecord>, MetaError> {
        if let Some(s) = self.cache.lock().get(rule_id) {
            return Ok(Some(s.clone()));
        }
        let stored = self.alerts.rule_state(rule_id).await?;
        if let Some(s) = &stored {
            self.cache
                .lock()
                .entry(rule_id.to_string())
                .or_insert_with(|| s.clone());
        }
        Ok(stored)
    }

    /// Writes a rule's state; returns once it is committed (in a batch with whatever other
    /// states were waiting).
    pub(crate) async fn put(&self, state: RuleStateRecord) -> Result<(), MetaError> {
        let id = state.alert_rule_id.clone();
        let mine = {
            let mut q = self.queue.lock();
            q.pending.push(state.clone());
            q.batch
        };
        let result = {
            let mut done = self.committed.lock().await;
            if done.upto <= mine {
                // Nobody wrote this batch yet: write it, with everything queued behind it.
                let (batch, records) = {
                    let mut q = self.queue.lock();
                    let b = q.batch;
                    q.batch += 1;
                    (b, std::mem::take(&mut q.pending))
                };
                let r = self.alerts.put_rule_states(&records).await;
                done.upto = batch + 1;
                if let Err(e) = &r {
                    done.failed.insert(batch, e.to_string());
                    while done.failed.len() > FAILURES_KEPT {
                        done.failed.pop_first();
                    }
                }
                r
            } else {
                match done.failed.get(&mine) {
                    Some(m) => Err(MetaError::Backend(m.clone())),
                    None => Ok(()),
                }
            }
        };
        let mut cache = self.cache.lock();
        match &result {
            Ok(()) => {
                cache.insert(id, state);
            }
            // What the store holds is unknown now: read it again next time.
            Err(_) => {
                cache.remove(&id);
            }
        }
        result
    }

    /// Forgets a rule (it was deleted or disabled): its state is read afresh if it comes back.
    pub(crate) fn forget(&self, rule_id: &str) {
        self.cache.lock().remove(rule_id);
    }
}
