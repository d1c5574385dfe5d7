//! An alert condition that misbehaves on request, for the plugin runtime's hostile-guest tests.
//! Its config picks the behaviour: `{"mode": "ok" | "loop" | "memory" | "panic" | "recursion" |
//! "huge-output", "threshold": N}`. In `ok` mode it answers one series per input, alerting when
//! the input has more than `threshold` bytes, and counts its evaluations in the state blob.

// The bindings are generated code with unsafe glue; the plugin's own code has none.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "alert-condition",
});

use exports::telemetryflow::plugin::condition::{
    Evaluation, EvaluationContext, Guest as Condition, QueryResult, Series, SeriesStatus,
};
use exports::telemetryflow::plugin::metadata::Guest as Metadata;
use telemetryflow::plugin::log::{Level, log};
use telemetryflow::plugin::types::{ConfigError, PluginError, PluginMetadata};

const MODES: [&str; 6] = ["ok", "loop", "memory", "panic", "recursion", "huge-output"];

/// The value of `"key": "…"` or `"key": N` in a flat JSON object (enough for a fixture).
fn field<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    let at = config.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = config[at..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next();
    }
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn mode(config: &str) -> &str {
    field(config, "mode").unwrap_or("ok")
}

/// Recursion that lives on the wasm stack (no locals in linear memory), so it ends in the
/// host's stack-overflow trap.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let a = std::hint::black_box(n.wrapping_mul(3));
    let b = std::hint::black_box(n ^ 0x55);
    a.wrapping_add(deep(std::hint::black_box(n - 1)))
        .wrapping_add(b)
}

pub struct Plugin;

impl Metadata for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "hostile-condition".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "misbehaves on request (tests only)".into(),
            config_schema: r#"{"type":"object","properties":{"mode":{"enum":["ok","loop","memory","panic","recursion","huge-output"]},"threshold":{"type":"number"}}}"#.into(),
        }
    }

    fn validate_config(config: String) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !MODES.contains(&mode(&config)) {
            errors.push(ConfigError {
                path: "/mode".into(),
                message: format!("unknown mode; one of {}", MODES.join(", ")),
            });
        }
        if let Some(t) = field(&config, "threshold")
            && t.parse::<f64>().is_err()
        {
            errors.push(ConfigError {
                path: "/threshold".into(),
                message: "must be a number".into(),
            });
        }
        errors
    }
}

impl Condition for Plugin {
    fn evaluate(
        ctx: EvaluationContext,
        inputs: Vec<QueryResult>,
    ) -> Result<Evaluation, PluginError> {
        log(Level::Debug, &format!("evaluating rule {}", ctx.rule_id));
        match mode(&ctx.config) {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                // 16 MiB blocks, one byte written in each: the allocator grows linear memory
                // at once, so the bomb reaches any limit in microseconds however busy the
                // machine is (a memset of every page could meet the time budget first).
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = Vec::with_capacity(16 << 20);
                    block.push(7u8);
                    hoard.push(block);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("boom: the fixture was asked to panic"),
            "recursion" => {
                let n = deep(std::hint::black_box(u64::MAX));
                Err(PluginError::Internal(format!("unreachable {n}")))
            }
            "huge-output" => Ok(Evaluation {
                series: (0..20_000)
                    .map(|i| Series {
                        labels: vec![("i".into(), i.to_string())],
                        status: SeriesStatus::Ok,
                        value: None,
                        severity: None,
                        annotations: vec![],
                    })
                    .collect(),
                state: None,
            }),
            "ok" => {
                let threshold: f64 = field(&ctx.config, "threshold")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(f64::INFINITY);
                let runs = ctx
                    .state
                    .as_deref()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                let series = inputs
                    .iter()
                    .map(|q| {
                        let value = q.data.len() as f64;
                        Series {
                            labels: vec![("query".into(), q.name.clone())],
                            status: if value > threshold {
                                SeriesStatus::Alerting
                            } else {
                                SeriesStatus::Ok
                            },
                            value: Some(value),
                            severity: None,
                            annotations: vec![("runs".into(), runs.to_string())],
                        }
                    })
                    .collect();
                Ok(Evaluation {
                    series,
                    state: Some(runs.to_string().into_bytes()),
                })
            }
            other => Err(PluginError::InvalidConfig(format!(
                "unknown mode {other:?}"
            ))),
        }
    }
}

// Exported only in the component: a native cdylib cannot carry the component's export names,
// and native builds exist for the unit tests.
#[cfg(target_arch = "wasm32")]
export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_are_read_and_checked() {
        assert_eq!(mode(r#"{"mode": "loop"}"#), "loop");
        assert_eq!(
            field(r#"{"mode":"ok","threshold": 12.5}"#, "threshold"),
            Some("12.5")
        );
        assert!(Plugin::validate_config(r#"{"mode":"ok"}"#.into()).is_empty());
        let bad = Plugin::validate_config(r#"{"mode":"fly","threshold":"x"}"#.into());
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].path, "/mode");
    }
}
