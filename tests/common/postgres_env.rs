//! Which PostgreSQL the tests use: `TELEMETRYFLOW_TEST_DATABASE_URL` (any database on the server;
//! each test creates its own). Without it the PostgreSQL tests skip and say so loudly, unless
//! `TELEMETRYFLOW_REQUIRE_POSTGRES=1` (set by CI) turns the skip into a failure.

use sqlx::Connection;

/// A URL of a fresh, empty database, or `None` after saying loudly why the test skips.
///
/// # Panics
/// When PostgreSQL is required (CI) and not configured or not reachable.
pub async fn fresh_postgres() -> Option<String> {
    let required = std::env::var("TELEMETRYFLOW_REQUIRE_POSTGRES").as_deref() == Ok("1");
    let Some(admin) = std::env::var("TELEMETRYFLOW_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !required,
            "TELEMETRYFLOW_REQUIRE_POSTGRES=1 but TELEMETRYFLOW_TEST_DATABASE_URL is not set"
        );
        eprintln!(
            "\n*** SKIPPING a PostgreSQL test: TELEMETRYFLOW_TEST_DATABASE_URL is not set. ***\n\
             *** e.g. TELEMETRYFLOW_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres ***\n"
        );
        return None;
    };
    let name = crate::unique::unique_name("tf_test");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("//").map_or(0, |j| j + 1) => base[..i].to_string(),
        _ => base,
    };
    Some(format!("{base}/{name}{query}"))
}
