"""A small checkout service instrumented with the OpenTelemetry Python SDK (OTLP/HTTP).

Usage: apm_app.py --endpoint URL --key tfk-... --service NAME

Serves 40 requests within the last minutes: 24 `GET /cart` and 16 `POST /checkout` server
spans (5 to 120 ms), each with a client span to its database; every fifth request fails and
logs an ERROR record in its span. Exits non-zero if an export failed.
"""

import argparse
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from checked import Checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()
    headers = {"authorization": f"Bearer {args.key}"}
    spans = Checked(OTLPSpanExporter(endpoint=f"{args.endpoint}/v1/traces", headers=headers))
    logs = Checked(OTLPLogExporter(endpoint=f"{args.endpoint}/v1/logs", headers=headers))

    resource = Resource.create({"service.name": args.service, "service.version": "1.0.0"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(spans))
    tracer = tp.get_tracer("apm-app")
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(logs))
    logger = lp.get_logger("apm-app")

    # Requests spread over the last eight minutes, oldest first.
    now = time.time_ns()
    for i in range(40):
        route = "GET /cart" if i % 5 in (0, 1, 3) else "POST /checkout"
        start = now - (40 - i) * 12_000_000_000
        duration = (5 + (i * 37) % 116) * 1_000_000
        span = tracer.start_span(route, kind=SpanKind.SERVER, start_time=start,
                                 attributes={"http.route": route.split(" ")[1]})
        with trace.use_span(span, end_on_exit=False):
            db = tracer.start_span("SELECT carts", kind=SpanKind.CLIENT,
                                   start_time=start + 1_000_000,
                                   attributes={"db.system": "postgresql"})
            db.end(end_time=start + duration // 2)
            if i % 5 == 4:
                span.set_status(Status(StatusCode.ERROR, "payment declined"))
                logger.emit(
                    timestamp=start + duration - 1_000_000,
                    body=f"request {i} failed: payment declined",
                    severity_text="ERROR",
                    severity_number=SeverityNumber.ERROR,
                    attributes={"request": i},
                )
        span.end(end_time=start + duration)

    tp.shutdown()
    lp.shutdown()
    if spans.failures or logs.failures:
        print(f"failed exports: spans {spans.failures}, logs {logs.failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
