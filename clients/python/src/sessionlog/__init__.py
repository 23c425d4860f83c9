"""A client for sessionlog: sessions of structured log entries over gRPC.

- `Client`: every call of the API with Python types, `follow` (sync and
  asyncio) that resumes from its cursor, `watch`, and `writer`.
- `LogWriter`: a bounded, batching, retrying writer for one session that
  never makes its caller wait for the server.
- `Handler`: a `logging.Handler` that ships records into a session.

The protobuf messages generated from the server's proto are in
`sessionlog.v1.sessionlog_pb2`.
"""

from sessionlog._client import AppendResult, Client, ReadResult
from sessionlog._connection import DEFAULT_SERVER
from sessionlog._errors import Error
from sessionlog._handler import Handler
from sessionlog._streams import (
    Batch,
    CaughtUp,
    Ended,
    EventKind,
    FollowEvent,
    Reconnecting,
    SessionEvent,
    Truncated,
)
from sessionlog._types import Entry, JsonValue, Level, Session, SessionState
from sessionlog._writer import LogWriter, WriterOptions, WriterReport

__all__ = [
    "DEFAULT_SERVER",
    "AppendResult",
    "Batch",
    "CaughtUp",
    "Client",
    "Ended",
    "Entry",
    "Error",
    "EventKind",
    "FollowEvent",
    "Handler",
    "JsonValue",
    "Level",
    "LogWriter",
    "ReadResult",
    "Reconnecting",
    "Session",
    "SessionEvent",
    "SessionState",
    "Truncated",
    "WriterOptions",
    "WriterReport",
]
