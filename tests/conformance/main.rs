//! The storage conformance suite: the same checks against every telemetry store.
//!
//! The embedded store always runs. ClickHouse runs when `CLICKHOUSE_URL` names one (CI starts the
//! chdb-core front and sets it, with `TELEMETRYFLOW_REQUIRE_CLICKHOUSE=1`, which turns a missing
//! ClickHouse into a failure instead of a loud skip). Each test gets its own ClickHouse database.

#[path = "../common/clickhouse_env.rs"]
mod clickhouse_env;
mod data;
mod harness;
mod suite;
#[path = "../common/unique.rs"]
mod unique;
