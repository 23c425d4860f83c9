"""A client for sessionlog: sessions of structured log entries over gRPC.

- `Client`: every call of the API with Python types, `follow` (sync and
  asyncio) that resumes from its cursor, `watch`, and `writer`.
- `LogWriter`: a bounded, batching, retrying writer for one session that
  never makes its caller wait for the server.
- `Handler`: a `logging.Handler` that ships records into a session.

The protobuf messages generated from the server's proto are in
`sessionlog.v1.sessionlog_pb2`.
"""

try:
    from sessionlog.v1 import sessionlog_pb2 as _generated  # noqa: F401
except ModuleNotFoundError as missing:
    if not (missing.name or "").startswith("sessionlog.v1"):
        raise
    raise ImportError(
        "sessionlog: its protobuf code (sessionlog.v1) is missing. It is generated "
        "from the repository's proto/ when the package is built: install it with "
        "`pip install ./clients/python` (or `pip install -e ./clients/python`, which "
        "generates it into clients/python/src) from a checkout of the repository, "
        "rather than importing clients/python/src as it is."
    ) from missing

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
