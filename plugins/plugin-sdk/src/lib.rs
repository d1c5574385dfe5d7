//! Helpers for TelemetryFlow plugin authors. A plugin generates its bindings with
//! `wit_bindgen::generate!` for its world (see `wit/plugin.wit`) and uses these for the rest:
//!
//! - [`ipc`]: the Arrow IPC streams the host hands in and takes back;
//! - [`config`]: a typed config from the JSON text, with errors that carry a JSON Pointer path;
//! - [`series`]: rows grouped into label sets with a reduced value (last, avg, min, max, sum,
//!   count), the shape alert conditions reason about.
//!
//! Everything here is plain Rust over `arrow-array`, so a plugin's logic is unit-tested natively
//! with `cargo test`, and the same code runs in the component.

pub mod config;
pub mod ipc;
pub mod series;
