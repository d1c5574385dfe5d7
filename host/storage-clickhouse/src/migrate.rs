//! Schema migrations: the numbered templates in `migrations/clickhouse/`, rendered for one
//! server or for a cluster, applied in order and recorded in `migrations_log`.
//!
//! ClickHouse has no transactional DDL, so every statement is idempotent (`IF NOT EXISTS`) and a
//! migration interrupted half-way is simply run again. A landed migration is never edited: its
//! checksum is recorded and a mismatch stops the start.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::client::{ChError, Client};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub template: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            template: include_str!(concat!(
                "../../../migrations/clickhouse/",
                $file,
                "_",
                $name,
                ".sql"
            )),
        }
    };
}

/// Every migration, in order. A test checks this list against the directory.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001", "telemetry_tables"),
    migration!(2, "0002", "metric_rollups"),
    migration!(3, "0003", "system_tables"),
];

/// Where and how the schema is laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    pub database: String,
    /// `Some(name)`: `ON CLUSTER name` DDL, replicated tables named `<table>_local` and a
    /// `Distributed` table under each table's own name.
    pub cluster: Option<String>,
    /// Days to keep, by table name; tables not named keep their default.
    pub retention_days: BTreeMap<String, u32>,
}

impl Layout {
    pub fn single(database: &str) -> Layout {
        Layout {
            database: database.to_string(),
            cluster: None,
            retention_days: BTreeMap::new(),
        }
    }

    /// `db`.`name` with identifier quoting.
    pub fn qualified(&self, name: &str) -> String {
        format!("{}.{}", ident(&self.database), ident(name))
    }

    fn local(&self, name: &str) -> String {
        match &self.cluster {
            Some(_) => self.qualified(&format!("{name}_local")),
            None => self.qualified(name),
        }
    }

    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(c) => format!("ON CLUSTER {}", ident(c)),
            None => String::new(),
        }
    }

    fn engine(&self, engine: &str) -> String {
        match &self.cluster {
            Some(_) => format!(
                "Replicated{engine}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}')"
            ),
            None => format!("{engine}()"),
        }
    }

    fn retention(&self, table: &str) -> Result<u32, String> {
        if let Some(days) = self.retention_days.get(table) {
            return Ok(*days);
        }
        if let Some(t) = model::Table::from_name(table) {
            return Ok(t.default_retention_days());
        }
        if let Some(r) = model::Rollup::ALL.into_iter().find(|r| r.name() == table) {
            return Ok(r.default_retention_days());
        }
        match table {
            "alert_history" => Ok(365),
            "audit_logs" => Ok(400),
            "uptime_checks" => Ok(90),
            _ => Err(format!("no retention known for {table}")),
        }
    }
}

/// Quotes an identifier with backticks (names come from configuration, never from requests).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\s*([a-z_]+)((?:\s+[^}\s][^}]*?)?)\s*\}\}").expect("placeholder regex")
});

fn render_placeholder(layout: &Layout, what: &str, args: &str) -> Result<String, String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    let one = |i: usize| {
        args.get(i)
            .copied()
            .ok_or_else(|| format!("{{{{{what}}}}} needs an argument"))
    };
    Ok(match what {
        "table" => layout.qualified(one(0)?),
        "local" => layout.local(one(0)?),
        "on_cluster" => layout.on_cluster(),
        "engine" => layout.engine(one(0)?),
        "ttl" => {
            let (table, column) = (one(0)?, one(1)?);
            let days = layout.retention(table)?;
            format!("toDateTime({column}) + INTERVAL {days} DAY")
        }
        "distributed" => {
            let name = one(0)?;
            let key = args[1..].join(" ");
            match &layout.cluster {
                Some(c) => format!(
                    "CREATE TABLE IF NOT EXISTS {} {} AS {} ENGINE = Distributed({}, {}, {}, {})",
                    layout.qualified(name),
                    layout.on_cluster(),
                    layout.local(name),
                    quote(c),
                    quote(&layout.database),
                    quote(&format!("{name}_local")),
                    if key.is_empty() { "rand()" } else { &key },
                ),
                None => String::new(),
            }
        }
        other => return Err(format!("unknown placeholder {{{{{other}}}}}")),
    })
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statements of one template for `layout`, comments dropped, empty ones skipped.
///
/// # Errors
/// An unknown placeholder or a table without a known retention.
pub fn render(template: &str, layout: &Layout) -> Result<Vec<String>, String> {
    let text: String = template
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut error = None;
    let rendered = PLACEHOLDER.replace_all(&text, |c: &regex::Captures<'_>| {
        render_placeholder(layout, &c[1], &c[2]).unwrap_or_else(|e| {
            error.get_or_insert(e);
            String::new()
        })
    });
    if let Some(e) = error {
        return Err(e);
    }
    Ok(rendered
        .split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Every statement `telemetryflow` would run on a fresh database, in order, for review or for a
/// DBA to run by hand.
///
/// # Errors
/// As [`render`].
pub fn full_ddl(layout: &Layout) -> Result<Vec<String>, String> {
    let mut out = bootstrap(layout);
    for m in MIGRATIONS {
        out.extend(render(m.template, layout)?);
    }
    Ok(out)
}

fn bootstrap(layout: &Layout) -> Vec<String> {
    vec![
        format!(
            "CREATE DATABASE IF NOT EXISTS {} {}",
            ident(&layout.database),
            layout.on_cluster()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} {} (version UInt32, name String, checksum String, \
             applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = {} ORDER BY version",
            layout.local("migrations_log"),
            layout.on_cluster(),
            layout.engine("ReplacingMergeTree"),
        ),
    ]
}

fn checksum(template: &str) -> String {
    hex::encode(Sha256::digest(template.as_bytes()))
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    pub applied: Vec<u32>,
    pub already: Vec<u32>,
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("clickhouse migration {version} failed: {source}")]
    Statement { version: u32, source: ChError },
    #[error("clickhouse migrations: {0}")]
    Invalid(String),
    #[error("clickhouse: {0}")]
    Client(#[from] ChError),
}

/// Applies pending migrations in order and records each in `migrations_log`.
///
/// # Errors
/// A failing statement (the migration is retried in full at the next start), a migration whose
/// recorded checksum differs from the file, or an unreachable server.
pub async fn apply(client: &Client, layout: &Layout) -> Result<Applied, MigrateError> {
    let timeout = Duration::from_secs(300);
    for stmt in bootstrap(layout) {
        client.execute(&stmt, &[], &[], timeout).await?;
    }
    let log = layout.local("migrations_log");
    let done = client
        .execute(
            &format!(
                "SELECT version, checksum FROM {log} FINAL ORDER BY version FORMAT TabSeparated"
            ),
            &[],
            &[],
            timeout,
        )
        .await?;
    let mut recorded = BTreeMap::new();
    for line in String::from_utf8_lossy(&done).lines() {
        let mut parts = line.split('\t');
        if let (Some(v), Some(c)) = (parts.next(), parts.next())
            && let Ok(v) = v.parse::<u32>()
        {
            recorded.insert(v, c.to_string());
        }
    }
    let mut out = Applied::default();
    for m in MIGRATIONS {
        let sum = checksum(m.template);
        if let Some(old) = recorded.get(&m.version) {
            if *old != sum {
                return Err(MigrateError::Invalid(format!(
                    "migration {:04}_{} was changed after it was applied (checksum {old} in \
                     migrations_log, {sum} in the file); add a new migration instead",
                    m.version, m.name
                )));
            }
            out.already.push(m.version);
            continue;
        }
        let statements = render(m.template, layout).map_err(MigrateError::Invalid)?;
        for stmt in statements {
            client
                .execute(&stmt, &[], &[], timeout)
                .await
                .map_err(|source| MigrateError::Statement {
                    version: m.version,
                    source,
                })?;
        }
        client
            .execute(
                &format!(
                    "INSERT INTO {log} (version, name, checksum) VALUES ({{v:UInt32}}, {{n:String}}, {{c:String}})"
                ),
                &[
                    ("v".into(), m.version.to_string()),
                    ("n".into(), m.name.to_string()),
                    ("c".into(), sum),
                ],
                &[],
                timeout,
            )
            .await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied clickhouse migration"
        );
        out.applied.push(m.version);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_every_file_in_order() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are dense and ordered");
        }
    }

    #[test]
    fn a_single_server_gets_plain_merge_trees_and_no_cluster_clauses() {
        let ddl = full_ddl(&Layout::single("tf")).expect("render");
        let all = ddl.join("\n");
        assert!(!all.contains("ON CLUSTER"));
        assert!(!all.contains("Replicated"));
        assert!(!all.contains("Distributed"));
        assert!(!all.contains("{{"), "every placeholder is rendered");
        assert!(all.contains("CREATE TABLE IF NOT EXISTS `tf`.`traces_v3`"));
        assert!(all.contains("TTL toDateTime(timestamp) + INTERVAL 30 DAY"));
        assert!(all.contains("TTL toDateTime(timestamp) + INTERVAL 90 DAY"));
        assert!(ddl.iter().all(|s| !s.ends_with(';')));
    }

    #[test]
    fn cluster_mode_replicates_every_table_and_distributes_reads_and_writes() {
        let mut layout = Layout::single("tf");
        layout.cluster = Some("prod".into());
        layout.retention_days.insert("logs_v3".into(), 7);
        let ddl = full_ddl(&layout).expect("render");
        for stmt in &ddl {
            assert!(stmt.contains("ON CLUSTER `prod`"), "{stmt}");
        }
        let tables = [
            "traces_v3",
            "logs_v3",
            "metrics_v3",
            "metric_histograms",
            "exemplars_v3",
            "metrics_v3_hourly",
            "metrics_v3_daily",
            "alert_history",
            "audit_logs",
            "uptime_checks",
        ];
        for t in tables {
            let local = ddl
                .iter()
                .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS `tf`.`{t}_local`")))
                .unwrap_or_else(|| panic!("no local table for {t}"));
            assert!(
                local.contains("ENGINE = Replicated")
                    && local
                        .contains("'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"),
                "{local}"
            );
            let dist = ddl
                .iter()
                .find(|s| s.starts_with(&format!("CREATE TABLE IF NOT EXISTS `tf`.`{t}` ")))
                .unwrap_or_else(|| panic!("no distributed table for {t}"));
            assert!(
                dist.contains(&format!(
                    "AS `tf`.`{t}_local` ENGINE = Distributed('prod', 'tf', '{t}_local'"
                )),
                "{dist}"
            );
        }
        let traces = ddl
            .iter()
            .find(|s| s.starts_with("CREATE TABLE IF NOT EXISTS `tf`.`traces_v3` "))
            .expect("traces");
        assert!(
            traces.contains("cityHash64(trace_id)"),
            "a trace stays on one shard"
        );
        let mv = ddl
            .iter()
            .find(|s| {
                s.contains("MATERIALIZED VIEW IF NOT EXISTS `tf`.`metrics_v3_hourly_mv_local`")
            })
            .expect("hourly view");
        assert!(mv.contains("TO `tf`.`metrics_v3_hourly_local`"));
        assert!(
            mv.contains("FROM `tf`.`metrics_v3_local`"),
            "each shard rolls up its own rows"
        );
        assert!(ddl.iter().any(|s| s.contains("INTERVAL 7 DAY")));
    }
}
