//! OTLP request bodies in, Arrow record batches out. Pure: no sockets, no clock, no storage.
//!
//! - [`body`] turns an HTTP body (protobuf or JSON, identity/gzip/zstd) into a decoded request,
//!   refusing anything that inflates past the size limit without inflating it all first.
//! - [`convert`] turns decoded requests into one record batch per telemetry table, stamping the
//!   caller's [`model::Scope`] on every row and counting the items it had to reject, so the
//!   protocol layer can answer with OTLP partial success.

pub mod body;
pub mod convert;

pub use body::{Encoding, Format, decode_body};
pub use convert::{Converted, Limits, logs_to_batches, metrics_to_batches, traces_to_batches};
pub use opentelemetry_proto::tonic::collector;

use model::ErrorKind;

/// Why an OTLP body could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("request body exceeds {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0:?}: use application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: use gzip, zstd or identity")]
    UnsupportedEncoding(String),
    #[error("cannot decompress {encoding} body: {reason}")]
    Decompress {
        encoding: &'static str,
        reason: String,
    },
    #[error("cannot decode protobuf body: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("cannot decode JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot build record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl OtlpError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            OtlpError::TooLarge { .. } => ErrorKind::TooLarge,
            OtlpError::UnsupportedContentType(_) | OtlpError::UnsupportedEncoding(_) => {
                ErrorKind::UnsupportedMediaType
            }
            OtlpError::Decompress { .. } | OtlpError::Protobuf(_) | OtlpError::Json(_) => {
                ErrorKind::InvalidInput
            }
            OtlpError::Arrow(_) => ErrorKind::Internal,
        }
    }
}
