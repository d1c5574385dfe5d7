//! Which ClickHouse the tests use, shared by the test targets that need one.
//!
//! `CLICKHOUSE_URL` names it (CI starts `tests/clickhouse/front.py` over the chdb-core engine and
//! sets it; point it at a real server to run the same tests there). Without it the ClickHouse
//! tests skip and say so loudly, unless `TELEMETRYFLOW_REQUIRE_CLICKHOUSE=1` (set by CI), which
//! turns the skip into a failure.

/// The ClickHouse HTTP URL, or `None` after saying loudly why the test skips.
///
/// # Panics
/// When ClickHouse is required (CI) and not configured.
pub fn clickhouse_url() -> Option<String> {
    match std::env::var("CLICKHOUSE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            require_or_skip("CLICKHOUSE_URL is not set");
            None
        }
    }
}

/// Fails when ClickHouse tests are required; otherwise prints why this one skips.
pub fn require_or_skip(why: &str) {
    assert!(
        std::env::var("TELEMETRYFLOW_REQUIRE_CLICKHOUSE").as_deref() != Ok("1"),
        "TELEMETRYFLOW_REQUIRE_CLICKHOUSE=1 but {why}: the ClickHouse tests must run here"
    );
    eprintln!(
        "\n*** SKIPPING a ClickHouse test: {why}. ***\n\
         *** Start tests/clickhouse/front.py (or a real server) and set CLICKHOUSE_URL=http://host:8123. ***\n"
    );
}

/// A fresh database name, unique per process and call.
pub fn fresh_database(prefix: &str) -> String {
    crate::unique::unique_name(prefix)
}
