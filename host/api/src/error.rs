//! The one error type of the HTTP surface and its mapping to statuses.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::ErrorKind;

/// An error as a client sees it: a status, a message safe to show, maybe a retry delay.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Bad fields of the request, each a JSON pointer and what is wrong with it.
    pub fields: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
            fields: Vec::new(),
        }
    }

    /// A 400 that lists the bad fields (path, problem); the message names them too.
    pub fn fields(what: &str, fields: Vec<(String, String)>) -> ApiError {
        let list: Vec<String> = fields.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        ApiError {
            kind: ErrorKind::InvalidInput,
            message: format!("invalid {what}: {}", list.join("; ")),
            retry_after: None,
            fields,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidInput, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Forbidden, message)
    }

    pub fn overloaded(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            kind: ErrorKind::Overloaded,
            message: message.into(),
            retry_after: Some(retry_after),
            fields: Vec::new(),
        }
    }

    /// Internal errors are logged with their detail and shown to clients without it.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(ErrorKind::Internal, "internal error")
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.kind)
    }

    /// The gRPC status for the same error.
    pub fn to_grpc(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.kind {
            ErrorKind::InvalidInput => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Forbidden => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Conflict => Code::AlreadyExists,
            ErrorKind::TooLarge => Code::ResourceExhausted,
            ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
            ErrorKind::Overloaded | ErrorKind::TooManyRequests => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        };
        let mut status = tonic::Status::new(code, self.message.clone());
        if let Some(after) = self.retry_after
            && let Ok(v) = after.as_secs().max(1).to_string().parse()
        {
            status.metadata_mut().insert("retry-after", v);
        }
        status
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({
            "error": { "code": status.as_u16(), "message": self.message }
        });
        if !self.fields.is_empty() {
            body["error"]["fields"] = self
                .fields
                .iter()
                .map(|(path, message)| serde_json::json!({"path": path, "message": message}))
                .collect();
        }
        let mut resp = (status, Json(body)).into_response();
        if let Some(after) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

macro_rules! from_kinded {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> ApiError {
                match e.kind() {
                    ErrorKind::Internal => ApiError::internal(&e),
                    kind => ApiError::new(kind, e.to_string()),
                }
            }
        }
    )*};
}

from_kinded!(otlp::OtlpError, query::QueryError, storage::MetaError);

impl From<storage::StoreError> for ApiError {
    fn from(e: storage::StoreError) -> ApiError {
        match e.retry_after() {
            Some(after) => ApiError {
                kind: e.kind(),
                message: e.to_string(),
                retry_after: Some(after),
                fields: Vec::new(),
            },
            None => ApiError::internal(&e),
        }
    }
}
