//! `ExportTraceServiceRequest` → `traces_v3`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, ListArray, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use model::{Scope, Table, event_type, link_type, schema_of};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

use super::attrs::{AttrMap, append_attrs, map_builder, service_name};
use super::{Converted, Limits, hex_id, is_valid_id, nanos};
use crate::OtlpError;

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "internal",
        Ok(SpanKind::Server) => "server",
        Ok(SpanKind::Client) => "client",
        Ok(SpanKind::Producer) => "producer",
        Ok(SpanKind::Consumer) => "consumer",
        _ => "unspecified",
    }
}

fn status_name(code: i32) -> &'static str {
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => "ok",
        Ok(StatusCode::Error) => "error",
        _ => "unset",
    }
}

fn ts_builder(n: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC")
}

pub(crate) fn repeat_str(value: &str, n: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(n, value.len() * n);
    for _ in 0..n {
        b.append_value(value);
    }
    Arc::new(b.finish())
}

struct Events {
    offsets: Vec<i32>,
    ts: TimestampNanosecondBuilder,
    name: StringBuilder,
    attrs: AttrMap,
    dropped: UInt32Builder,
}

struct Links {
    offsets: Vec<i32>,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    state: StringBuilder,
    attrs: AttrMap,
    dropped: UInt32Builder,
}

fn finish_list(
    item: arrow::datatypes::DataType,
    offsets: Vec<i32>,
    children: Vec<ArrayRef>,
) -> Result<ArrayRef, OtlpError> {
    let arrow::datatypes::DataType::Struct(fields) = item.clone() else {
        unreachable!("events and links are structs")
    };
    let items = StructArray::try_new(fields, children, None)?;
    let field = Arc::new(arrow::datatypes::Field::new("item", item, true));
    let list = ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        None,
    )?;
    Ok(Arc::new(list))
}

/// Converts a trace export request into a `traces_v3` batch.
///
/// # Errors
/// Only if Arrow refuses the assembled columns, which would be a bug here.
pub fn traces_to_batches(
    req: &ExportTraceServiceRequest,
    scope: &Scope,
    limits: &Limits,
) -> Result<Converted, OtlpError> {
    let n: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut out = Converted::default();
    let mut ts = ts_builder(n);
    let mut end_ts = ts_builder(n);
    let mut trace_id = StringBuilder::with_capacity(n, n * 32);
    let mut span_id = StringBuilder::with_capacity(n, n * 16);
    let mut parent = StringBuilder::with_capacity(n, n * 16);
    let mut state = StringBuilder::with_capacity(n, 0);
    let mut name = StringBuilder::with_capacity(n, n * 16);
    let mut kind = StringBuilder::with_capacity(n, n * 8);
    let mut service = StringBuilder::with_capacity(n, n * 16);
    let mut res_attrs = map_builder(n);
    let mut scope_name = StringBuilder::with_capacity(n, n * 8);
    let mut scope_version = StringBuilder::with_capacity(n, n * 4);
    let mut span_attrs = map_builder(n);
    let mut duration = UInt64Builder::with_capacity(n);
    let mut status_code = StringBuilder::with_capacity(n, n * 5);
    let mut status_msg = StringBuilder::with_capacity(n, 0);
    let mut dropped_attrs = UInt32Builder::with_capacity(n);
    let mut dropped_events = UInt32Builder::with_capacity(n);
    let mut dropped_links = UInt32Builder::with_capacity(n);
    let mut ev = Events {
        offsets: Vec::with_capacity(n + 1),
        ts: ts_builder(0),
        name: StringBuilder::new(),
        attrs: map_builder(0),
        dropped: UInt32Builder::new(),
    };
    let mut lk = Links {
        offsets: Vec::with_capacity(n + 1),
        trace_id: StringBuilder::new(),
        span_id: StringBuilder::new(),
        state: StringBuilder::new(),
        attrs: map_builder(0),
        dropped: UInt32Builder::new(),
    };
    ev.offsets.push(0);
    lk.offsets.push(0);
    let mut scratch = String::new();
    let mut hex = [0u8; 64];
    let mut rows = 0usize;

    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref();
        let r_attrs = resource.map_or(&[][..], |r| &r.attributes[..]);
        let svc = service_name(r_attrs);
        for ss in &rs.scope_spans {
            let (sc_name, sc_version) = ss
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for span in &ss.spans {
                if !is_valid_id(&span.trace_id, 16) {
                    out.reject(1, || {
                        format!(
                            "span {:?}: trace_id must be 16 bytes and not all zero (got {})",
                            span.name,
                            span.trace_id.len()
                        )
                    });
                    continue;
                }
                if !is_valid_id(&span.span_id, 8) {
                    out.reject(1, || {
                        format!(
                            "span {:?}: span_id must be 8 bytes and not all zero (got {})",
                            span.name,
                            span.span_id.len()
                        )
                    });
                    continue;
                }
                if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
                    out.reject(1, || {
                        format!(
                            "span {:?}: parent_span_id must be empty or 8 bytes",
                            span.name
                        )
                    });
                    continue;
                }
                rows += 1;
                ts.append_value(nanos(span.start_time_unix_nano));
                end_ts.append_value(nanos(span.end_time_unix_nano));
                duration.append_value(
                    span.end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                );
                trace_id.append_value(hex_id(&span.trace_id, &mut hex));
                span_id.append_value(hex_id(&span.span_id, &mut hex));
                parent.append_value(hex_id(&span.parent_span_id, &mut hex));
                state.append_value(&span.trace_state);
                name.append_value(&span.name);
                kind.append_value(kind_name(span.kind));
                service.append_value(svc);
                let t = append_attrs(&mut res_attrs, r_attrs, limits, &mut scratch);
                out.truncated_values += u64::from(t.truncated);
                scope_name.append_value(sc_name);
                scope_version.append_value(sc_version);
                let t = append_attrs(&mut span_attrs, &span.attributes, limits, &mut scratch);
                out.truncated_values += u64::from(t.truncated);
                let (code, msg) = span
                    .status
                    .as_ref()
                    .map_or(("unset", ""), |s| (status_name(s.code), s.message.as_str()));
                status_code.append_value(code);
                status_msg.append_value(msg);
                dropped_attrs.append_value(span.dropped_attributes_count.saturating_add(t.dropped));
                dropped_events.append_value(span.dropped_events_count);
                dropped_links.append_value(span.dropped_links_count);
                for e in &span.events {
                    ev.ts.append_value(nanos(e.time_unix_nano));
                    ev.name.append_value(&e.name);
                    let t = append_attrs(&mut ev.attrs, &e.attributes, limits, &mut scratch);
                    out.truncated_values += u64::from(t.truncated);
                    ev.dropped
                        .append_value(e.dropped_attributes_count.saturating_add(t.dropped));
                }
                ev.offsets
                    .push(ev.offsets[ev.offsets.len() - 1] + span.events.len() as i32);
                for l in &span.links {
                    lk.trace_id.append_value(hex_id(&l.trace_id, &mut hex));
                    lk.span_id.append_value(hex_id(&l.span_id, &mut hex));
                    lk.state.append_value(&l.trace_state);
                    let t = append_attrs(&mut lk.attrs, &l.attributes, limits, &mut scratch);
                    out.truncated_values += u64::from(t.truncated);
                    lk.dropped
                        .append_value(l.dropped_attributes_count.saturating_add(t.dropped));
                }
                lk.offsets
                    .push(lk.offsets[lk.offsets.len() - 1] + span.links.len() as i32);
            }
        }
    }
    out.accepted = rows as u64;
    if rows == 0 {
        return Ok(out);
    }
    let events = finish_list(
        event_type(),
        ev.offsets,
        vec![
            Arc::new(ev.ts.finish()),
            Arc::new(ev.name.finish()),
            Arc::new(ev.attrs.finish()),
            Arc::new(ev.dropped.finish()),
        ],
    )?;
    let links = finish_list(
        link_type(),
        lk.offsets,
        vec![
            Arc::new(lk.trace_id.finish()),
            Arc::new(lk.span_id.finish()),
            Arc::new(lk.state.finish()),
            Arc::new(lk.attrs.finish()),
            Arc::new(lk.dropped.finish()),
        ],
    )?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        Arc::new(state.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(service.finish()),
        repeat_str(&scope.organization_id, rows),
        repeat_str(&scope.workspace_id, rows),
        repeat_str(&scope.tenant_id, rows),
        Arc::new(res_attrs.finish()),
        Arc::new(scope_name.finish()),
        Arc::new(scope_version.finish()),
        Arc::new(span_attrs.finish()),
        Arc::new(duration.finish()),
        Arc::new(end_ts.finish()),
        Arc::new(status_code.finish()),
        Arc::new(status_msg.finish()),
        Arc::new(dropped_attrs.finish()),
        Arc::new(dropped_events.finish()),
        Arc::new(dropped_links.finish()),
        events,
        links,
    ];
    let batch = RecordBatch::try_new(schema_of(Table::Traces), columns)?;
    out.batches.push((Table::Traces, batch));
    Ok(out)
}
