//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`, protobuf or JSON, identity, gzip or
//! zstd. Errors are `google.rpc.Status` bodies in the request's format, as the spec asks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use model::{ErrorKind, Signal};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otlp::body::encode_response;
use otlp::{Encoding, Format};

use crate::auth::presented_api_key;
use crate::ingest::{Export, admit, authorize, count_rejected_request, ingest};
use crate::{ApiError, AppState};

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The OTLP/HTTP routes.
pub fn otlp_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/v1/metrics", post(metrics))
        .with_state(state)
}

async fn traces(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, Signal::Traces, req).await
}

async fn logs(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, Signal::Logs, req).await
}

async fn metrics(State(state): State<Arc<AppState>>, req: Request) -> Response {
    handle(&state, Signal::Metrics, req).await
}

fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

async fn handle(state: &AppState, signal: Signal, req: Request) -> Response {
    let format = Format::from_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let reply_format = format.as_ref().copied().unwrap_or(Format::Json);
    let mut caller = None;
    let resp = match handle_inner(state, signal, req, format, &mut caller).await {
        Ok(resp) => resp,
        Err(e) => {
            count_rejected_request(signal, reason(e.kind));
            error_response(&e, reply_format)
        }
    };
    if let Some((key_id, ip)) = caller {
        state
            .keys
            .note(&key_id, endpoint(signal), resp.status().as_u16(), &ip);
    }
    resp
}

fn endpoint(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/v1/traces",
        Signal::Logs => "/v1/logs",
        Signal::Metrics => "/v1/metrics",
    }
}

fn reason(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "invalid",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::UnsupportedMediaType => "unsupported_media_type",
        ErrorKind::Overloaded => "overloaded",
        ErrorKind::TooManyRequests => "throttled",
        ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Internal => "internal",
    }
}

fn error_response(e: &ApiError, format: Format) -> Response {
    let status = RpcStatus {
        code: e.to_grpc().code() as i32,
        message: e.message.clone(),
    };
    let body = encode_response(&status, format);
    let mut resp = (
        e.status(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response();
    if let Some(after) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            ErrorKind::TooLarge,
            format!("request body exceeds {limit} bytes"),
        )),
        Err(e) => Err(ApiError::invalid(format!("cannot read request body: {e}"))),
    }
}

fn decode<M>(body: &bytes::Bytes, format: Format) -> Result<M, ApiError>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    Ok(otlp::decode_body(
        body.clone(),
        format,
        Encoding::Identity,
        usize::MAX,
    )?)
}

async fn handle_inner(
    state: &AppState,
    signal: Signal,
    req: Request,
    format: Result<Format, otlp::OtlpError>,
    caller: &mut Option<(String, String)>,
) -> Result<Response, ApiError> {
    let token = presented_api_key(req.headers())
        .ok_or_else(|| {
            ApiError::unauthenticated("missing API key (Authorization: Bearer tfk-… or x-api-key)")
        })?
        .to_string();
    let ip = client_ip(&req);
    let principal = state.keys.verify(&token, &ip, endpoint(signal)).await?;
    *caller = Some((principal.actor().to_string(), ip));
    authorize(&principal, signal)?;
    let format = format?;
    let encoding = Encoding::from_header(
        req.headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )?;
    let _permit = admit(state)?;
    let limit = state.limits.max_body_bytes;
    let body = read_body(req, limit).await?;
    let body = otlp::body::decompress(body, encoding, limit)?;
    let export = match signal {
        Signal::Traces => Export::Traces(decode::<ExportTraceServiceRequest>(&body, format)?),
        Signal::Logs => Export::Logs(decode::<ExportLogsServiceRequest>(&body, format)?),
        Signal::Metrics => Export::Metrics(decode::<ExportMetricsServiceRequest>(&body, format)?),
    };
    let raw = Some((body, format == Format::Json));
    let outcome = ingest(state, &principal, export, raw, "http").await?;
    let body = match signal {
        Signal::Traces => encode_response(
            &ExportTraceServiceResponse {
                partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                    error_message: outcome.message.clone(),
                }),
            },
            format,
        ),
        Signal::Logs => encode_response(
            &ExportLogsServiceResponse {
                partial_success: (outcome.rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                    error_message: outcome.message.clone(),
                }),
            },
            format,
        ),
        Signal::Metrics => encode_response(
            &ExportMetricsServiceResponse {
                partial_success: (outcome.rejected > 0).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
                    error_message: outcome.message.clone(),
                }),
            },
            format,
        ),
    };
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response())
}
