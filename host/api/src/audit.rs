//! The audit log: every IAM change and every sign-in, success or failure, with who, what, from
//! where and the result. Events are buffered in memory and written in batches to the telemetry
//! store's `audit_logs` table by [`AuditLog::flush`], which the server calls every second and at
//! shutdown.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use chrono::{DateTime, Utc};
use model::Scope;
use parking_lot::Mutex;
use storage::TelemetryStore;

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Success,
    Failure,
    Error,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Error => "error",
        }
    }
}

/// One audited action.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub user_id: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub ip_address: String,
    pub user_agent: String,
    pub scope: Scope,
    pub result: AuditResult,
    pub metadata: serde_json::Value,
}

/// Buffers events until the next flush (bounded: beyond 100k pending events the oldest are
/// dropped and counted, so a stalled store cannot exhaust memory).
#[derive(Default)]
pub struct AuditLog {
    pending: Mutex<Vec<AuditEvent>>,
}

const MAX_PENDING: usize = 100_000;

impl AuditLog {
    pub fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "audit",
            action = %event.action,
            result = event.result.as_str(),
            user_id = %event.user_id,
            resource = %event.resource_id,
            "audit"
        );
        let mut p = self.pending.lock();
        if p.len() >= MAX_PENDING {
            p.remove(0);
            metrics::counter!("telemetryflow_audit_dropped_total").increment(1);
        }
        p.push(event);
    }

    /// Writes pending events to the telemetry store; on failure they are kept for the next try.
    pub async fn flush(&self, store: &Arc<dyn TelemetryStore>) {
        let events: Vec<AuditEvent> = std::mem::take(&mut *self.pending.lock());
        if events.is_empty() {
            return;
        }
        let batch = match audit_batch(&events) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the audit batch");
                return;
            }
        };
        if let Err(e) = store.write(vec![(model::Table::AuditLogs, batch)]).await {
            tracing::warn!(error = %e, events = events.len(), "cannot write audit events; will retry");
            let mut p = self.pending.lock();
            let mut back = events;
            back.append(&mut p);
            *p = back;
        }
    }
}

fn audit_batch(events: &[AuditEvent]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = model::schema_of(model::Table::AuditLogs);
    let ts: Vec<i64> = events
        .iter()
        .map(|e| e.at.timestamp_nanos_opt().unwrap_or(0))
        .collect();
    let col = |f: &dyn Fn(&AuditEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let metadata: Vec<String> = events.iter().map(|e| e.metadata.to_string()).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
        col(&|e| &e.user_id),
        col(&|e| &e.action),
        col(&|e| &e.resource_type),
        col(&|e| &e.resource_id),
        col(&|e| &e.ip_address),
        col(&|e| &e.user_agent),
        col(&|e| &e.scope.organization_id),
        col(&|e| &e.scope.workspace_id),
        col(&|e| &e.scope.tenant_id),
        col(&|e| e.result.as_str()),
        Arc::new(StringArray::from_iter_values(metadata.iter())),
    ];
    RecordBatch::try_new(schema, columns)
}
