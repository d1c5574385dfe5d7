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

fn convert(
    export: &Export,
    scope: &model::Scope,
    limits: &otlp::Limits,
    received_at: u64,
) -> Result<(Signal, otlp::Converted), otlp::OtlpError> {
    Ok(match export {
        Export::Traces(r) => (Signal::Traces, otlp::traces_to_batches(r, scope, limits)?),
        Export::Logs(r) => (
            Signal::Logs,
            otlp::logs_to_batches(r, scope, limits, received_at)?,
        ),
        Export::Metrics(r) => (
            Signal::Metrics,
            otlp::metrics_to_batches(r, scope, limits, received_at)?,
        ),
    })
}

/// What [`storage::TelemetryStore::write_export`] stores need to replay a logged request:
/// decode the body and convert it exactly as it was converted when it was acknowledged.
pub fn reconvert(limits: otlp::Limits) -> storage::Reconvert {
    std::sync::Arc::new(move |raw: &storage::RawExport| {
        let format = if raw.json {
            otlp::Format::Json
        } else {
            otlp::Format::Protobuf
        };
        let body = raw.body.clone();
        let enc = otlp::Encoding::Identity;
        let max = usize::MAX;
        let export = match raw.signal {
            Signal::Traces => Export::Traces(
                otlp::decode_body(body, format, enc, max).map_err(|e| e.to_string())?,
            ),
            Signal::Logs => {
                Export::Logs(otlp::decode_body(body, format, enc, max).map_err(|e| e.to_string())?)
            }
            Signal::Metrics => Export::Metrics(
                otlp::decode_body(body, format, enc, max).map_err(|e| e.to_string())?,
            ),
        };
        convert(&export, &raw.scope, &limits, raw.received_at)
            .map(|(_, c)| c.batches)
            .map_err(|e| e.to_string())
    })
}

/// The request body an export was decoded from, when the transport has it: `(body, json)`.
pub(crate) type RawBody = Option<(bytes::Bytes, bool)>;

/// Converts and durably stores one export; counts what happened.
pub(crate) async fn ingest(
    state: &AppState,
    principal: &Principal,
    export: Export,
    raw: RawBody,
    transport: &'static str,
) -> Result<Outcome, ApiError> {
    let started = Instant::now();
    let scope = principal.scope();
    let received_at = now_nanos();
    let (signal, converted) = convert(&export, scope, &state.limits.item, received_at)?;
    drop(export);
    let result = match raw {
        Some((body, json)) => {
            let raw = storage::RawExport {
                signal,
                json,
                received_at,
                scope: scope.clone(),
                body,
            };
            state.telemetry.write_export(converted.batches, raw).await
        }
        None => state.telemetry.write(converted.batches).await,
    };
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
