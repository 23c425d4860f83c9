"""Send logs with the OpenTelemetry SDK's OTLP/gRPC exporter, read them back, check the mapping.

The records go to sessionlog's OTLP intake (LogsService/Export on the API's
port) under a fresh `session.id`; the check then reads that session through
the sessionlog API and compares it with the contract's OTLP mapping table:
the session's app name, job id and metadata, and each entry's level, logger,
message, format, fields, timestamp and trace/span ids, in order and each
once, ended by the `sessionlog.session.ended` event. Prints every mismatch
and exits 1 if there is any. Timestamps are compared to the microsecond,
the resolution of the `datetime` the package reads them as. With the
package installed (examples/python/README.md):

    python examples/python/otlp_sdk_check.py --server 127.0.0.1:50051 [--token-file FILE]
"""

import argparse
import datetime
import json
import os
import sys
import time
import uuid

import grpc
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import sessionlog
from sessionlog import Level, SessionState

from sessionlog_client import add_connection_args, connect, read_token

SCOPE = "otlp_check.worker"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
END_REASON = "otlp check done"

# (severity number, body, attributes, level sessionlog must store): the four
# usual severities, then one from inside each range the contract maps.
RECORDS = [
    (SeverityNumber.DEBUG, "cache warmed", {"entries": 128, "hit_ratio": 0.75}, Level.DEBUG),
    (
        SeverityNumber.INFO,
        "user 42 logged in",
        {"user_id": 42, "sessionlog.format": "user {user_id} logged in"},
        Level.INFO,
    ),
    (SeverityNumber.WARN, "disk 91% full", {"disk": "/data", "used_percent": 91}, Level.WARN),
    (
        SeverityNumber.ERROR,
        "upload failed",
        {"retryable": True, "tags": ["s3", "eu"]},
        Level.ERROR,
    ),
    (SeverityNumber.TRACE2, "tick", {}, Level.TRACE),
    (SeverityNumber.DEBUG4, "cache lookup", {}, Level.DEBUG),
    (SeverityNumber.INFO3, "checkpoint", {}, Level.INFO),
    (SeverityNumber.WARN2, "retrying", {"attempt": 2}, Level.WARN),
    (SeverityNumber.ERROR4, "giving up", {}, Level.ERROR),
    (SeverityNumber.FATAL, "out of memory", {}, Level.CRITICAL),
    (SeverityNumber.UNSPECIFIED, "no severity", {}, Level.UNSPECIFIED),
    (SeverityNumber.INFO, {"event": "indexed", "documents": 3}, {}, Level.INFO),
]


class Check:
    """Collects mismatches, so one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def equal(self, what: str, actual, expected) -> None:
        if actual != expected:
            self.failures.append(f"{what}: got {actual!r}, want {expected!r}")


def probe_otlp(endpoint: str, headers) -> None:
    """Fails clearly when the port does not serve OTLP logs at all."""
    with grpc.insecure_channel(endpoint.removeprefix("http://")) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        try:
            stub.Export(logs_service_pb2.ExportLogsServiceRequest(), metadata=headers, timeout=10)
        except grpc.RpcError as error:
            status = f"{error.code().name}: {error.details()}"
            sys.exit(f"otlp check: an empty LogsService/Export failed: {status}")


def send(endpoint: str, headers, session_id: str) -> list[tuple[int, bytes, bytes]]:
    """Emits RECORDS, one record outside the span and the end event through the SDK.

    Returns each record's (timestamp, trace id, span id). The logs API is used
    directly rather than the SDK's LoggingHandler (deprecated in this release)
    so every OTLP field the mapping reads is set explicitly.
    """
    resource = Resource.create(
        {
            "service.name": "otlp-check",
            "session.id": session_id,
            "sessionlog.job_id": "otlp-job",
            "sessionlog.meta.origin": "python-sdk",
        }
    )
    exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, headers=headers, timeout=10)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = logger_provider.get_logger(SCOPE)
    tracer_provider = TracerProvider(resource=resource)  # no exporter: only for the ids

    sent = []
    with tracer_provider.get_tracer(SCOPE).start_as_current_span("otlp-check") as span:
        context = span.get_span_context()
        trace_id, span_id = context.trace_id.to_bytes(16, "big"), context.span_id.to_bytes(8, "big")
        for severity, body, attributes, _ in RECORDS:
            timestamp = time.time_ns()
            logger.emit(
                timestamp=timestamp, severity_number=severity, body=body, attributes=attributes
            )
            sent.append((timestamp, trace_id, span_id))
    # Outside any span: no trace context.
    timestamp = time.time_ns()
    logger.emit(timestamp=timestamp, severity_number=SeverityNumber.INFO, body="after the span")
    sent.append((timestamp, b"", b""))
    logger.emit(
        event_name="sessionlog.session.ended", severity_number=SeverityNumber.INFO, body=END_REASON
    )

    if not logger_provider.force_flush(timeout_millis=15_000):
        sys.exit("otlp check: the SDK could not flush its records within 15 s")
    logger_provider.shutdown()
    tracer_provider.shutdown()
    return sent


def check_session(check: Check, client: sessionlog.Client, session_id: str, sent) -> None:
    try:
        session = client.get_session(session_id)
    except sessionlog.Error as error:
        sys.exit(f"otlp check: session {session_id} was not created: {error}")
    check.equal("app_name", session.app_name, "otlp-check")
    check.equal("job_id", session.job_id, "otlp-job")
    check.equal("metadata", session.metadata, {"origin": "python-sdk"})
    check.equal("state", session.state, SessionState.ENDED)
    check.equal("end_reason", session.end_reason, END_REASON)

    entries = client.read(session_id, limit=1000).entries
    records = RECORDS + [(SeverityNumber.INFO, "after the span", {}, Level.INFO)]
    check.equal("entry count", len(entries), len(records) + 1)  # + the end entry
    # zip stops at the shorter side; a count mismatch is reported above.
    for seq, (entry, record, (timestamp, trace_id, span_id)) in enumerate(
        zip(entries, records, sent, strict=False), start=1
    ):
        _, body, attributes, level = record
        fields = {k: v for k, v in attributes.items() if k != "sessionlog.format"}
        what = f"entry {seq}"
        check.equal(f"{what} seq", entry.seq, seq)
        check.equal(f"{what} level", entry.level, level)
        check.equal(f"{what} logger", entry.logger, SCOPE)
        if isinstance(body, str):
            check.equal(f"{what} message", entry.message, body)
        else:  # other body types are rendered as JSON text
            try:
                check.equal(f"{what} message as JSON", json.loads(entry.message), body)
            except json.JSONDecodeError:
                check.failures.append(f"{what} message: not JSON: {entry.message!r}")
        check.equal(f"{what} format", entry.format, attributes.get("sessionlog.format", ""))
        check.equal(f"{what} fields", entry.fields, fields)
        sent_at = EPOCH + datetime.timedelta(microseconds=timestamp // 1000)
        check.equal(f"{what} timestamp", entry.timestamp, sent_at)
        check.equal(f"{what} trace_id", entry.trace_id.hex(), trace_id.hex())
        check.equal(f"{what} span_id", entry.span_id.hex(), span_id.hex())
    if len(entries) == len(records) + 1:
        end = entries[-1]
        check.equal(
            "end entry", (end.logger, end.message), ("sessions", f"Session ended: {END_REASON}")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_args(parser)
    args = parser.parse_args()

    session_id = f"otlp-check-{uuid.uuid4()}"  # matches [A-Za-z0-9._:-]{1,128}
    endpoint = args.server or os.environ.get("SESSIONLOG_SERVER") or "127.0.0.1:50051"
    token_file = args.token_file or os.environ.get("SESSIONLOG_TOKEN_FILE")
    headers = [("authorization", f"Bearer {read_token(token_file)}")] if token_file else None
    probe_otlp(endpoint, headers)
    sent = send(endpoint, headers, session_id)

    check = Check()
    with connect(args) as client:
        check_session(check, client, session_id, sent)
    for failure in check.failures:
        print(f"otlp check: {failure}", file=sys.stderr)
    if check.failures:
        sys.exit(f"otlp check: {len(check.failures)} mismatches in session {session_id}")
    print(f"otlp check: session {session_id}: {len(sent)} records and the end event round-tripped")


if __name__ == "__main__":
    main()
