"""sessionlog.Handler: records from `logging` become entries of a session."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

import sessionlog
from sessionlog import Level
from sessionlog._handler import level_of

from conftest import ServerProcess


class Opaque:
    def __str__(self) -> str:
        return "an opaque object"


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    level, handlers = logger.level, list(logger.handlers)
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_records_become_entries_with_template_args_extra_and_exception(
    server: ServerProcess, client: sessionlog.Client, root_logger: logging.Logger
) -> None:
    handler = sessionlog.Handler(client, app_name="handler-test", job_id="h-1")
    root_logger.addHandler(handler)
    logging.getLogger().info("x %s", 1, extra={"user": "ann", "attempt": 2, "obj": Opaque()})
    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("app.db").exception("query %(name)s failed", {"name": "q1"})
    logging.getLogger("app").warning("plain")
    logging.getLogger("grpc._channel").error("not shipped")
    handler.close()
    root_logger.removeHandler(handler)
    report = handler.report
    assert (report.stored, report.dropped, report.lost, report.error) == (3, 0, 0, None)

    session = client.get_session(handler.session_id)
    assert session.app_name == "handler-test" and session.job_id == "h-1"
    assert session.client_pid > 0
    info, error, warning = client.read(handler.session_id).entries
    assert (info.level, info.logger, info.message, info.format) == (Level.INFO, "root", "x 1", "x %s")
    assert info.fields == {"args": [1], "user": "ann", "attempt": 2, "obj": "an opaque object"}
    assert info.timestamp is not None

    assert (error.level, error.logger, error.format) == (Level.ERROR, "app.db", "query %(name)s failed")
    assert error.message.startswith("query q1 failed\nTraceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in error.message
    assert error.fields == {"name": "q1"}

    assert (warning.level, warning.message, warning.format, warning.fields) == (Level.WARN, "plain", "", {})
    assert (info.trace_id, info.span_id) == (b"", b"")  # no current span


def test_trace_and_span_ids_come_from_the_current_opentelemetry_span(
    client: sessionlog.Client, root_logger: logging.Logger
) -> None:
    session = client.start_session(app_name="traced")
    handler = sessionlog.Handler(client, session_id=session.id)
    root_logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("traced").info("inside")
        context = span.get_span_context()
    handler.flush()
    handler.close()
    root_logger.removeHandler(handler)
    (entry,) = client.read(session.id).entries
    assert entry.trace_id == context.trace_id.to_bytes(16, "big")
    assert entry.span_id == context.span_id.to_bytes(8, "big")


def test_levels_map_to_the_apis() -> None:
    assert [level_of(n) for n in (1, 5, 10, 15, 20, 25, 30, 40, 45, 50, 60)] == [
        Level.TRACE, Level.TRACE, Level.DEBUG, Level.DEBUG, Level.INFO, Level.INFO,
        Level.WARN, Level.ERROR, Level.ERROR, Level.CRITICAL, Level.CRITICAL,
    ]  # fmt: skip
