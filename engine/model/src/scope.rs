//! Tenant scope and signals.

use serde::{Deserialize, Serialize};

/// The organization / workspace / tenant that owns a row or a request.
///
/// Every telemetry row carries all three; every read is filtered by workspace and tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub organization_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
}

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The API-key permission that allows writing this signal.
    pub fn write_permission(self) -> &'static str {
        match self {
            Signal::Traces => "traces:write",
            Signal::Logs => "logs:write",
            Signal::Metrics => "metrics:write",
        }
    }
}
