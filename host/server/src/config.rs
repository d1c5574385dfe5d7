//! Layered configuration: command line > environment > config file > defaults.
//!
//! Every flag has an environment twin (`TELEMETRYFLOW_…`); clap reads both, so a value from
//! either beats the file. The file is TOML with the same names in snake_case; unknown keys are
//! an error, so a typo never passes silently.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// Options of `telemetryflow serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file; its values sit below flags and environment.
    #[arg(long, env = "TELEMETRYFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where metadata (SQLite) and telemetry (WAL + Parquet) live. Default: ./data
    #[arg(long, env = "TELEMETRYFLOW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// API listen address. Default: 127.0.0.1:8080
    #[arg(long, env = "TELEMETRYFLOW_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address. Default: 127.0.0.1:4318
    #[arg(long, env = "TELEMETRYFLOW_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// OTLP/gRPC listen address. Default: 127.0.0.1:4317
    #[arg(long, env = "TELEMETRYFLOW_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Seconds between flushes of acknowledged data from the WAL to Parquet. Default: 30
    #[arg(long, env = "TELEMETRYFLOW_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,
    /// Email of the admin created at first start. Default: admin@telemetryflow.local
    #[arg(long, env = "TELEMETRYFLOW_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the admin created at first start; generated and printed once when unset.
    #[arg(long, env = "TELEMETRYFLOW_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Where metadata is stored: `sqlite` (default; `<data-dir>/metadata.db`) or `postgres`.
    #[arg(long, env = "TELEMETRYFLOW_META_STORE")]
    pub meta_store: Option<MetaBackend>,
    /// PostgreSQL URL for `--meta-store postgres`, e.g. postgres://user:pass@host:5432/db
    #[arg(long, env = "TELEMETRYFLOW_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where telemetry is stored: `embedded` (default; WAL + Parquet in the data dir) or
    /// `clickhouse`.
    #[arg(long, env = "TELEMETRYFLOW_TELEMETRY_STORE")]
    pub telemetry_store: Option<TelemetryBackend>,
    /// ClickHouse HTTP interface, e.g. http://127.0.0.1:8123
    #[arg(long, env = "TELEMETRYFLOW_CLICKHOUSE_URL")]
    pub clickhouse_url: Option<String>,
    /// ClickHouse user. Default: the server's default user.
    #[arg(long, env = "TELEMETRYFLOW_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,
    /// ClickHouse password.
    #[arg(
        long,
        env = "TELEMETRYFLOW_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    pub clickhouse_password: Option<String>,
    /// ClickHouse database (created if missing). Default: telemetryflow
    #[arg(long, env = "TELEMETRYFLOW_CLICKHOUSE_DATABASE")]
    pub clickhouse_database: Option<String>,
    /// Cluster name: `ON CLUSTER` DDL, ReplicatedMergeTree tables and Distributed tables.
    #[arg(long, env = "TELEMETRYFLOW_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,
    /// Who may register: `closed` (admins create users), `invite` (default: with an
    /// invitation), `open` (anyone, who gets a new organization).
    #[arg(long, env = "TELEMETRYFLOW_REGISTRATION")]
    pub registration: Option<RegistrationMode>,
    /// SMTP relay for verification, reset and invitation emails, e.g.
    /// smtp://user:pass@mail.example.com:587?tls=required or smtps://…:465
    #[arg(long, env = "TELEMETRYFLOW_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// From address of those emails. Default: TelemetryFlow <no-reply@telemetryflow.local>
    #[arg(long, env = "TELEMETRYFLOW_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// The console's URL, for links in emails. Default: http://<http-addr>
    #[arg(long, env = "TELEMETRYFLOW_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// An Alertmanager to forward firing and resolved alerts to (its base URL, e.g.
    /// http://alertmanager:9093), besides our own notifications.
    #[arg(long, env = "TELEMETRYFLOW_ALERTMANAGER_URL")]
    pub alertmanager_url: Option<String>,
}

/// Registration modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    Closed,
    #[default]
    Invite,
    Open,
}

/// The metadata backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MetaBackend {
    #[default]
    Sqlite,
    Postgres,
}

/// The telemetry backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryBackend {
    #[default]
    Embedded,
    Clickhouse,
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub otlp_http_addr: Option<SocketAddr>,
    pub otlp_grpc_addr: Option<SocketAddr>,
    pub flush_interval_secs: Option<u64>,
    /// OTLP requests processed at once before new ones get 503 + Retry-After. Default: 64
    pub ingest_max_in_flight: Option<usize>,
    /// Acknowledged bytes not yet flushed to Parquet before writes get 503. Default: 1 GiB
    pub max_unflushed_bytes: Option<usize>,
    /// Memory for the rows of the most recently flushed files, read without opening their
    /// Parquet (embedded store). Default: 128 MiB; 0 turns it off.
    pub hot_bytes: Option<usize>,
    /// Memory for the time buckets of earlier query answers that a refresh reuses. Default:
    /// 64 MiB; 0 turns it off.
    pub query_cache_bytes: Option<usize>,
    /// Days to keep per table, e.g. `traces_v3 = 14`.
    #[serde(default)]
    pub retention_days: BTreeMap<String, u32>,
    pub meta_store: Option<MetaBackend>,
    pub database_url: Option<String>,
    pub telemetry_store: Option<TelemetryBackend>,
    pub clickhouse_url: Option<String>,
    pub clickhouse_user: Option<String>,
    pub clickhouse_password: Option<String>,
    pub clickhouse_database: Option<String>,
    pub clickhouse_cluster: Option<String>,
    /// ClickHouse asynchronous inserts (server-side batching). Default: false
    pub clickhouse_async_insert: Option<bool>,
    /// Seconds one insert attempt may take. Default: 5
    pub clickhouse_insert_timeout_secs: Option<u64>,
    /// Seconds within which failed inserts are retried before ingest answers 503. Default: 8
    pub clickhouse_retry_budget_secs: Option<u64>,
    /// Inserts in flight at once; beyond them ingest answers 429. Default: 32
    pub clickhouse_max_concurrent_inserts: Option<usize>,
    pub registration: Option<RegistrationMode>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
    pub public_url: Option<String>,
    /// Failed sign-ins in a row before an account locks. Default: 5
    pub lockout_threshold: Option<i64>,
    /// Seconds an account stays locked. Default: 900
    pub lockout_duration_secs: Option<i64>,
    /// Days after which soft-deleted organizations, workspaces, tenants and users are purged.
    /// Default: 90
    pub purge_after_days: Option<u32>,
    /// Let notification channels send plain `http://` requests (public addresses still only).
    /// Default: false
    pub plugin_http_allow_plain: Option<bool>,
    /// TEST ONLY: let notification channels reach loopback addresses, for fake services in
    /// tests. Logs a warning at start and on every such request. Default: false
    pub plugin_http_allow_loopback_for_tests: Option<bool>,
    /// An Alertmanager to forward alerts to. Default: none
    pub alertmanager_url: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub otlp_grpc_addr: SocketAddr,
    pub flush_interval: Duration,
    pub retention_days: BTreeMap<model::Table, u32>,
    pub admin_email: String,
    /// `None`: generate one at first start and print it once.
    pub admin_password: Option<String>,
    pub ingest_max_in_flight: usize,
    pub max_unflushed_bytes: usize,
    pub hot_bytes: usize,
    pub query_cache_bytes: usize,
    /// `None`: the embedded store.
    pub clickhouse: Option<storage_clickhouse::ClickHouseConfig>,
    /// `None`: SQLite in the data dir; `Some(url)`: PostgreSQL.
    pub postgres_url: Option<String>,
    pub registration: RegistrationMode,
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// `None`: `http://<http_addr>`.
    pub public_url: Option<String>,
    pub lockout_threshold: i64,
    pub lockout_duration: Duration,
    pub purge_after_days: u32,
    /// Outgoing HTTP of notification channels.
    pub plugin_http: egress::Policy,
    /// An Alertmanager alerts are forwarded to.
    pub alertmanager_url: Option<String>,
    /// How long notifications under way may take to finish at shutdown; what is left resumes
    /// from the outbox at the next start.
    pub delivery_drain: Duration,
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_addr: addr("127.0.0.1:8080"),
            otlp_http_addr: addr("127.0.0.1:4318"),
            otlp_grpc_addr: addr("127.0.0.1:4317"),
            flush_interval: Duration::from_secs(30),
            retention_days: model::Table::ALL
                .into_iter()
                .map(|t| (t, t.default_retention_days()))
                .collect(),
            admin_email: "admin@telemetryflow.local".to_string(),
            admin_password: None,
            ingest_max_in_flight: 64,
            max_unflushed_bytes: 1 << 30,
            hot_bytes: 128 << 20,
            query_cache_bytes: 64 << 20,
            clickhouse: None,
            postgres_url: None,
            registration: RegistrationMode::Invite,
            smtp_url: None,
            smtp_from: "TelemetryFlow <no-reply@telemetryflow.local>".to_string(),
            public_url: None,
            lockout_threshold: 5,
            lockout_duration: Duration::from_secs(900),
            purge_after_days: 90,
            plugin_http: egress::Policy::default(),
            alertmanager_url: None,
            delivery_drain: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Resolves flags/env over the file over defaults.
    ///
    /// # Errors
    /// An unreadable or invalid config file, or an unknown table in `retention_days`.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let mut retention = d.retention_days.clone();
        for (name, days) in &file.retention_days {
            let table = model::Table::from_name(name)
                .with_context(|| format!("retention_days: unknown table {name:?}"))?;
            anyhow::ensure!(*days >= 1, "retention_days.{name} must be at least 1");
            retention.insert(table, *days);
        }
        let backend = args
            .telemetry_store
            .or(file.telemetry_store)
            .unwrap_or_default();
        let clickhouse = match backend {
            TelemetryBackend::Embedded => None,
            TelemetryBackend::Clickhouse => {
                let url = args
                    .clickhouse_url
                    .clone()
                    .or(file.clickhouse_url.clone())
                    .context("--telemetry-store clickhouse needs --clickhouse-url (TELEMETRYFLOW_CLICKHOUSE_URL)")?;
                let mut c = storage_clickhouse::ClickHouseConfig::new(url);
                c.user = args
                    .clickhouse_user
                    .clone()
                    .or(file.clickhouse_user.clone());
                c.password = args
                    .clickhouse_password
                    .clone()
                    .or(file.clickhouse_password.clone());
                if let Some(db) = args
                    .clickhouse_database
                    .clone()
                    .or(file.clickhouse_database.clone())
                {
                    c.database = db;
                }
                c.cluster = args
                    .clickhouse_cluster
                    .clone()
                    .or(file.clickhouse_cluster.clone());
                c.async_insert = file.clickhouse_async_insert.unwrap_or(c.async_insert);
                if let Some(secs) = file.clickhouse_insert_timeout_secs {
                    c.insert_timeout = Duration::from_secs(secs.max(1));
                }
                if let Some(secs) = file.clickhouse_retry_budget_secs {
                    c.retry_budget = Duration::from_secs(secs);
                }
                if let Some(n) = file.clickhouse_max_concurrent_inserts {
                    c.max_concurrent_inserts = n;
                }
                Some(c)
            }
        };
        let postgres_url = match args.meta_store.or(file.meta_store).unwrap_or_default() {
            MetaBackend::Sqlite => None,
            MetaBackend::Postgres => Some(
                args.database_url
                    .clone()
                    .or(file.database_url.clone())
                    .context(
                        "--meta-store postgres needs --database-url (TELEMETRYFLOW_DATABASE_URL)",
                    )?,
            ),
        };
        let lockout_threshold = file.lockout_threshold.unwrap_or(d.lockout_threshold);
        anyhow::ensure!(
            lockout_threshold >= 1,
            "lockout_threshold must be at least 1"
        );
        Ok(Config {
            clickhouse,
            postgres_url,
            registration: args
                .registration
                .or(file.registration)
                .unwrap_or(d.registration),
            smtp_url: args.smtp_url.clone().or(file.smtp_url.clone()),
            smtp_from: args
                .smtp_from
                .clone()
                .or(file.smtp_from.clone())
                .unwrap_or(d.smtp_from),
            public_url: args.public_url.clone().or(file.public_url.clone()),
            alertmanager_url: args
                .alertmanager_url
                .clone()
                .or(file.alertmanager_url.clone()),
            delivery_drain: d.delivery_drain,
            lockout_threshold,
            lockout_duration: file.lockout_duration_secs.map_or(d.lockout_duration, |s| {
                Duration::from_secs(s.max(1).unsigned_abs())
            }),
            purge_after_days: file.purge_after_days.unwrap_or(d.purge_after_days).max(1),
            plugin_http: egress::Policy {
                allow_plain_http: file.plugin_http_allow_plain.unwrap_or(false),
                allow_loopback_for_tests: file
                    .plugin_http_allow_loopback_for_tests
                    .unwrap_or(false),
                ..d.plugin_http.clone()
            },
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            http_addr: args.http_addr.or(file.http_addr).unwrap_or(d.http_addr),
            otlp_http_addr: args
                .otlp_http_addr
                .or(file.otlp_http_addr)
                .unwrap_or(d.otlp_http_addr),
            otlp_grpc_addr: args
                .otlp_grpc_addr
                .or(file.otlp_grpc_addr)
                .unwrap_or(d.otlp_grpc_addr),
            flush_interval: args
                .flush_interval_secs
                .or(file.flush_interval_secs)
                .map_or(d.flush_interval, |s| Duration::from_secs(s.max(1))),
            retention_days: retention,
            admin_email: args.admin_email.clone().unwrap_or(d.admin_email),
            admin_password: args.admin_password.clone(),
            ingest_max_in_flight: file.ingest_max_in_flight.unwrap_or(d.ingest_max_in_flight),
            max_unflushed_bytes: file.max_unflushed_bytes.unwrap_or(d.max_unflushed_bytes),
            hot_bytes: file.hot_bytes.unwrap_or(d.hot_bytes),
            query_cache_bytes: file.query_cache_bytes.unwrap_or(d.query_cache_bytes),
        })
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("tf-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\nhttp_addr = \"127.0.0.1:9000\"\nhot_bytes = 1048576\nquery_cache_bytes = 0\n\
             [retention_days]\ntraces_v3 = 7\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file.clone()),
            http_addr: Some(addr("127.0.0.1:9999")),
            ..ServeArgs::default()
        };
        let c = Config::resolve(&args).expect("resolve");
        assert_eq!(c.http_addr, addr("127.0.0.1:9999"));
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.otlp_grpc_addr, addr("127.0.0.1:4317"));
        assert_eq!(c.retention_days[&model::Table::Traces], 7);
        assert_eq!(c.retention_days[&model::Table::Metrics], 90);
        assert_eq!(c.hot_bytes, 1 << 20);
        assert_eq!(Config::default().hot_bytes, 128 << 20);
        assert_eq!(c.query_cache_bytes, 0);
        assert_eq!(Config::default().query_cache_bytes, 64 << 20);

        std::fs::write(&file, "data_dirr = \"typo\"\n").expect("write");
        assert!(Config::resolve(&args).is_err(), "unknown keys are errors");
        let _ = std::fs::remove_dir_all(dir);
    }
}
