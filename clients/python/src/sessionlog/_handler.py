"""`Handler`: a `logging.Handler` that ships records into a session through
a `LogWriter`, so logging never waits for the server (a full buffer drops
and counts, see `LogWriter.write`).

A record becomes an entry: its level mapped (below DEBUG is trace, 50 and
up critical), `record.name` as logger, the handler's formatted text as the
message (by default the message with its args applied, then the exception
and stack text), `record.msg` as the format template when the record has
args, the args (a list under `args`, or a mapping's keys) and `extra=`
values as fields, and the trace and span ids of OpenTelemetry's current
span when `opentelemetry-api` is installed. Records of grpcio's own
loggers are not shipped: shipping them could log the shipping. A record is
never dropped for what it holds: `entry_pb` shrinks it into the writer's
limits. At exit, `logging.shutdown`'s flush and close share one
`close_timeout`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

from sessionlog._client import Client
from sessionlog._types import Entry, Level, as_text, to_struct
from sessionlog._writer import ENTRY_FRAMING_BYTES, LogWriter, WriterOptions, WriterReport
from sessionlog.v1 import sessionlog_pb2 as pb

# What every LogRecord has; other attributes came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None, None))
) | {"message", "asctime", "taskName"}

_QUIET_LOGGERS = ("grpc",)


_CUT_MARKER = "…[cut]"


def _cut(text: str, max_bytes: int, marker: str = _CUT_MARKER) -> str:
    """`text` within `max_bytes` UTF-8 bytes: as it is when it fits, else
    its start (whole characters) and `marker`."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    room = max_bytes - len(marker.encode())
    if room <= 0:
        return encoded[:max_bytes].decode(errors="ignore")
    return encoded[:room].decode(errors="ignore") + marker


def level_of(levelno: int) -> Level:
    if levelno >= logging.CRITICAL:
        return Level.CRITICAL
    if levelno >= logging.ERROR:
        return Level.ERROR
    if levelno >= logging.WARNING:
        return Level.WARN
    if levelno >= logging.INFO:
        return Level.INFO
    if levelno >= logging.DEBUG:
        return Level.DEBUG
    return Level.TRACE


def program_name() -> str:
    """This program's file name; `python` under `python -c` or a REPL."""
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    return name if name and name not in ("-c", "-m", "-") else "python"


def _otel_ids() -> Callable[[], tuple[bytes, bytes]]:
    """How to read the current span's ids: OpenTelemetry's API when it is
    installed, else nothing."""
    try:
        from opentelemetry import trace
    except ImportError:
        return lambda: (b"", b"")

    def current() -> tuple[bytes, bytes]:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return b"", b""
        return context.trace_id.to_bytes(16, "big"), context.span_id.to_bytes(8, "big")

    return current


class Handler(logging.Handler):
    """Ships log records into a session.

    With `session_id` it writes to that existing session; otherwise it
    starts one (in the background, retried while the server is down) with
    `app_name` (default: the program's name), this process's pid (so the
    server ends it once the process is gone, where it can see the pid),
    and `start` (job_id, metadata, lease_ttl, ...). Without `client`, it
    makes one from the environment (SESSIONLOG_SERVER, ...) and closes it
    on `close`. `close` (which `logging.shutdown` calls at exit) sends what
    is buffered within `close_timeout` seconds; it does not end the session.
    """

    def __init__(
        self,
        client: Client | None = None,
        session_id: str | None = None,
        app_name: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        options: WriterOptions | None = None,
        close_timeout: float = 5.0,
        **start: object,
    ) -> None:
        super().__init__(level)
        self._own_client = client is None
        self.client = client if client is not None else Client()
        self.close_timeout = close_timeout
        if session_id is not None:
            if start or app_name is not None:
                raise ValueError("session details are for a new session, not an existing one")
            self.writer: LogWriter = self.client.writer(session_id, options=options)
        else:
            start.setdefault("client_pid", os.getpid())
            name = app_name if app_name is not None else program_name()
            self.writer = self.client.writer(
                options=options,
                app_name=name,
                **start,  # type: ignore[arg-type]
            )
        self.session_id = self.writer.session_id
        self._ids = _otel_ids()
        self._report: WriterReport | None = None
        self._emitted = 0
        self._timed_out: tuple[float, tuple[int, int, int, int]] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".", 1)[0] in _QUIET_LOGGERS:
            return
        self._emitted += 1
        try:
            self.writer._write_pb(self.entry_pb(record))
        except Exception:
            self.handleError(record)

    def entry(self, record: logging.LogRecord) -> Entry:
        """The entry `record` becomes."""
        fields: dict[str, object] = {}
        template = ""
        if record.args:
            template = str(record.msg)
            if isinstance(record.args, Mapping):
                fields.update((str(key), value) for key, value in record.args.items())
            else:
                fields["args"] = list(record.args)
        fields.update(
            (key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES
        )
        trace_id, span_id = self._ids()
        return Entry(
            message=self.format(record),
            level=level_of(record.levelno),
            logger=record.name,
            fields=fields,
            format=template,
            timestamp=datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc),
            trace_id=trace_id,
            span_id=span_id,
        )

    def entry_pb(self, record: logging.LogRecord) -> pb.LogEntry:
        """The entry `record` becomes, shrunk into the writer's limits (a
        record is never dropped for what it holds): the logger name and
        format cut to their lengths, fields converted leniently (any value
        kept, as text when it is not JSON-like; containers too deep, or
        holding themselves, as their `repr`; past the value limit, a marker
        saying how many were left out), then the message cut, and if need
        be the fields left out, until the entry fits `max_entry_bytes`."""
        options = self.writer.options
        entry = self.entry(record)
        message = dataclasses.replace(
            entry,
            fields={},
            logger=_cut(entry.logger, options.max_name_bytes, ""),
            format=_cut(entry.format, options.max_text_bytes),
        ).to_pb()
        if entry.fields:
            message.fields.CopyFrom(
                to_struct(
                    entry.fields,
                    as_text,
                    lenient=True,
                    max_levels=options.max_struct_depth,
                    max_values=options.max_struct_values,
                )
            )
        room = options.max_entry_bytes - ENTRY_FRAMING_BYTES
        excess = message.ByteSize() - room
        if excess > 0 and message.fields.ByteSize() > room // 2:
            size = message.fields.ByteSize()
            message.ClearField("fields")
            message.fields.fields["sessionlog.fields_left_out"].string_value = (
                f"{size} bytes of fields, over the entry limit"
            )
            excess = message.ByteSize() - room
        if excess > 0:
            # Its length's varint shrinks too, so a cut of `excess` fits.
            text = message.message
            message.message = _cut(text, max(len(text.encode()) - excess - 16, 0))
        return message

    # logging.shutdown (Python 3.12 on) skips `flush` for a handler that
    # says so: `close` sends what is buffered anyway, within the one timeout.
    flushOnClose = False

    def flush(self) -> None:
        """Waits (up to `close_timeout`) until what was logged is stored.
        When it times out, a `close` right after (as `logging.shutdown`
        does) only gets what is left of that timeout: the two share it."""
        if not hasattr(self, "writer"):  # __init__ failed, logging still knows it
            return
        started = time.monotonic()
        progress = self._progress()
        if not self.writer.flush(self.close_timeout):
            self._timed_out = (started + self.close_timeout, progress)

    def _progress(self) -> tuple[int, int, int, int]:
        report = self.writer.report()
        return report.stored, report.dropped, report.lost, self._emitted

    def close(self) -> None:
        if hasattr(self, "writer") and self._report is None:
            timeout = self.close_timeout
            if self._timed_out is not None:
                deadline, progress = self._timed_out
                # Nothing stored or logged since the flush that timed out:
                # the server is still away, and the flush spent the time.
                if progress == self._progress():
                    timeout = max(deadline - time.monotonic(), 0.0)
            self._report = self.writer.close(timeout)
            if self._own_client:
                self.client.close(0.0)
        super().close()

    @property
    def report(self) -> WriterReport:
        """What the writer did (in all, once closed)."""
        return self._report if self._report is not None else self.writer.report()

