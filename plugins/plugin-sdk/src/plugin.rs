//! A plugin as plain Rust: implement [`Condition`] or [`Transform`] on a type, test it natively,
//! and let [`export_condition!`](crate::export_condition) or
//! [`export_transform!`](crate::export_transform) generate the WIT bindings and glue.
//!
//! ```text
//! pub struct Plugin;
//! impl plugin_sdk::plugin::Transform for Plugin { /* … */ }
//! plugin_sdk::export_transform!(Plugin, wit = "../../wit");
//! ```
//! `wit` is the path of the `wit/` directory relative to the plugin's `Cargo.toml`; the crate
//! depends on `wit-bindgen` itself.

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use crate::config::ConfigProblem;

/// Why a call failed, as the host reports it to the rule's or widget's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    InvalidConfig(String),
    InvalidInput(String),
    Internal(String),
}

impl From<ConfigProblem> for Failure {
    fn from(p: ConfigProblem) -> Failure {
        Failure::InvalidConfig(format!("{}: {}", p.path, p.message))
    }
}

/// The evaluation's context (see `evaluation-context` in `wit/plugin.wit`).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub rule_id: String,
    pub evaluation_time_ms: i64,
    pub interval_ms: u64,
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub state: Option<Vec<u8>>,
}

/// One named query result: Arrow IPC stream bytes.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub data: Vec<u8>,
}

impl Input {
    /// The input called `name`, or the first when `name` is `None`.
    ///
    /// # Errors
    /// No such input.
    pub fn pick<'a>(inputs: &'a [Input], name: Option<&str>) -> Result<&'a Input, Failure> {
        match name {
            Some(n) => inputs.iter().find(|i| i.name == n).ok_or_else(|| {
                Failure::InvalidInput(format!("no query named {n:?} among the rule's queries"))
            }),
            None => inputs
                .first()
                .ok_or_else(|| Failure::InvalidInput("the rule has no query".into())),
        }
    }

    /// The stream's schema and batches.
    ///
    /// # Errors
    /// Bytes that are not an Arrow IPC stream.
    pub fn read(&self) -> Result<(SchemaRef, Vec<RecordBatch>), Failure> {
        crate::ipc::read(&self.data).map_err(Failure::InvalidInput)
    }
}

/// What a condition says about one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Alerting,
    NoData,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub labels: Vec<(String, String)>,
    pub status: Status,
    pub value: Option<f64>,
    pub severity: Option<String>,
    pub annotations: Vec<(String, String)>,
}

impl Verdict {
    pub fn new(labels: Vec<(String, String)>, status: Status, value: Option<f64>) -> Verdict {
        Verdict {
            labels,
            status,
            value,
            severity: None,
            annotations: Vec::new(),
        }
    }

    #[must_use]
    pub fn annotate(mut self, key: &str, value: impl ToString) -> Verdict {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub series: Vec<Verdict>,
    pub state: Option<Vec<u8>>,
}

/// The metadata every plugin gives.
pub trait Describe {
    const NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    /// JSON Schema (draft 2020-12) of the config.
    const SCHEMA: &'static str;
    type Config;

    /// Parses and checks a config.
    ///
    /// # Errors
    /// The first problem, with its JSON Pointer.
    fn config(json: &str) -> Result<Self::Config, ConfigProblem>;
}

/// An alert condition.
pub trait Condition: Describe {
    /// # Errors
    /// What went wrong, for the rule's owner.
    fn evaluate(c: &Self::Config, ctx: &Context, inputs: &[Input]) -> Result<Outcome, Failure>;
}

/// A widget transform.
pub trait Transform: Describe {
    /// # Errors
    /// An input schema the transform cannot work on.
    fn output_schema(input: &Schema, c: &Self::Config) -> Result<SchemaRef, Failure>;

    /// # Errors
    /// An input the transform cannot work on.
    fn run(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        c: &Self::Config,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Failure>;
}

/// Runs a transform on IPC bytes, as the component does (for native tests and the glue).
///
/// # Errors
/// As [`Transform::run`], and bad IPC.
pub fn transform_ipc<T: Transform>(input: &[u8], config: &str) -> Result<Vec<u8>, Failure> {
    let c = T::config(config)?;
    let (schema, batches) = crate::ipc::read(input).map_err(Failure::InvalidInput)?;
    let (out_schema, out) = T::run(&schema, &batches, &c)?;
    crate::ipc::write(&out_schema, &out).map_err(Failure::Internal)
}

/// The output schema of a transform on IPC bytes (a stream without batches).
///
/// # Errors
/// As [`Transform::output_schema`], and bad IPC.
pub fn output_schema_ipc<T: Transform>(input: &[u8], config: &str) -> Result<Vec<u8>, Failure> {
    let c = T::config(config)?;
    let (schema, _) = crate::ipc::read(input).map_err(Failure::InvalidInput)?;
    let out = T::output_schema(&schema, &c)?;
    crate::ipc::write(&out, &[]).map_err(Failure::Internal)
}

/// The parts every world's export shares: the component type, the `metadata` export, and the
/// mapping of [`Failure`](crate::plugin::Failure) to the WIT error. Used by the `export_*!`
/// macros after `wit_bindgen::generate!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_common {
    ($plugin:ty) => {
        /// The component's exports, delegating to the plugin's plain-Rust implementation.
        pub struct Component;

        #[allow(dead_code)]
        fn __tf_error(f: $crate::plugin::Failure) -> telemetryflow::plugin::types::PluginError {
            use telemetryflow::plugin::types::PluginError as E;
            match f {
                $crate::plugin::Failure::InvalidConfig(m) => E::InvalidConfig(m),
                $crate::plugin::Failure::InvalidInput(m) => E::InvalidInput(m),
                $crate::plugin::Failure::Internal(m) => E::Internal(m),
            }
        }

        impl exports::telemetryflow::plugin::metadata::Guest for Component {
            fn metadata() -> telemetryflow::plugin::types::PluginMetadata {
                use $crate::plugin::Describe as _;
                telemetryflow::plugin::types::PluginMetadata {
                    name: <$plugin>::NAME.into(),
                    version: <$plugin>::VERSION.into(),
                    description: <$plugin>::DESCRIPTION.into(),
                    config_schema: <$plugin>::SCHEMA.into(),
                }
            }

            fn validate_config(config: String) -> Vec<telemetryflow::plugin::types::ConfigError> {
                use $crate::plugin::Describe as _;
                match <$plugin>::config(&config) {
                    Ok(_) => Vec::new(),
                    Err(p) => vec![telemetryflow::plugin::types::ConfigError {
                        path: p.path,
                        message: p.message,
                    }],
                }
            }
        }
    };
}

/// Generates the `alert-condition` world's bindings and exports `$plugin` (a
/// [`Condition`](crate::plugin::Condition)) as the component's implementation.
#[macro_export]
macro_rules! export_condition {
    ($plugin:ty, wit = $wit:literal) => {
        wit_bindgen::generate!({ path: $wit, world: "alert-condition" });

        $crate::__export_common!($plugin);

        impl exports::telemetryflow::plugin::condition::Guest for Component {
            fn evaluate(
                ctx: exports::telemetryflow::plugin::condition::EvaluationContext,
                inputs: Vec<exports::telemetryflow::plugin::condition::QueryResult>,
            ) -> Result<
                exports::telemetryflow::plugin::condition::Evaluation,
                telemetryflow::plugin::types::PluginError,
            > {
                use $crate::plugin::{Condition as _, Describe as _};
                use exports::telemetryflow::plugin::condition as c;
                let config = <$plugin>::config(&ctx.config)
                    .map_err(|p| __tf_error(p.into()))?;
                let context = $crate::plugin::Context {
                    rule_id: ctx.rule_id,
                    evaluation_time_ms: ctx.evaluation_time_ms,
                    interval_ms: ctx.interval_ms,
                    range_start_ms: ctx.range_start_ms,
                    range_end_ms: ctx.range_end_ms,
                    state: ctx.state,
                };
                let inputs: Vec<$crate::plugin::Input> = inputs
                    .into_iter()
                    .map(|q| $crate::plugin::Input { name: q.name, data: q.data })
                    .collect();
                let out = <$plugin>::evaluate(&config, &context, &inputs).map_err(__tf_error)?;
                Ok(c::Evaluation {
                    series: out
                        .series
                        .into_iter()
                        .map(|v| c::Series {
                            labels: v.labels,
                            status: match v.status {
                                $crate::plugin::Status::Ok => c::SeriesStatus::Ok,
                                $crate::plugin::Status::Alerting => c::SeriesStatus::Alerting,
                                $crate::plugin::Status::NoData => c::SeriesStatus::NoData,
                                $crate::plugin::Status::Error => c::SeriesStatus::Error,
                            },
                            value: v.value,
                            severity: v.severity,
                            annotations: v.annotations,
                        })
                        .collect(),
                    state: out.state,
                })
            }
        }

        // Exported only in the component: native builds exist for the unit tests.
        #[cfg(target_arch = "wasm32")]
        export!(Component);
    };
}

/// Generates the `widget-transform` world's bindings and exports `$plugin` (a
/// [`Transform`](crate::plugin::Transform)) as the component's implementation.
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty, wit = $wit:literal) => {
        wit_bindgen::generate!({ path: $wit, world: "widget-transform" });

        $crate::__export_common!($plugin);

        impl exports::telemetryflow::plugin::transform::Guest for Component {
            fn output_schema(
                input_schema: Vec<u8>,
                config: String,
            ) -> Result<Vec<u8>, telemetryflow::plugin::types::PluginError> {
                $crate::plugin::output_schema_ipc::<$plugin>(&input_schema, &config)
                    .map_err(__tf_error)
            }

            fn run(
                input: Vec<u8>,
                config: String,
            ) -> Result<Vec<u8>, telemetryflow::plugin::types::PluginError> {
                $crate::plugin::transform_ipc::<$plugin>(&input, &config).map_err(__tf_error)
            }
        }

        // Exported only in the component: native builds exist for the unit tests.
        #[cfg(target_arch = "wasm32")]
        export!(Component);
    };
}
