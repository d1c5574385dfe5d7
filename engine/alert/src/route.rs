//! Which alerts reach which notification group, and which are held back: label matchers
//! (`=`, `!=`, `=~`, `!~`; regexes anchored as in Alertmanager), silences with a time range,
//! inhibition (a firing alert mutes others that share some labels), and mute time windows in
//! IANA time zones.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

/// One label matcher. A missing label matches as the empty string (Alertmanager's rule), so
/// `team!=""` means "has a team".
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// # Errors
    /// A regex that does not compile (or is over 64 KiB compiled).
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(64 << 10)
                    .build()
                    .map_err(|e| format!("matcher {name}{} {value:?}: {e}", op_str(op)))?,
            ),
            Op::Eq | Op::Ne => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `name="value"`, `name!=value`, `name=~"a|b"`, `name!~…`.
    ///
    /// # Errors
    /// Text that is not a matcher.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let at = t
            .find(['=', '!'])
            .ok_or_else(|| format!("{text:?} is not a matcher such as team=\"db\""))?;
        let (name, rest) = t.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(format!("{text:?} is not a matcher such as team=\"db\""));
        };
        let name = name.trim();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(format!("{name:?} is not a label name"));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Matcher::new(name, op, value)
    }

    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let v = labels
            .iter()
            .find(|(k, _)| *k == self.name)
            .map_or("", |(_, v)| v.as_str());
        match (&self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(r)) => r.is_match(v),
            (Op::NotRe, Some(r)) => !r.is_match(v),
            (Op::Re | Op::NotRe, None) => false,
        }
    }
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Re => "=~",
        Op::NotRe => "!~",
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, op_str(self.op), self.value)
    }
}

/// Whether every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &[(String, String)]) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// A silence: alerts matching all its matchers are not notified between `starts_at_ms` and
/// `ends_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    pub fn mutes(&self, labels: &[(String, String)], now_ms: i64) -> bool {
        self.active(now_ms) && !self.matchers.is_empty() && all_match(&self.matchers, labels)
    }
}

/// The silence muting `labels` now, if any.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    labels: &[(String, String)],
    now_ms: i64,
) -> Option<&'a Silence> {
    silences.iter().find(|s| s.mutes(labels, now_ms))
}

/// An inhibition rule: while an alert matching `source` fires, alerts matching `target` with
/// the same values of the `equal` labels are not notified.
#[derive(Debug, Clone, PartialEq)]
pub struct Inhibition {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// Whether `labels` is inhibited by one of `firing` (the label sets firing now).
pub fn inhibited(
    rules: &[Inhibition],
    labels: &[(String, String)],
    firing: &[Vec<(String, String)>],
) -> bool {
    let get = |ls: &[(String, String)], k: &str| {
        ls.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    rules.iter().any(|r| {
        all_match(&r.target, labels)
            && firing.iter().any(|src| {
                src.as_slice() != labels
                    && all_match(&r.source, src)
                    && r.equal.iter().all(|k| get(src, k) == get(labels, k))
            })
    })
}

/// A recurring window in which notifications are muted (Alertmanager's `time_intervals`):
/// every listed field must match; an empty field matches all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Minutes of the day, `[start, end)`, e.g. `(22*60, 24*60)`.
    #[serde(default)]
    pub times: Vec<(u32, u32)>,
    /// 0 = Sunday … 6 = Saturday.
    #[serde(default)]
    pub weekdays: Vec<u32>,
    /// 1 … 31; negative counts from the month's end (-1 = the last day).
    #[serde(default)]
    pub days_of_month: Vec<i32>,
    /// 1 … 12.
    #[serde(default)]
    pub months: Vec<u32>,
    /// An IANA zone such as `Europe/Paris` (default UTC).
    #[serde(default)]
    pub location: Option<String>,
}

impl TimeWindow {
    /// # Errors
    /// An unknown time zone or an out-of-range field.
    pub fn check(&self) -> Result<(), String> {
        if let Some(l) = &self.location {
            l.parse::<chrono_tz::Tz>().map_err(|_| {
                format!("unknown time zone {l:?} (use an IANA name such as Europe/Paris)")
            })?;
        }
        if self.times.iter().any(|(a, b)| a >= b || *b > 24 * 60) {
            return Err(
                "times are [start, end) minutes of the day, start before end, end ≤ 1440".into(),
            );
        }
        if self.weekdays.iter().any(|d| *d > 6) {
            return Err("weekdays are 0 (Sunday) to 6 (Saturday)".into());
        }
        if self
            .days_of_month
            .iter()
            .any(|d| *d == 0 || !(-31..=31).contains(d))
        {
            return Err("days of month are 1 to 31, or -1 to -31 from the end".into());
        }
        if self.months.iter().any(|m| !(1..=12).contains(m)) {
            return Err("months are 1 to 12".into());
        }
        Ok(())
    }

    pub fn contains(&self, now_ms: i64) -> bool {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
            return false;
        };
        let tz: chrono_tz::Tz = self
            .location
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let t = tz.from_utc_datetime(&utc.naive_utc());
        let minute = t.hour() * 60 + t.minute();
        let in_times =
            self.times.is_empty() || self.times.iter().any(|(a, b)| minute >= *a && minute < *b);
        let in_weekdays =
            self.weekdays.is_empty() || self.weekdays.contains(&t.weekday().num_days_from_sunday());
        let days_in_month = {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            chrono::NaiveDate::from_ymd_opt(next.0, next.1, 1)
                .and_then(|d| d.pred_opt())
                .map_or(31, |d| d.day())
        };
        let day = i64::from(t.day());
        let in_days = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|d| {
                let want = if *d < 0 {
                    i64::from(days_in_month) + 1 + i64::from(*d)
                } else {
                    i64::from(*d)
                };
                want == day
            });
        let in_months = self.months.is_empty() || self.months.contains(&t.month());
        in_times && in_weekdays && in_days && in_months
    }
}
