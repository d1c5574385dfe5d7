"""Exports spans, logs and every metric type with the official OpenTelemetry Python SDK.

Usage: export_all.py --protocol http|grpc --endpoint URL --key tfk-... --run RUN_ID

Prints one JSON object describing what was sent (ids and values) so the caller can check what
the server stored. Exits non-zero if any export failed.
"""

import argparse
import json
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.metrics import Observation
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from checked import Checked


def exporters(protocol, endpoint, key, temporality):
    headers = {"authorization": f"Bearer {key}"}
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http import Compression

        return (
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers, compression=Compression.Gzip),
            OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers),
            OTLPMetricExporter(
                endpoint=f"{endpoint}/v1/metrics",
                headers=headers,
                preferred_temporality=temporality,
            ),
        )
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from grpc import Compression

    return (
        OTLPSpanExporter(endpoint=endpoint, headers=headers, insecure=True, compression=Compression.Gzip),
        OTLPLogExporter(endpoint=endpoint, headers=headers, insecure=True),
        OTLPMetricExporter(
            endpoint=endpoint, headers=headers, insecure=True, preferred_temporality=temporality
        ),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["http", "grpc"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--run", required=True)
    args = ap.parse_args()

    delta = args.protocol == "http"
    temporality = {
        Counter: AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE,
        Histogram: AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE,
    }
    span_exp, log_exp, metric_exp = exporters(args.protocol, args.endpoint, args.key, temporality)
    span_exp = Checked(span_exp)
    log_exp = Checked(log_exp)
    metric_exp = Checked(metric_exp)

    resource = Resource.create(
        {"service.name": f"svc-{args.run}", "deployment.environment": "test", "host.cores": 2}
    )
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = tp.get_tracer("e2e.tracer", "1.2.3")

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    logger = lp.get_logger("e2e.logger", "0.1")

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=3_600_000)
    from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter

    mp = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        exemplar_filter=AlwaysOnExemplarFilter(),
        views=[
            View(instrument_name="e2e.exp_latency", aggregation=ExponentialBucketHistogramAggregation())
        ],
    )
    meter = mp.get_meter("e2e.meter", "2.0")

    sent = {"run": args.run, "service": f"svc-{args.run}", "spans": {}, "logs": []}

    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"http.method": "GET", "run": args.run, "retries": 3, "ratio": 0.5, "cached": True}) as root:
        root.add_event("cache.miss", {"key": "user:42"})
        ctx = root.get_span_context()
        sent["trace_id"] = format(ctx.trace_id, "032x")
        sent["spans"]["root"] = format(ctx.span_id, "016x")
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT, links=[Link(ctx, {"link.kind": "self"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            sent["spans"]["child"] = format(child.get_span_context().span_id, "016x")
            # Metrics recorded inside the span carry exemplars pointing at it.
            counter = meter.create_counter("e2e.requests", unit="1", description="requests served")
            counter.add(5, {"route": "/a"})
            counter.add(2, {"route": "/a"})
            updown = meter.create_up_down_counter("e2e.queue_depth")
            updown.add(10)
            updown.add(-4)
            hist = meter.create_histogram("e2e.latency", unit="ms")
            for v in (1.0, 5.0, 20.0, 300.0):
                hist.record(v, {"route": "/a"})
            exp = meter.create_histogram("e2e.exp_latency", unit="ms")
            for v in (0.5, 2.0, 8.0):
                exp.record(v)
            meter.create_observable_gauge(
                "e2e.temperature", callbacks=[lambda _opts: [Observation(21.5, {"room": "lab"})]]
            )
            # The current context (inside `child`) gives the record its trace and span ids.
            logger.emit(
                timestamp=time.time_ns(),
                body=f"hello from {args.run}",
                severity_text="ERROR",
                severity_number=SeverityNumber.ERROR,
                attributes={"user.id": 42, "run": args.run},
            )
            sent["logs"].append(f"hello from {args.run}")

    # shutdown() collects and exports metrics exactly once; a force_flush() before it would
    # export a second time.
    tp.force_flush()
    lp.force_flush()
    mp.shutdown()
    tp.shutdown()
    lp.shutdown()
    sent["failures"] = {
        "spans": span_exp.failures,
        "logs": log_exp.failures,
        "metrics": metric_exp.failures,
    }
    print(json.dumps(sent))
    return 1 if any(sent["failures"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
