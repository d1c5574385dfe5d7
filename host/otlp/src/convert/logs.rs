//! `ExportLogsServiceRequest` → `logs_v3`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt8Builder, UInt32Builder,
};
use model::{Scope, Table, schema_of};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::attrs::{any_value_to_string, append_attrs, map_builder, service_name};
use super::traces::repeat_str;
use super::{Converted, Limits, hex_id, nanos};
use crate::OtlpError;

/// Converts a logs export request into a `logs_v3` batch.
///
/// A record's timestamp is its `time_unix_nano`, else its `observed_time_unix_nano`, else
/// `received_at` (the spec's rule for records without a time).
///
/// # Errors
/// Only if Arrow refuses the assembled columns, which would be a bug here.
pub fn logs_to_batches(
    req: &ExportLogsServiceRequest,
    scope: &Scope,
    limits: &Limits,
    received_at: u64,
) -> Result<Converted, OtlpError> {
    let n: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let mut out = Converted::default();
    let mut ts = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut observed = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut trace_id = StringBuilder::with_capacity(n, n * 32);
    let mut span_id = StringBuilder::with_capacity(n, n * 16);
    let mut flags = UInt32Builder::with_capacity(n);
    let mut sev_text = StringBuilder::with_capacity(n, n * 5);
    let mut sev_num = UInt8Builder::with_capacity(n);
    let mut service = StringBuilder::with_capacity(n, n * 16);
    let mut body = StringBuilder::with_capacity(n, n * 64);
    let mut res_attrs = map_builder(n);
    let mut scope_name = StringBuilder::with_capacity(n, n * 8);
    let mut scope_version = StringBuilder::with_capacity(n, n * 4);
    let mut log_attrs = map_builder(n);
    let mut dropped = UInt32Builder::with_capacity(n);
    let mut scratch = String::new();
    let mut text = String::new();
    let mut hex = [0u8; 64];
    let mut rows = 0usize;

    for rl in &req.resource_logs {
        let r_attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let svc = service_name(r_attrs);
        for sl in &rl.scope_logs {
            let (sc_name, sc_version) = sl
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for rec in &sl.log_records {
                if !rec.trace_id.is_empty() && rec.trace_id.len() != 16 {
                    out.reject(1, || {
                        format!(
                            "log record: trace_id must be empty or 16 bytes (got {})",
                            rec.trace_id.len()
                        )
                    });
                    continue;
                }
                if !rec.span_id.is_empty() && rec.span_id.len() != 8 {
                    out.reject(1, || {
                        format!(
                            "log record: span_id must be empty or 8 bytes (got {})",
                            rec.span_id.len()
                        )
                    });
                    continue;
                }
                rows += 1;
                let when = [rec.time_unix_nano, rec.observed_time_unix_nano, received_at]
                    .into_iter()
                    .find(|t| *t != 0)
                    .unwrap_or(0);
                ts.append_value(nanos(when));
                let seen = if rec.observed_time_unix_nano != 0 {
                    rec.observed_time_unix_nano
                } else {
                    received_at
                };
                observed.append_value(nanos(seen));
                trace_id.append_value(hex_id(&rec.trace_id, &mut hex));
                span_id.append_value(hex_id(&rec.span_id, &mut hex));
                flags.append_value(rec.flags & 0xff);
                sev_text.append_value(&rec.severity_text);
                sev_num.append_value(u8::try_from(rec.severity_number.clamp(0, 24)).unwrap_or(0));
                service.append_value(svc);
                text.clear();
                if let Some(b) = &rec.body {
                    any_value_to_string(b, &mut text);
                }
                body.append_value(&text);
                let t = append_attrs(&mut res_attrs, r_attrs, limits, &mut scratch);
                out.truncated_values += u64::from(t.truncated);
                scope_name.append_value(sc_name);
                scope_version.append_value(sc_version);
                let t = append_attrs(&mut log_attrs, &rec.attributes, limits, &mut scratch);
                out.truncated_values += u64::from(t.truncated);
                dropped.append_value(rec.dropped_attributes_count.saturating_add(t.dropped));
            }
        }
    }
    out.accepted = rows as u64;
    if rows == 0 {
        return Ok(out);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(observed.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(flags.finish()),
        Arc::new(sev_text.finish()),
        Arc::new(sev_num.finish()),
        Arc::new(service.finish()),
        repeat_str(&scope.organization_id, rows),
        repeat_str(&scope.workspace_id, rows),
        repeat_str(&scope.tenant_id, rows),
        Arc::new(body.finish()),
        Arc::new(res_attrs.finish()),
        Arc::new(scope_name.finish()),
        Arc::new(scope_version.finish()),
        Arc::new(log_attrs.finish()),
        Arc::new(dropped.finish()),
    ];
    let batch = RecordBatch::try_new(schema_of(Table::Logs), columns)?;
    out.batches.push((Table::Logs, batch));
    Ok(out)
}
