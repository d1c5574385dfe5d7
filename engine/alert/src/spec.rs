//! What users write: a rule, a notification group and a silence, as the API takes them, checked
//! here so that every front end (HTTP, backtest, tests) agrees on what is valid. A failed check
//! names the field (`/for`, `/queries/1/name`, …) as a JSON pointer.
//!
//! Durations are written `90s`, `5m`, `1h30m`, `2d` (units `ms`, `s`, `m`, `h`, `d`, `w`).

use serde::{Deserialize, Serialize};

use crate::dispatch::GroupSettings;
use crate::route::{Matcher, TimeWindow};
use crate::{Labels, Lifecycle, Policy, Recovery};

/// A bad field: where (a JSON pointer into the request) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// Milliseconds in a duration such as `90s`, `5m`, `1h30m`, `250ms`.
///
/// # Errors
/// Text that is not one or more `<integer><unit>` parts.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 1h30m or 2d");
    let mut total: i64 = 0;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

fn duration_field(path: &str, text: &str) -> Result<i64, FieldError> {
    parse_duration(text).map_err(|m| err(path, m))
}

/// One named query of a rule: a SELECT over the tenant's telemetry, run at each evaluation over
/// `[now - offset - range, now - offset)` (the SQL sees the window as `$__from` / `$__to`
/// placeholders, or may ignore it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// `A`, `B`, … (what the condition calls it).
    pub name: String,
    pub sql: String,
    /// How far back each evaluation looks (default `5m`).
    #[serde(default = "default_range")]
    pub range: String,
}

fn default_range() -> String {
    "5m".into()
}

/// The condition: a plugin (`builtin-threshold`, or an uploaded condition's id) and its config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub plugin: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A composite rule: alerting when `op` holds over the listed rules' states (a rule counts as
/// alerting while it has a firing instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeSpec {
    pub op: CompositeOp,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompositeOp {
    And,
    Or,
}

/// What no data becomes (`no_data` keeps its own state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    Alerting,
    #[default]
    NoData,
    Ok,
    KeepLast,
}

/// What a failed evaluation becomes (`error` keeps its own state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    Alerting,
    #[default]
    Error,
    Ok,
    KeepLast,
}

/// A recovery threshold as users write it: `{"below": 5}` or `{"above": 5}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySpec {
    pub below: Option<f64>,
    pub above: Option<f64>,
}

/// Severity of a rule's alerts (the schema's enum).
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// Query types (the schema's enum).
pub const QUERY_TYPES: [&str; 3] = ["metric", "log", "trace"];

/// An alert rule as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `metric`, `log` or `trace`.
    #[serde(default = "default_query_type")]
    pub query_type: String,
    #[serde(default)]
    pub queries: Vec<QuerySpec>,
    /// Absent only on a composite rule.
    #[serde(default)]
    pub condition: Option<ConditionSpec>,
    #[serde(default)]
    pub composite: Option<CompositeSpec>,
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Added to every alert's labels (with `alertname` = the rule's name and `severity`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Templates: `{{ $labels.service }}`, `{{ $value }}`, `{{ $severity }}`.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Fixed interval between evaluations (default `1m`), with a phase of its own per rule.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// A cron schedule instead of the interval (6 or 7 fields, seconds first).
    #[serde(default)]
    pub schedule: Option<String>,
    /// How far behind `now` queries end, for ingest lag (default `0s`).
    #[serde(default = "zero")]
    pub query_offset: String,
    #[serde(default = "zero", rename = "for")]
    pub for_: String,
    #[serde(default = "zero")]
    pub keep_firing_for: String,
    #[serde(default)]
    pub recovery: Option<RecoverySpec>,
    #[serde(default)]
    pub no_data: NoDataPolicy,
    #[serde(default)]
    pub error: ErrorPolicy,
    /// Evaluations a series may be missing before its alert resolves (default 2).
    #[serde(default = "default_missing")]
    pub missing_after: u32,
    /// Least time between two notifications of the same alert.
    #[serde(default)]
    pub cooldown_minutes: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Notification groups this rule's alerts go to.
    #[serde(default)]
    pub notification_groups: Vec<String>,
}

fn default_query_type() -> String {
    "metric".into()
}
fn default_severity() -> String {
    "warning".into()
}
fn default_interval() -> String {
    "1m".into()
}
fn zero() -> String {
    "0s".into()
}
fn default_missing() -> u32 {
    2
}
fn yes() -> bool {
    true
}

/// When a rule runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `interval_ms`, at `phase_ms` past each multiple of it.
    Every {
        interval_ms: i64,
        phase_ms: i64,
    },
    Cron(Box<cron::Schedule>),
}

/// Shortest evaluation interval.
pub const MIN_INTERVAL_MS: i64 = 1_000;
/// Most queries per rule.
pub const MAX_QUERIES: usize = 16;

impl Schedule {
    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Every {
                interval_ms,
                phase_ms,
            } => {
                let i = (*interval_ms).max(1);
                let k = (after_ms - phase_ms).div_euclid(i) + 1;
                Some(k * i + phase_ms)
            }
            Schedule::Cron(c) => {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms)?;
                c.after(&at).next().map(|t| t.timestamp_millis())
            }
        }
    }

    /// The nominal interval (for a cron schedule, the gap between its next two ticks).
    pub fn interval_ms(&self, now_ms: i64) -> i64 {
        match self {
            Schedule::Every { interval_ms, .. } => *interval_ms,
            Schedule::Cron(_) => {
                let a = self.next_after(now_ms).unwrap_or(now_ms);
                let b = self.next_after(a).unwrap_or(a + 60_000);
                (b - a).max(MIN_INTERVAL_MS)
            }
        }
    }
}

/// A rule's phase: a stable offset inside its interval from the rule's id, so rules with the
/// same interval spread out instead of all running at the top of the minute.
pub fn phase_ms(rule_id: &str, interval_ms: i64) -> i64 {
    let h = u64::from_str_radix(&crate::fingerprint(&[("rule".into(), rule_id.into())]), 16)
        .unwrap_or(0);
    i64::try_from(h % u64::try_from(interval_ms.max(1)).unwrap_or(1)).unwrap_or(0)
}

impl RuleSpec {
    /// Checks every field; all the problems, each with its path.
    pub fn check(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 200 {
            out.push(err("/name", "a name of 1 to 200 characters"));
        }
        if !QUERY_TYPES.contains(&self.query_type.as_str()) {
            out.push(err("/query_type", "one of metric, log, trace"));
        }
        if !SEVERITIES.contains(&self.severity.as_str()) {
            out.push(err("/severity", "one of critical, error, warning, info"));
        }
        match (&self.condition, &self.composite) {
            (Some(_), Some(_)) => out.push(err(
                "/composite",
                "a rule has a condition or is composite, not both",
            )),
            (None, None) => out.push(err("/condition", "a condition plugin is required")),
            (Some(c), None) => {
                if c.plugin.trim().is_empty() {
                    out.push(err("/condition/plugin", "the condition plugin's id"));
                }
                if !c.config.is_object() {
                    out.push(err("/condition/config", "an object"));
                }
                if self.queries.is_empty() || self.queries.len() > MAX_QUERIES {
                    out.push(err("/queries", format!("1 to {MAX_QUERIES} named queries")));
                }
            }
            (None, Some(c)) => {
                if c.rules.is_empty() || c.rules.len() > 32 {
                    out.push(err("/composite/rules", "1 to 32 rule ids"));
                }
                if !self.queries.is_empty() {
                    out.push(err("/queries", "a composite rule has no queries"));
                }
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, q) in self.queries.iter().enumerate() {
            let ok = !q.name.is_empty()
                && q.name.len() <= 64
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                out.push(err(
                    format!("/queries/{i}/name"),
                    "1 to 64 letters, digits, _ or -",
                ));
            } else if !names.insert(q.name.as_str()) {
                out.push(err(format!("/queries/{i}/name"), "names must be unique"));
            }
            if q.sql.trim().is_empty() {
                out.push(err(format!("/queries/{i}/sql"), "a SELECT statement"));
            }
            match parse_duration(&q.range) {
                Ok(ms) if ms > 0 && ms <= 31 * 86_400_000 => {}
                Ok(_) => out.push(err(format!("/queries/{i}/range"), "between 1ms and 31d")),
                Err(m) => out.push(err(format!("/queries/{i}/range"), m)),
            }
        }
        match parse_duration(&self.interval) {
            Ok(ms) if ms >= MIN_INTERVAL_MS => {}
            Ok(_) => out.push(err("/interval", "at least 1s")),
            Err(m) => out.push(err("/interval", m)),
        }
        if let Some(s) = &self.schedule
            && let Err(m) = parse_cron(s)
        {
            out.push(err("/schedule", m));
        }
        for (path, text) in [
            ("/query_offset", &self.query_offset),
            ("/for", &self.for_),
            ("/keep_firing_for", &self.keep_firing_for),
        ] {
            if let Err(e) = duration_field(path, text) {
                out.push(e);
            }
        }
        if let Some(r) = &self.recovery
            && r.below.is_some() == r.above.is_some()
        {
            out.push(err("/recovery", "either below or above, one of them"));
        }
        for (k, v) in &self.labels {
            if !label_name_ok(k) {
                out.push(err(
                    format!("/labels/{k}"),
                    "label names are letters, digits and _, not starting with a digit",
                ));
            }
            if v.len() > 1024 {
                out.push(err(format!("/labels/{k}"), "at most 1024 bytes"));
            }
        }
        for (k, v) in &self.annotations {
            if v.len() > 8192 {
                out.push(err(format!("/annotations/{k}"), "at most 8192 bytes"));
            }
        }
        out
    }

    /// The lifecycle settings (after [`RuleSpec::check`] passed; bad durations count as 0).
    pub fn lifecycle(&self) -> Lifecycle {
        let d = |t: &str| parse_duration(t).unwrap_or(0);
        Lifecycle {
            for_ms: d(&self.for_),
            keep_firing_for_ms: d(&self.keep_firing_for),
            recovery: self.recovery.and_then(|r| match (r.below, r.above) {
                (Some(b), None) => Some(Recovery::Below(b)),
                (None, Some(a)) => Some(Recovery::Above(a)),
                _ => None,
            }),
            no_data: match self.no_data {
                NoDataPolicy::Alerting => Policy::Alerting,
                NoDataPolicy::NoData => Policy::OwnState,
                NoDataPolicy::Ok => Policy::Normal,
                NoDataPolicy::KeepLast => Policy::KeepLast,
            },
            error: match self.error {
                ErrorPolicy::Alerting => Policy::Alerting,
                ErrorPolicy::Error => Policy::OwnState,
                ErrorPolicy::Ok => Policy::Normal,
                ErrorPolicy::KeepLast => Policy::KeepLast,
            },
            missing_after: self.missing_after.max(1),
            ..Lifecycle::default()
        }
    }

    /// When the rule runs (after [`RuleSpec::check`] passed).
    pub fn schedule(&self, rule_id: &str) -> Schedule {
        if let Some(c) = self.schedule.as_deref().and_then(|s| parse_cron(s).ok()) {
            return Schedule::Cron(Box::new(c));
        }
        let interval_ms = parse_duration(&self.interval)
            .unwrap_or(60_000)
            .max(MIN_INTERVAL_MS);
        Schedule::Every {
            interval_ms,
            phase_ms: phase_ms(rule_id, interval_ms),
        }
    }

    pub fn query_offset_ms(&self) -> i64 {
        parse_duration(&self.query_offset).unwrap_or(0)
    }

    /// The labels every alert of this rule carries: the rule's own, then `alertname` and
    /// `severity` unless the rule set them.
    pub fn static_labels(&self) -> Labels {
        let mut l: Labels = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !self.labels.contains_key("alertname") {
            l.push(("alertname".into(), self.name.clone()));
        }
        if !self.labels.contains_key("severity") {
            l.push(("severity".into(), self.severity.clone()));
        }
        l
    }
}

/// A cron expression in the `cron` crate's form: 6 fields (seconds first) or 7 (with years);
/// day of week 1 = Sunday … 7 = Saturday, or `SUN`–`SAT`; when both day of month and day of
/// week are given, both must match.
///
/// # Errors
/// What the crate says is wrong, with the expected form.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    if fields != 6 && fields != 7 {
        return Err(format!(
            "a cron schedule has 6 or 7 fields (sec min hour day-of-month month day-of-week [year]), got {fields}"
        ));
    }
    text.parse::<cron::Schedule>()
        .map_err(|e| format!("not a cron schedule: {e}"))
}

fn label_name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && k.len() <= 128
}

/// A notification group as the API takes it: which alerts it receives, how they are grouped
/// and timed, and when it is muted. Its channels are kept apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Label matchers (`severity="critical"`, `team=~"db|infra"`, `env!=dev`). A group with
    /// matchers receives every alert of its tenant whose labels match them all; a group
    /// without matchers receives the alerts of the rules linked to it.
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    #[serde(default = "default_group_wait")]
    pub group_wait: String,
    #[serde(default = "default_group_interval")]
    pub group_interval: String,
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Windows in which nothing is sent (alerts still change state and are recorded).
    #[serde(default)]
    pub mute_time_windows: Vec<TimeWindow>,
    /// Inhibition: while an alert matching `source` fires, alerts matching `target` with the
    /// same values of `equal` are not sent by this group.
    #[serde(default)]
    pub inhibit: Vec<InhibitSpec>,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitSpec {
    pub source: Vec<String>,
    pub target: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".into()]
}
fn default_group_wait() -> String {
    "30s".into()
}
fn default_group_interval() -> String {
    "5m".into()
}
fn default_repeat_interval() -> String {
    "4h".into()
}

fn check_matchers(path: &str, list: &[String], out: &mut Vec<FieldError>) -> Vec<Matcher> {
    let mut ok = Vec::new();
    for (i, m) in list.iter().enumerate() {
        match Matcher::parse(m) {
            Ok(m) => ok.push(m),
            Err(e) => out.push(err(format!("{path}/{i}"), e)),
        }
    }
    ok
}

impl GroupSpec {
    pub fn check(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 200 {
            out.push(err("/name", "a name of 1 to 200 characters"));
        }
        check_matchers("/matchers", &self.matchers, &mut out);
        for (path, text, min) in [
            ("/group_wait", &self.group_wait, 0),
            ("/group_interval", &self.group_interval, 1_000),
            ("/repeat_interval", &self.repeat_interval, 1_000),
        ] {
            match parse_duration(text) {
                Ok(ms) if ms >= min => {}
                Ok(_) => out.push(err(path, format!("at least {}", crate::duration(min)))),
                Err(m) => out.push(err(path, m)),
            }
        }
        for (i, w) in self.mute_time_windows.iter().enumerate() {
            if let Err(m) = w.check() {
                out.push(err(format!("/mute_time_windows/{i}"), m));
            }
        }
        for (i, r) in self.inhibit.iter().enumerate() {
            check_matchers(&format!("/inhibit/{i}/source"), &r.source, &mut out);
            check_matchers(&format!("/inhibit/{i}/target"), &r.target, &mut out);
        }
        out
    }

    /// The parsed matchers (after [`GroupSpec::check`] passed).
    pub fn matchers(&self) -> Vec<Matcher> {
        self.matchers
            .iter()
            .filter_map(|m| Matcher::parse(m).ok())
            .collect()
    }

    /// Inhibition rules (after [`GroupSpec::check`] passed).
    pub fn inhibitions(&self) -> Vec<crate::route::Inhibition> {
        let parse = |l: &[String]| l.iter().filter_map(|m| Matcher::parse(m).ok()).collect();
        self.inhibit
            .iter()
            .map(|r| crate::route::Inhibition {
                source: parse(&r.source),
                target: parse(&r.target),
                equal: r.equal.clone(),
            })
            .collect()
    }

    /// The grouping and timers (after [`GroupSpec::check`] passed).
    pub fn settings(&self) -> GroupSettings {
        let d = |t: &str, dflt: i64| parse_duration(t).unwrap_or(dflt);
        GroupSettings {
            group_by: self.group_by.clone(),
            group_wait_ms: d(&self.group_wait, 30_000),
            group_interval_ms: d(&self.group_interval, 300_000),
            repeat_interval_ms: d(&self.repeat_interval, 4 * 3_600_000),
            send_resolved: self.send_resolved,
        }
    }
}

/// A silence as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub matchers: Vec<String>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; or give `duration`.
    #[serde(default)]
    pub ends_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub comment: String,
}

impl SilenceSpec {
    /// The checked window `[starts, ends)` in milliseconds, or the bad fields.
    ///
    /// # Errors
    /// Missing or unparsable matchers, no end, an end before the start.
    pub fn window(&self, now_ms: i64) -> Result<(Vec<Matcher>, i64, i64), Vec<FieldError>> {
        let mut out = Vec::new();
        if self.matchers.is_empty() {
            out.push(err("/matchers", "at least one matcher"));
        }
        let matchers = check_matchers("/matchers", &self.matchers, &mut out);
        let starts = self.starts_at.map_or(now_ms, |t| t.timestamp_millis());
        let ends = match (&self.ends_at, &self.duration) {
            (Some(e), None) => Some(e.timestamp_millis()),
            (None, Some(d)) => match parse_duration(d) {
                Ok(ms) => Some(starts + ms),
                Err(m) => {
                    out.push(err("/duration", m));
                    None
                }
            },
            (Some(_), Some(_)) => {
                out.push(err("/duration", "give ends_at or duration, not both"));
                None
            }
            (None, None) => {
                out.push(err("/ends_at", "ends_at or duration is required"));
                None
            }
        };
        if let Some(e) = ends
            && e <= starts
        {
            out.push(err("/ends_at", "must be after starts_at"));
        }
        if matchers.iter().all(|m| m.matches(&[])) && !matchers.is_empty() {
            out.push(err(
                "/matchers",
                "these matchers match every alert (even one without labels); be more specific",
            ));
        }
        if out.is_empty() {
            Ok((matchers, starts, ends.unwrap_or(starts)))
        } else {
            Err(out)
        }
    }
}

/// A query's SQL with its window filled in: `$__from` and `$__to` become timestamp literals of
/// `[from_ms, to_ms)` (values the server computes, never user text).
pub fn render_sql(sql: &str, from_ms: i64, to_ms: i64) -> String {
    let ts = |ms: i64| {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default();
        format!(
            "TIMESTAMP '{}'",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    };
    sql.replace("$__from", &ts(from_ms))
        .replace("$__to", &ts(to_ms))
}
