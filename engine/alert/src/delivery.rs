//! When to try a notification again. Delivery is at least once: a transient failure (5xx,
//! network, timeout) is retried with exponential backoff and jitter, a rate limit after the
//! receiver's own hint (never sooner), and a permanent failure (4xx, a refused address, a bad
//! config) never. Retries stop after `max_attempts` or once the notification is older than
//! `max_age_ms`, and the give-up is recorded like every attempt.

use serde::{Deserialize, Serialize};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered,
    Permanent(String),
    Transient(String),
    RateLimited {
        retry_after_ms: u64,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub max_attempts: u32,
    pub max_age_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 5 * 60_000,
            max_attempts: 12,
            max_age_ms: 2 * 3_600_000,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Done,
    RetryAt(i64),
    GiveUp(String),
}

/// A jitter in [0.5, 1.0) of the delay, stable for a notification and attempt (so a replay or
/// a backtest computes the same schedule).
fn jitter(key: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    #[allow(clippy::cast_precision_loss)]
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    0.5 + unit / 2.0
}

impl RetryPolicy {
    /// After attempt number `attempt` (1-based) of the notification `key` created at
    /// `created_ms` ended with `outcome` at `now_ms`.
    pub fn next(
        &self,
        key: &str,
        attempt: u32,
        created_ms: i64,
        now_ms: i64,
        outcome: &Attempt,
    ) -> Next {
        let (delay_ms, why) = match outcome {
            Attempt::Delivered => return Next::Done,
            Attempt::Permanent(m) => return Next::GiveUp(format!("permanent failure: {m}")),
            Attempt::Transient(m) => {
                let exp = self
                    .initial_backoff_ms
                    .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
                    .min(self.max_backoff_ms);
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let d = (exp as f64 * jitter(key, attempt)) as u64;
                (d.max(1), m.clone())
            }
            Attempt::RateLimited {
                retry_after_ms,
                message,
            } => (
                (*retry_after_ms).max(self.initial_backoff_ms),
                message.clone(),
            ),
        };
        if attempt >= self.max_attempts {
            return Next::GiveUp(format!("gave up after {attempt} attempts; the last: {why}"));
        }
        let at = now_ms.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
        if at - created_ms > self.max_age_ms {
            return Next::GiveUp(format!(
                "gave up: the notification would be older than {} at the next attempt; the last failure: {why}",
                crate::duration(self.max_age_ms)
            ));
        }
        Next::RetryAt(at)
    }
}
