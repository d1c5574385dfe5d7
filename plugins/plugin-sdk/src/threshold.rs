//! Thresholds as conditions use them: above, below, between, outside, each with a severity.

use crate::config::ConfigProblem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Above,
    Below,
    Between,
    Outside,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default = "default_severity")]
    pub severity: String,
    pub op: Op,
    pub value: f64,
    /// The upper bound of `between` / `outside`.
    #[serde(default)]
    pub value2: Option<f64>,
}

fn default_severity() -> String {
    "critical".into()
}

/// Checks a threshold list found at JSON Pointer `at` (e.g. `/thresholds`).
///
/// # Errors
/// The first problem, with its path.
pub fn check(thresholds: &[Threshold], at: &str) -> Result<(), ConfigProblem> {
    if thresholds.is_empty() {
        return Err(ConfigProblem {
            path: at.into(),
            message: "at least one threshold is needed".into(),
        });
    }
    for (i, t) in thresholds.iter().enumerate() {
        if !t.value.is_finite() {
            return Err(ConfigProblem {
                path: format!("{at}/{i}/value"),
                message: "must be a finite number".into(),
            });
        }
        if matches!(t.op, Op::Between | Op::Outside) {
            match t.value2 {
                None => {
                    return Err(ConfigProblem {
                        path: format!("{at}/{i}/value2"),
                        message: "between and outside need value2, the upper bound".into(),
                    });
                }
                Some(hi) if hi < t.value => {
                    return Err(ConfigProblem {
                        path: format!("{at}/{i}/value2"),
                        message: "value2 must not be below value".into(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

impl Threshold {
    pub fn matches(&self, v: f64) -> bool {
        let hi = self.value2.unwrap_or(self.value);
        match self.op {
            Op::Above => v > self.value,
            Op::Below => v < self.value,
            Op::Between => v >= self.value && v <= hi,
            Op::Outside => v < self.value || v > hi,
        }
    }

    pub fn describe(&self) -> String {
        let hi = self.value2.unwrap_or(self.value);
        match self.op {
            Op::Above => format!("above {}", self.value),
            Op::Below => format!("below {}", self.value),
            Op::Between => format!("between {} and {hi}", self.value),
            Op::Outside => format!("outside {} to {hi}", self.value),
        }
    }
}

/// The first threshold `v` matches: `(severity, description)`.
pub fn first_match(thresholds: &[Threshold], v: f64) -> Option<(String, String)> {
    thresholds
        .iter()
        .find(|t| t.matches(v))
        .map(|t| (t.severity.clone(), t.describe()))
}
