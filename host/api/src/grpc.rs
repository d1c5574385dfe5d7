//! OTLP/gRPC: the three collector services on tonic, sharing the ingest path with OTLP/HTTP.

use std::sync::Arc;

use model::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::ingest::{Export, Outcome, admit, authorize, count_rejected_request, ingest};
use crate::{ApiError, AppState};

#[derive(Clone)]
pub struct Otlp {
    state: Arc<AppState>,
}

/// The three OTLP gRPC services, accepting gzip and zstd and messages up to the body limit.
pub fn grpc_services(
    state: Arc<AppState>,
) -> (
    TraceServiceServer<Otlp>,
    LogsServiceServer<Otlp>,
    MetricsServiceServer<Otlp>,
) {
    let limit = state.limits.max_body_bytes;
    let svc = Otlp { state };
    (
        TraceServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit),
        LogsServiceServer::new(svc.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit),
        MetricsServiceServer::new(svc)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(limit),
    )
}

impl Otlp {
    async fn export<T>(
        &self,
        signal: Signal,
        request: Request<T>,
        wrap: fn(T) -> Export,
    ) -> Result<Outcome, Status> {
        let result = async {
            let meta = request.metadata();
            let token = meta
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .or_else(|| {
                    meta.get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split_once(' '))
                        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                        .map(|(_, t)| t.trim())
                })
                .ok_or_else(|| {
                    ApiError::unauthenticated(
                        "missing API key (authorization: Bearer tfk-… or x-api-key)",
                    )
                })?
                .to_string();
            let ip = request
                .remote_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let endpoint = match signal {
                Signal::Traces => "grpc:traces",
                Signal::Logs => "grpc:logs",
                Signal::Metrics => "grpc:metrics",
            };
            let principal = self.state.keys.verify(&token, &ip, endpoint).await?;
            let outcome = async {
                authorize(&principal, signal)?;
                let _permit = admit(&self.state)?;
                ingest(
                    &self.state,
                    &principal,
                    wrap(request.into_inner()),
                    None,
                    "grpc",
                )
                .await
            }
            .await;
            let status = match &outcome {
                Ok(_) => 200,
                Err(e) => e.status().as_u16(),
            };
            self.state
                .keys
                .note(principal.actor(), endpoint, status, &ip);
            outcome
        }
        .await;
        result.map_err(|e| {
            count_rejected_request(signal, "grpc_error");
            e.to_grpc()
        })
    }
}

#[tonic::async_trait]
impl TraceService for Otlp {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let o = Otlp::export(self, Signal::Traces, request, Export::Traces).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (o.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(o.rejected).unwrap_or(i64::MAX),
                error_message: o.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let o = Otlp::export(self, Signal::Logs, request, Export::Logs).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (o.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(o.rejected).unwrap_or(i64::MAX),
                error_message: o.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Otlp {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let o = Otlp::export(self, Signal::Metrics, request, Export::Metrics).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (o.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(o.rejected).unwrap_or(i64::MAX),
                error_message: o.message,
            }),
        }))
    }
}
