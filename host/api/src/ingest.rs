//! The transport-independent ingest path: authorize, convert, store, count.

use std::time::Instant;

use iam::Principal;
use model::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::{ApiError, AppState, now_nanos};

/// A decoded export request of any signal.
pub(crate) enum Export {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

/// What the client is told about items it sent.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub rejected: u64,
    pub message: String,
}

pub(crate) fn authorize(principal: &Principal, signal: Signal) -> Result<(), ApiError> {
    if principal.may_ingest(signal) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "API key lacks the {} permission",
            signal.write_permission()
        )))
    }
}

/// Takes a permit for one ingest request, or answers 503 + Retry-After.
pub(crate) fn admit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    std::sync::Arc::clone(&state.in_flight)
        .try_acquire_owned()
        .map_err(|_| {
            metrics::counter!("telemetryflow_ingest_rejected_requests_total", "reason" => "overloaded")
                .increment(1);
            ApiError::overloaded(
                "too many ingest requests in flight",
                std::time::Duration::from_secs(1),
            )
        })
}

/// Converts and durably stores one export; counts what happened.
pub(crate) async fn ingest(
    state: &AppState,
    principal: &Principal,
    export: Export,
    transport: &'static str,
) -> Result<Outcome, ApiError> {
    let started = Instant::now();
    let scope = principal.scope();
    let limits = &state.limits.item;
    let (signal, converted) = match &export {
        Export::Traces(r) => (Signal::Traces, otlp::traces_to_batches(r, scope, limits)?),
        Export::Logs(r) => (
            Signal::Logs,
            otlp::logs_to_batches(r, scope, limits, now_nanos())?,
        ),
        Export::Metrics(r) => (
            Signal::Metrics,
            otlp::metrics_to_batches(r, scope, limits, now_nanos())?,
        ),
    };
    drop(export);
    let result = state.telemetry.write(converted.batches).await;
    let status = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("telemetryflow_ingest_request_duration_seconds",
        "signal" => signal.as_str(), "transport" => transport, "status" => status)
    .record(started.elapsed().as_secs_f64());
    result?;
    metrics::counter!("telemetryflow_ingest_items_total",
        "signal" => signal.as_str(), "transport" => transport)
    .increment(converted.accepted);
    if converted.rejected > 0 {
        metrics::counter!("telemetryflow_ingest_rejected_items_total",
            "signal" => signal.as_str(), "reason" => "invalid")
        .increment(converted.rejected);
    }
    if converted.truncated_values > 0 {
        metrics::counter!("telemetryflow_ingest_truncated_attribute_values_total",
            "signal" => signal.as_str())
        .increment(converted.truncated_values);
    }
    Ok(Outcome {
        rejected: converted.rejected,
        message: converted.error_message,
    })
}

pub(crate) fn count_rejected_request(signal: Signal, reason: &'static str) {
    metrics::counter!("telemetryflow_ingest_rejected_requests_total",
        "signal" => signal.as_str(), "reason" => reason)
    .increment(1);
}
