//! Rules' evaluation states between evaluations: read from the store once, then kept in memory,
//! parsed (the evaluator is their only writer), and written two ways:
//!
//! - A state whose course changed (an instance appeared, went, or changed state or clock; see
//!   `RuleState::course`), or the rule's first, is written in a group commit: evaluations that
//!   finish while a commit is under way share the next one, so a commit is paid per batch, not
//!   per rule. It is durable before the evaluation that made it returns.
//! - A state that changed only in what every evaluation changes (values, annotations, counts,
//!   when it was evaluated) waits, the newest per rule, and all that waited are written in one
//!   transaction once the oldest has waited `save_every` (the scheduler checks
//!   [`States::saving_due`]), when a rule is dropped, and at shutdown. A crash
//!   loses at most that much of those; the alerts themselves are never behind. Grafana saves
//!   its alert states the same way (`state_periodic_save_interval`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// instances parsed, shared between the cache and the states waiting to be written (an
/// evaluation copies them only while its last state still waits).
#[derive(Clone)]
pub(crate) struct Kept {
    pub record: RuleStateRecord,
    pub state: Arc<RuleState>,
}

impl Kept {
    fn from_stored(mut record: RuleStateRecord) -> Kept {
        let state = serde_json::from_str(&record.instances).unwrap_or_default();
        record.instances = String::new();
        Kept {
            record,
            state: Arc::new(state),
        }
    }

    /// The row to write: the record with its instances as text.
    fn to_store(&self) -> RuleStateRecord {
        RuleStateRecord {
            instances: serde_json::to_string(&*self.state).unwrap_or_else(|_| "{}".into()),
            ..self.record.clone()
        }
    }
}

/// States waiting to be written, the newest per rule.
#[derive(Default)]
struct Waiting {
    /// When the oldest of them started waiting.
    since: Option<Instant>,
    rules: HashMap<String, Kept>,
}

pub(crate) struct States {
    alerts: Arc<dyn AlertStore>,
    cache: Mutex<HashMap<String, Kept>>,
    queue: Mutex<Queue>,
    /// Held while anything is written, so a rule's writes land in the order they were made.
    committed: tokio::sync::Mutex<Committed>,
    waiting: Mutex<Waiting>,
    /// How long a state whose course did not change may wait to be written.
    save_every: Duration,
}

impl States {
    pub(crate) fn new(alerts: Arc<dyn AlertStore>, save_every: Duration) -> States {
        States {
            alerts,
            cache: Mutex::default(),
            queue: Mutex::default(),
            committed: tokio::sync::Mutex::default(),
            waiting: Mutex::default(),
            save_every,
        }
    }

    /// A rule's last state, taken for its next evaluation (which puts the next one back):
    /// from memory once it has been read or written here. Taken, not copied: an evaluation that
    /// fails before it puts reads it again from what waits or from the store, which hold it.
    pub(crate) async fn take(&self, rule_id: &str) -> Result<Option<Kept>, MetaError> {
        if let Some(s) = self.cache.lock().remove(rule_id) {
            return Ok(Some(s));
        }
        if let Some(s) = self.waiting.lock().rules.get(rule_id) {
            return Ok(Some(s.clone()));
        }
        let Some(stored) = self.alerts.rule_state(rule_id).await? else {
            return Ok(None);
        };
        Ok(Some(Kept::from_stored(stored)))
    }

    /// Keeps a rule's state and writes it: `now`, it returns once it is committed (in a batch
    /// with whatever other states were queued); otherwise it waits with the others for the
    /// next batch write ([`States::save_waiting`], which the scheduler makes when due).
    pub(crate) async fn put(
        &self,
        mut record: RuleStateRecord,
        state: Arc<RuleState>,
        now: bool,
    ) -> Result<(), MetaError> {
        let id = record.alert_rule_id.clone();
        if !now {
            record.instances = String::new();
            let kept = Kept { record, state };
            {
                let mut w = self.waiting.lock();
                w.rules.insert(id.clone(), kept.clone());
                w.since.get_or_insert_with(Instant::now);
            }
            self.cache.lock().insert(id, kept);
            return Ok(());
        }
        // Anything of this rule still waiting is older than this: this replaces it.
        self.waiting.lock().rules.remove(&id);
        // The text goes to the store; memory keeps the parsed instances.
        record.instances = String::new();
        let kept = Kept { record, state };
        let mine = {
            let mut q = self.queue.lock();
            q.pending.push(kept.to_store());
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
                cache.insert(id, kept);
            }
            // What the store holds is unknown now: read it again next time.
            Err(_) => {
                cache.remove(&id);
            }
        }
        result
    }

    /// Writes every state that waits, in one transaction. A failure puts them back (unless a
    /// newer one of the same rule came meanwhile). How many were written.
    pub(crate) async fn save_waiting(&self) -> Result<usize, MetaError> {
        let _order = self.committed.lock().await;
        let taken = {
            let mut w = self.waiting.lock();
            w.since = None;
            std::mem::take(&mut w.rules)
        };
        if taken.is_empty() {
            return Ok(0);
        }
        let records: Vec<RuleStateRecord> = taken.values().map(Kept::to_store).collect();
        match self.alerts.put_rule_states(&records).await {
            Ok(()) => Ok(records.len()),
            Err(e) => {
                let mut w = self.waiting.lock();
                w.since.get_or_insert_with(Instant::now);
                for (id, k) in taken {
                    w.rules.entry(id).or_insert(k);
                }
                Err(e)
            }
        }
    }

    /// Whether states wait longer than [`States::save_every`].
    pub(crate) fn saving_due(&self) -> bool {
        self.waiting
            .lock()
            .since
            .is_some_and(|s| s.elapsed() >= self.save_every)
    }

    /// Forgets a rule (it was deleted or disabled): its state is read afresh if it comes back.
    pub(crate) fn forget(&self, rule_id: &str) {
        self.cache.lock().remove(rule_id);
    }
}
