//! Helpers for TelemetryFlow plugin authors. A plugin implements
//! [`plugin::Condition`] or [`plugin::Transform`] in plain Rust and exports it with
//! [`export_condition!`] or [`export_transform!`], which run `wit_bindgen::generate!` for its
//! world (see `wit/plugin.wit`). The rest:
//!
//! - [`ipc`]: the Arrow IPC streams the host hands in and takes back;
//! - [`config`]: a typed config from the JSON text, with errors that carry a JSON Pointer path;
//! - [`series`]: rows grouped into label sets, time series, reducers (last, avg, min, max, sum,
//!   count), the shape alert conditions reason about;
//! - [`time`]: time columns in any unit, durations such as `5m`;
//! - [`threshold`]: above / below / between / outside with severities.
//!
//! Everything here is plain Rust over `arrow-array`, so a plugin's logic is unit-tested natively
//! with `cargo test`, and the same code runs in the component.

pub mod channel;
pub mod config;
pub mod ipc;
pub mod plugin;
pub mod series;
pub mod threshold;
pub mod time;
