//! The vocabulary every other crate speaks: tenant scope, telemetry tables and their Arrow
//! schemas, signals, and the error classification that maps onto user-visible statuses.
//!
//! This crate does no IO, owns no clock and depends on nothing but `arrow-schema` and `serde`.

mod scope;
mod tables;

pub use scope::{Scope, Signal};
pub use tables::{
    Rollup, Table, attributes_map_type, event_type, link_type, rollup_schema, schema_of,
};

/// How an error should be reported to a user, decided once where the error is born.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or not allowed (400).
    InvalidInput,
    /// No credentials, or credentials that do not verify (401).
    Unauthenticated,
    /// Valid credentials without the permission asked for (403).
    Forbidden,
    /// The thing asked for does not exist in the caller's scope (404).
    NotFound,
    /// The change clashes with what exists, e.g. a duplicate email or code (409).
    Conflict,
    /// The request body is larger than allowed after decompression (413).
    TooLarge,
    /// The content type is not one we speak (415).
    UnsupportedMediaType,
    /// The write path is saturated or a backing service is down; the client should retry later
    /// (503 + Retry-After).
    Overloaded,
    /// Too many requests are waiting on a slow backing service; retry later (429 + Retry-After).
    TooManyRequests,
    /// Our fault (500).
    Internal,
}
