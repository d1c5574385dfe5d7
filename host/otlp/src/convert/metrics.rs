//! `ExportMetricsServiceRequest` → `metrics_v3`, `metric_histograms` and `exemplars_v3`.
//!
//! Every data point becomes one `metrics_v3` row: gauges and sums with their value; histograms,
//! exponential histograms and summaries with their sum as `value` (so rates over sums work on
//! one table). Histogram-like points also get a `metric_histograms` row carrying the whole
//! distribution (explicit buckets, native exponential buckets, or summary quantiles). Every
//! exemplar becomes an `exemplars_v3` row; the first exemplar of a gauge/sum point is also kept
//! in the `exemplar_*` columns of its `metrics_v3` row.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder, UInt8Builder, UInt32Builder, UInt64Builder,
};
use model::{Scope, Table, schema_of};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, exemplar, exponential_histogram_data_point::Buckets,
    metric::Data, number_data_point,
};

use super::attrs::{AttrMap, append_attrs, map_builder, service_name};
use super::traces::repeat_str;
use super::{Converted, Limits, hex_id, nanos};
use crate::OtlpError;

fn ts_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

fn temporality_name(t: i32) -> &'static str {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => "delta",
        Ok(AggregationTemporality::Cumulative) => "cumulative",
        _ => "unspecified",
    }
}

fn exemplar_value(e: &Exemplar) -> f64 {
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => d,
        Some(exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// What every row of one data point shares.
struct Point<'a> {
    time: u64,
    start: u64,
    name: &'a str,
    description: &'a str,
    unit: &'a str,
    service: &'a str,
    resource: &'a [KeyValue],
    scope_name: &'a str,
    scope_version: &'a str,
    attributes: &'a [KeyValue],
    metric_type: &'static str,
    temporality: &'static str,
    flags: u32,
}

/// Columns shared by `metrics_v3` and `metric_histograms`, in schema order.
struct Common {
    rows: usize,
    ts: TimestampNanosecondBuilder,
    start: TimestampNanosecondBuilder,
    name: StringBuilder,
    description: StringBuilder,
    service: StringBuilder,
    resource: AttrMap,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    attributes: AttrMap,
}

impl Common {
    fn new() -> Common {
        Common {
            rows: 0,
            ts: ts_builder(),
            start: ts_builder(),
            name: StringBuilder::new(),
            description: StringBuilder::new(),
            service: StringBuilder::new(),
            resource: map_builder(0),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            attributes: map_builder(0),
        }
    }

    fn push(&mut self, p: &Point<'_>, limits: &Limits, scratch: &mut String, out: &mut Converted) {
        self.rows += 1;
        self.ts.append_value(nanos(p.time));
        if p.start == 0 {
            self.start.append_null();
        } else {
            self.start.append_value(nanos(p.start));
        }
        self.name.append_value(p.name);
        self.description.append_value(p.description);
        self.service.append_value(p.service);
        let t = append_attrs(&mut self.resource, p.resource, limits, scratch);
        out.truncated_values += u64::from(t.truncated);
        self.scope_name.append_value(p.scope_name);
        self.scope_version.append_value(p.scope_version);
        let t = append_attrs(&mut self.attributes, p.attributes, limits, scratch);
        out.truncated_values += u64::from(t.truncated);
    }

    /// Columns up to and including `attributes`, with the tenant columns in place.
    fn finish(&mut self, scope: &Scope) -> Vec<ArrayRef> {
        let n = self.rows;
        vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.service.finish()),
            repeat_str(&scope.organization_id, n),
            repeat_str(&scope.workspace_id, n),
            repeat_str(&scope.tenant_id, n),
            Arc::new(self.resource.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.attributes.finish()),
        ]
    }
}

struct Points {
    common: Common,
    value: Float64Builder,
    unit: StringBuilder,
    metric_type: StringBuilder,
    temporality: StringBuilder,
    monotonic: UInt8Builder,
    flags: UInt32Builder,
    ex_trace: StringBuilder,
    ex_span: StringBuilder,
    ex_ts: TimestampNanosecondBuilder,
    ex_value: Float64Builder,
    ex_attrs: AttrMap,
}

struct Histograms {
    common: Common,
    unit: StringBuilder,
    metric_type: StringBuilder,
    temporality: StringBuilder,
    flags: UInt32Builder,
    bounds: ListBuilder<Float64Builder>,
    counts: ListBuilder<UInt64Builder>,
    sum: Float64Builder,
    count: UInt64Builder,
    min: Float64Builder,
    max: Float64Builder,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    pos_offset: Int32Builder,
    pos_counts: ListBuilder<UInt64Builder>,
    neg_offset: Int32Builder,
    neg_counts: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<Float64Builder>,
    quantile_values: ListBuilder<Float64Builder>,
    ex_ts: ListBuilder<TimestampNanosecondBuilder>,
    ex_values: ListBuilder<Float64Builder>,
    ex_trace: ListBuilder<StringBuilder>,
    ex_span: ListBuilder<StringBuilder>,
    ex_attrs: ListBuilder<AttrMap>,
}

struct Exemplars {
    rows: usize,
    ts: TimestampNanosecondBuilder,
    name: StringBuilder,
    trace: StringBuilder,
    span: StringBuilder,
    value: Float64Builder,
    attrs: AttrMap,
    service: StringBuilder,
}

/// The native parts of a histogram-like point.
#[derive(Default)]
struct Distribution<'a> {
    bounds: &'a [f64],
    counts: &'a [u64],
    sum: Option<f64>,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: (i32, &'a [u64]),
    negative: (i32, &'a [u64]),
    quantiles: Vec<(f64, f64)>,
}

struct Converter<'a> {
    limits: &'a Limits,
    scratch: String,
    hex: [u8; 64],
    points: Points,
    hist: Histograms,
    ex: Exemplars,
    out: Converted,
}

impl Converter<'_> {
    fn exemplars(&mut self, p: &Point<'_>, exemplars: &[Exemplar]) {
        for e in exemplars {
            self.ex.rows += 1;
            self.ex.ts.append_value(nanos(e.time_unix_nano));
            self.ex.name.append_value(p.name);
            self.ex
                .trace
                .append_value(hex_id(&e.trace_id, &mut self.hex));
            self.ex.span.append_value(hex_id(&e.span_id, &mut self.hex));
            self.ex.value.append_value(exemplar_value(e));
            append_attrs(
                &mut self.ex.attrs,
                &e.filtered_attributes,
                self.limits,
                &mut self.scratch,
            );
            self.ex.service.append_value(p.service);
        }
    }

    fn point(&mut self, p: &Point<'_>, value: f64, monotonic: bool, exemplars: &[Exemplar]) {
        let b = &mut self.points;
        b.common
            .push(p, self.limits, &mut self.scratch, &mut self.out);
        b.value.append_value(value);
        b.unit.append_value(p.unit);
        b.metric_type.append_value(p.metric_type);
        b.temporality.append_value(p.temporality);
        b.monotonic.append_value(u8::from(monotonic));
        b.flags.append_value(p.flags);
        match exemplars.first() {
            Some(e) => {
                b.ex_trace.append_value(hex_id(&e.trace_id, &mut self.hex));
                b.ex_span.append_value(hex_id(&e.span_id, &mut self.hex));
                b.ex_ts.append_value(nanos(e.time_unix_nano));
                b.ex_value.append_value(exemplar_value(e));
                append_attrs(
                    &mut b.ex_attrs,
                    &e.filtered_attributes,
                    self.limits,
                    &mut self.scratch,
                );
            }
            None => {
                b.ex_trace.append_value("");
                b.ex_span.append_value("");
                b.ex_ts.append_null();
                b.ex_value.append_null();
                append_attrs(&mut b.ex_attrs, &[], self.limits, &mut self.scratch);
            }
        }
        self.exemplars(p, exemplars);
        self.out.accepted += 1;
    }

    fn distribution(&mut self, p: &Point<'_>, d: &Distribution<'_>, exemplars: &[Exemplar]) {
        self.point(p, d.sum.unwrap_or(0.0), false, exemplars);
        let h = &mut self.hist;
        h.common
            .push(p, self.limits, &mut self.scratch, &mut self.out);
        h.unit.append_value(p.unit);
        h.metric_type.append_value(p.metric_type);
        h.temporality.append_value(p.temporality);
        h.flags.append_value(p.flags);
        h.bounds.values().append_slice(d.bounds);
        h.bounds.append(true);
        h.counts.values().append_slice(d.counts);
        h.counts.append(true);
        h.sum.append_option(d.sum);
        h.count.append_value(d.count);
        h.min.append_option(d.min);
        h.max.append_option(d.max);
        h.scale.append_value(d.scale);
        h.zero_count.append_value(d.zero_count);
        h.zero_threshold.append_value(d.zero_threshold);
        h.pos_offset.append_value(d.positive.0);
        h.pos_counts.values().append_slice(d.positive.1);
        h.pos_counts.append(true);
        h.neg_offset.append_value(d.negative.0);
        h.neg_counts.values().append_slice(d.negative.1);
        h.neg_counts.append(true);
        for (q, v) in &d.quantiles {
            h.quantiles.values().append_value(*q);
            h.quantile_values.values().append_value(*v);
        }
        h.quantiles.append(true);
        h.quantile_values.append(true);
        for e in exemplars {
            h.ex_ts.values().append_value(nanos(e.time_unix_nano));
            h.ex_values.values().append_value(exemplar_value(e));
            h.ex_trace
                .values()
                .append_value(hex_id(&e.trace_id, &mut self.hex));
            h.ex_span
                .values()
                .append_value(hex_id(&e.span_id, &mut self.hex));
            append_attrs(
                h.ex_attrs.values(),
                &e.filtered_attributes,
                self.limits,
                &mut self.scratch,
            );
        }
        h.ex_ts.append(true);
        h.ex_values.append(true);
        h.ex_trace.append(true);
        h.ex_span.append(true);
        h.ex_attrs.append(true);
    }
}

/// Converts a metrics export request into `metrics_v3`, `metric_histograms` and `exemplars_v3`
/// batches. Points without a time get `received_at`.
///
/// # Errors
/// Only if Arrow refuses the assembled columns, which would be a bug here.
pub fn metrics_to_batches<'a>(
    req: &'a ExportMetricsServiceRequest,
    scope: &Scope,
    limits: &Limits,
    received_at: u64,
) -> Result<Converted, OtlpError> {
    let mut c = Converter {
        limits,
        scratch: String::new(),
        hex: [0u8; 64],
        points: Points {
            common: Common::new(),
            value: Float64Builder::new(),
            unit: StringBuilder::new(),
            metric_type: StringBuilder::new(),
            temporality: StringBuilder::new(),
            monotonic: UInt8Builder::new(),
            flags: UInt32Builder::new(),
            ex_trace: StringBuilder::new(),
            ex_span: StringBuilder::new(),
            ex_ts: ts_builder(),
            ex_value: Float64Builder::new(),
            ex_attrs: map_builder(0),
        },
        hist: Histograms {
            common: Common::new(),
            unit: StringBuilder::new(),
            metric_type: StringBuilder::new(),
            temporality: StringBuilder::new(),
            flags: UInt32Builder::new(),
            bounds: ListBuilder::new(Float64Builder::new()),
            counts: ListBuilder::new(UInt64Builder::new()),
            sum: Float64Builder::new(),
            count: UInt64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
            scale: Int32Builder::new(),
            zero_count: UInt64Builder::new(),
            zero_threshold: Float64Builder::new(),
            pos_offset: Int32Builder::new(),
            pos_counts: ListBuilder::new(UInt64Builder::new()),
            neg_offset: Int32Builder::new(),
            neg_counts: ListBuilder::new(UInt64Builder::new()),
            quantiles: ListBuilder::new(Float64Builder::new()),
            quantile_values: ListBuilder::new(Float64Builder::new()),
            ex_ts: ListBuilder::new(ts_builder()),
            ex_values: ListBuilder::new(Float64Builder::new()),
            ex_trace: ListBuilder::new(StringBuilder::new()),
            ex_span: ListBuilder::new(StringBuilder::new()),
            ex_attrs: ListBuilder::new(map_builder(0)),
        },
        ex: Exemplars {
            rows: 0,
            ts: ts_builder(),
            name: StringBuilder::new(),
            trace: StringBuilder::new(),
            span: StringBuilder::new(),
            value: Float64Builder::new(),
            attrs: map_builder(0),
            service: StringBuilder::new(),
        },
        out: Converted::default(),
    };
    let at = |t: u64| if t == 0 { received_at } else { t };

    for rm in &req.resource_metrics {
        let r_attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let svc = service_name(r_attrs);
        for sm in &rm.scope_metrics {
            let (sc_name, sc_version) = sm
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for metric in &sm.metrics {
                let base = |time: u64,
                            start: u64,
                            attributes: &'a [KeyValue],
                            metric_type: &'static str,
                            temporality: &'static str,
                            flags: u32| Point {
                    time: at(time),
                    start,
                    name: &metric.name,
                    description: &metric.description,
                    unit: &metric.unit,
                    service: svc,
                    resource: r_attrs,
                    scope_name: sc_name,
                    scope_version: sc_version,
                    attributes,
                    metric_type,
                    temporality,
                    flags,
                };
                let Some(data) = &metric.data else {
                    c.out
                        .reject(1, || format!("metric {:?} has no data", metric.name));
                    continue;
                };
                if metric.name.is_empty() {
                    let n = match data {
                        Data::Gauge(g) => g.data_points.len(),
                        Data::Sum(s) => s.data_points.len(),
                        Data::Histogram(h) => h.data_points.len(),
                        Data::ExponentialHistogram(h) => h.data_points.len(),
                        Data::Summary(s) => s.data_points.len(),
                    };
                    c.out
                        .reject(n as u64, || "metric without a name".to_string());
                    continue;
                }
                match data {
                    Data::Gauge(_) | Data::Sum(_) => {
                        let (points, mtype, temporality, monotonic) = match data {
                            Data::Gauge(g) => (&g.data_points, "gauge", "unspecified", false),
                            Data::Sum(s) => (
                                &s.data_points,
                                "counter",
                                temporality_name(s.aggregation_temporality),
                                s.is_monotonic,
                            ),
                            _ => unreachable!("matched above"),
                        };
                        for dp in points {
                            let value = match dp.value {
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                None => {
                                    c.out.reject(1, || {
                                        format!(
                                            "metric {:?}: data point without a value",
                                            metric.name
                                        )
                                    });
                                    continue;
                                }
                            };
                            let p = base(
                                dp.time_unix_nano,
                                dp.start_time_unix_nano,
                                &dp.attributes,
                                mtype,
                                temporality,
                                dp.flags,
                            );
                            c.point(&p, value, monotonic, &dp.exemplars);
                        }
                    }
                    Data::Histogram(h) => {
                        let temporality = temporality_name(h.aggregation_temporality);
                        for dp in &h.data_points {
                            if !dp.bucket_counts.is_empty()
                                && dp.bucket_counts.len() != dp.explicit_bounds.len() + 1
                            {
                                c.out.reject(1, || {
                                    format!(
                                        "metric {:?}: {} bucket counts for {} bounds (want bounds + 1)",
                                        metric.name,
                                        dp.bucket_counts.len(),
                                        dp.explicit_bounds.len()
                                    )
                                });
                                continue;
                            }
                            let p = base(
                                dp.time_unix_nano,
                                dp.start_time_unix_nano,
                                &dp.attributes,
                                "histogram",
                                temporality,
                                dp.flags,
                            );
                            let d = Distribution {
                                bounds: &dp.explicit_bounds,
                                counts: &dp.bucket_counts,
                                sum: dp.sum,
                                count: dp.count,
                                min: dp.min,
                                max: dp.max,
                                ..Default::default()
                            };
                            c.distribution(&p, &d, &dp.exemplars);
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        let temporality = temporality_name(h.aggregation_temporality);
                        for dp in &h.data_points {
                            let p = base(
                                dp.time_unix_nano,
                                dp.start_time_unix_nano,
                                &dp.attributes,
                                "exponential_histogram",
                                temporality,
                                dp.flags,
                            );
                            let d = Distribution {
                                sum: dp.sum,
                                count: dp.count,
                                min: dp.min,
                                max: dp.max,
                                scale: dp.scale,
                                zero_count: dp.zero_count,
                                zero_threshold: dp.zero_threshold,
                                positive: side(dp.positive.as_ref()),
                                negative: side(dp.negative.as_ref()),
                                ..Default::default()
                            };
                            c.distribution(&p, &d, &dp.exemplars);
                        }
                    }
                    Data::Summary(s) => {
                        for dp in &s.data_points {
                            let p = base(
                                dp.time_unix_nano,
                                dp.start_time_unix_nano,
                                &dp.attributes,
                                "summary",
                                "unspecified",
                                dp.flags,
                            );
                            let d = Distribution {
                                sum: Some(dp.sum),
                                count: dp.count,
                                quantiles: dp
                                    .quantile_values
                                    .iter()
                                    .map(|q| (q.quantile, q.value))
                                    .collect(),
                                ..Default::default()
                            };
                            c.distribution(&p, &d, &[]);
                        }
                    }
                }
            }
        }
    }
    finish(c, scope)
}

fn side(b: Option<&Buckets>) -> (i32, &[u64]) {
    b.map_or((0, &[][..]), |b| (b.offset, &b.bucket_counts[..]))
}

fn finish(mut c: Converter<'_>, scope: &Scope) -> Result<Converted, OtlpError> {
    if c.points.common.rows > 0 {
        let b = &mut c.points;
        let mut cols = b.common.finish(scope);
        cols.extend([
            Arc::new(b.value.finish()) as ArrayRef,
            Arc::new(b.unit.finish()),
            Arc::new(b.metric_type.finish()),
            Arc::new(b.temporality.finish()),
            Arc::new(b.monotonic.finish()),
            Arc::new(b.flags.finish()),
            Arc::new(b.ex_trace.finish()),
            Arc::new(b.ex_span.finish()),
            Arc::new(b.ex_ts.finish()),
            Arc::new(b.ex_value.finish()),
            Arc::new(b.ex_attrs.finish()),
        ]);
        let batch = RecordBatch::try_new(schema_of(Table::Metrics), cols)?;
        c.out.batches.push((Table::Metrics, batch));
    }
    if c.hist.common.rows > 0 {
        let h = &mut c.hist;
        let mut cols = h.common.finish(scope);
        cols.extend([
            Arc::new(h.unit.finish()) as ArrayRef,
            Arc::new(h.metric_type.finish()),
            Arc::new(h.temporality.finish()),
            Arc::new(h.flags.finish()),
            Arc::new(h.bounds.finish()),
            Arc::new(h.counts.finish()),
            Arc::new(h.sum.finish()),
            Arc::new(h.count.finish()),
            Arc::new(h.min.finish()),
            Arc::new(h.max.finish()),
            Arc::new(h.scale.finish()),
            Arc::new(h.zero_count.finish()),
            Arc::new(h.zero_threshold.finish()),
            Arc::new(h.pos_offset.finish()),
            Arc::new(h.pos_counts.finish()),
            Arc::new(h.neg_offset.finish()),
            Arc::new(h.neg_counts.finish()),
            Arc::new(h.quantiles.finish()),
            Arc::new(h.quantile_values.finish()),
            Arc::new(h.ex_ts.finish()),
            Arc::new(h.ex_values.finish()),
            Arc::new(h.ex_trace.finish()),
            Arc::new(h.ex_span.finish()),
            Arc::new(h.ex_attrs.finish()),
        ]);
        let batch = RecordBatch::try_new(schema_of(Table::Histograms), cols)?;
        c.out.batches.push((Table::Histograms, batch));
    }
    if c.ex.rows > 0 {
        let e = &mut c.ex;
        let n = e.rows;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(e.ts.finish()),
            Arc::new(e.name.finish()),
            Arc::new(e.trace.finish()),
            Arc::new(e.span.finish()),
            Arc::new(e.value.finish()),
            Arc::new(e.attrs.finish()),
            Arc::new(e.service.finish()),
            repeat_str(&scope.organization_id, n),
            repeat_str(&scope.workspace_id, n),
            repeat_str(&scope.tenant_id, n),
        ];
        let batch = RecordBatch::try_new(schema_of(Table::Exemplars), cols)?;
        c.out.batches.push((Table::Exemplars, batch));
    }
    Ok(c.out)
}
