//! Rules' evaluation states between evaluations: read from the store once, then kept in memory,
//! parsed (the evaluator is their only writer), and written in group commits: evaluations that finish
//! while a commit is under way share the next one, so a commit is paid per batch, not per rule.
//! Every write is durable before the evaluation that made it returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alert::RuleState;
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

/// A rule's last state: its record (whose `instances` text is left empty here) and the
/// instances parsed.
#[derive(Clone)]
pub(crate) struct Kept {
    pub record: RuleStateRecord,
    pub state: RuleState,
}

impl Kept {
    fn from_stored(mut record: RuleStateRecord) -> Kept {
        let state = serde_json::from_str(&record.instances).unwrap_or_default();
        record.instances = String::new();
        Kept { record, state }
    }
}

pub(crate) struct States {
    alerts: Arc<dyn AlertStore>,
    cache: Mutex<HashMap<String, Kept>>,
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
    pub(crate) async fn get(&self, rule_id: &str) -> Result<Option<Kept>, MetaError> {
        if let Some(s) = self.cache.lock().get(rule_id) {
            return Ok(Some(s.clone()));
        }
        let Some(stored) = self.alerts.rule_state(rule_id).await? else {
            return Ok(None);
        };
        let kept = Kept::from_stored(stored);
        self.cache
            .lock()
            .entry(rule_id.to_string())
            .or_insert_with(|| kept.clone());
        Ok(Some(kept))
    }

    /// Writes a rule's state (`record.instances` is `state` as text); returns once it is
    /// committed (in a batch with whatever other states were waiting).
    pub(crate) async fn put(
        &self,
        mut record: RuleStateRecord,
        state: RuleState,
    ) -> Result<(), MetaError> {
        let id = record.alert_rule_id.clone();
        // The text goes to the store; memory keeps the parsed instances.
        let text = std::mem::take(&mut record.instances);
        let mine = {
            let mut q = self.queue.lock();
            q.pending.push(RuleStateRecord {
                instances: text,
                ..record.clone()
            });
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
                cache.insert(id, Kept { record, state });
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
