//! The retry schedule of notifications.

use alert::delivery::{Attempt, Next, RetryPolicy};

#[test]
fn transient_failures_back_off_exponentially_with_jitter() {
    let p = RetryPolicy::default();
    let mut delays = Vec::new();
    for attempt in 1..=6 {
        match p.next("k", attempt, 0, 0, &Attempt::Transient("503".into())) {
            Next::RetryAt(at) => delays.push(at),
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    for (i, d) in delays.iter().enumerate() {
        let base = 1000i64 << i;
        assert!(
            *d >= base / 2 && *d < base,
            "attempt {}: {d} ms for a base of {base}",
            i + 1
        );
    }
    assert_eq!(
        p.next("k", 3, 0, 0, &Attempt::Transient("x".into())),
        p.next("k", 3, 0, 0, &Attempt::Transient("x".into())),
        "the jitter is stable"
    );
    // Capped at the maximum backoff.
    match p.next("k", 11, 0, 0, &Attempt::Transient("x".into())) {
        Next::RetryAt(at) => assert!(at <= 300_000, "{at}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rate_limits_wait_for_the_hint_and_permanent_failures_stop() {
    let p = RetryPolicy::default();
    let limited = Attempt::RateLimited {
        retry_after_ms: 7_000,
        message: "slow down".into(),
    };
    assert_eq!(p.next("k", 1, 0, 100, &limited), Next::RetryAt(7_100));
    assert!(matches!(
        p.next("k", 1, 0, 0, &Attempt::Permanent("404 gone".into())),
        Next::GiveUp(m) if m.contains("404 gone")
    ));
    assert_eq!(p.next("k", 1, 0, 0, &Attempt::Delivered), Next::Done);
}

#[test]
fn retries_stop_after_max_attempts_or_max_age() {
    let p = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    assert!(matches!(
        p.next("k", 3, 0, 0, &Attempt::Transient("503".into())),
        Next::GiveUp(m) if m.contains("after 3 attempts") && m.contains("503")
    ));
    let old = RetryPolicy::default();
    assert!(matches!(
        old.next("k", 2, 0, 2 * 3_600_000, &Attempt::Transient("503".into())),
        Next::GiveUp(m) if m.contains("older than 2h")
    ));
}
