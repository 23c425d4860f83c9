"""The Python side of the API's messages: enums, `Session`, `Entry`, and the
conversions to and from the generated protobuf classes. Nothing here talks
to a server.

Structured values (entry fields, session metadata) are JSON-like: `None`,
`bool`, `int`, `float`, `str`, lists and string-keyed dicts. Protobuf keeps
every number as a double, so an integral number reads back as an `int` and
integers beyond 2**53 lose precision.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union, cast

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from sessionlog.v1 import sessionlog_pb2 as pb

JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]
"""A value of an entry's fields or a session's metadata."""

Fields = dict[str, JsonValue]


class Level(str, enum.Enum):
    """An entry's level; the names are the command line's (`"warn"`, ...)."""

    UNSPECIFIED = "unspecified"
    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


class SessionState(str, enum.Enum):
    UNSPECIFIED = "unspecified"
    ACTIVE = "active"
    ENDED = "ended"

    def __str__(self) -> str:
        return self.value


LevelLike = Union[Level, str]
"""A `Level` or its name, in any case (`"warn"`, `"WARN"`; `"warning"` too)."""

_LEVEL_TO_PB = {
    Level.UNSPECIFIED: pb.LEVEL_UNSPECIFIED,
    Level.TRACE: pb.LEVEL_TRACE,
    Level.DEBUG: pb.LEVEL_DEBUG,
    Level.INFO: pb.LEVEL_INFO,
    Level.WARN: pb.LEVEL_WARN,
    Level.ERROR: pb.LEVEL_ERROR,
    Level.CRITICAL: pb.LEVEL_CRITICAL,
}
_LEVEL_FROM_PB: dict[int, Level] = {int(number): level for level, number in _LEVEL_TO_PB.items()}
_STATE_TO_PB = {
    SessionState.UNSPECIFIED: pb.SESSION_STATE_UNSPECIFIED,
    SessionState.ACTIVE: pb.SESSION_STATE_ACTIVE,
    SessionState.ENDED: pb.SESSION_STATE_ENDED,
}
_STATE_FROM_PB: dict[int, SessionState] = {
    int(number): state for state, number in _STATE_TO_PB.items()
}


def level(value: LevelLike) -> Level:
    """`value` as a `Level`; ValueError names the accepted ones."""
    if isinstance(value, Level):
        return value
    name = value.lower()
    if name == "warning":
        return Level.WARN
    try:
        return Level(name)
    except ValueError:
        names = ", ".join(level.value for level in Level)
        raise ValueError(f"unknown level {value!r}; one of {names}") from None


def level_to_pb(value: LevelLike) -> pb.Level:
    return _LEVEL_TO_PB[level(value)]


def level_from_pb(number: int) -> Level:
    return _LEVEL_FROM_PB.get(number, Level.UNSPECIFIED)


def state_to_pb(value: SessionState | str | None) -> pb.SessionState:
    """None and `"all"` are every state (the API's unspecified)."""
    if value is None or value == "all":
        return pb.SESSION_STATE_UNSPECIFIED
    try:
        return _STATE_TO_PB[SessionState(str(value).lower())]
    except ValueError:
        raise ValueError(f"unknown state {value!r}; one of active, ended, all") from None


def state_from_pb(number: int) -> SessionState:
    return _STATE_FROM_PB.get(number, SessionState.UNSPECIFIED)


# Values ---------------------------------------------------------------------

Converter = Callable[[object], JsonValue]
"""Turns a value of another type into a JSON-like one, or raises TypeError."""


def refuse(value: object) -> JsonValue:
    raise TypeError(
        f"{type(value).__name__} is not a field value "
        "(None, bool, int, float, str, list or dict of them, datetime)"
    )


def as_text(value: object) -> JsonValue:
    """The lenient converter: anything else as its `str`."""
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}>"


MAX_DEPTH = 15
"""The deepest a value is ever built, counting a field's own value as 0
(the server counts it as level 1, and its default `--max-struct-depth` is
16). Deeper nesting, or a value that contains itself, would also pass
protobuf's own nesting limit once the entry sits in a request."""

MAX_VALUES = 1_000
"""The server's default `--max-struct-values`: values in one entry's
fields, nested ones included."""

_TOO_DEEP = "<nested too deep>"


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ (or one that recurses) must not lose the record
        return f"<unprintable {type(value).__name__}>"


class _Converter:
    """One conversion of fields: `other` for values of other types, and in
    `lenient` mode the limits applied by shrinking rather than failing:
    containers too deep become their text `repr`, a container holding
    itself becomes text, and past `max_values` the rest is one marker."""

    def __init__(
        self,
        other: Converter,
        lenient: bool = False,
        max_levels: int = MAX_DEPTH + 1,
        max_values: int = MAX_VALUES,
    ) -> None:
        self.other = other
        self.lenient = lenient
        # The deepest index a value may have: a field's value is 0.
        self.max_depth = max(min(max_levels - 1, MAX_DEPTH), 0)
        self.left = max_values if lenient else -1  # -1: not counted
        self.path: set[int] = set()  # ids of the containers being converted

    def struct(self, values: Mapping[str, object] | None, depth: int) -> struct_pb2.Struct:
        out = struct_pb2.Struct()
        items = list((values or {}).items())
        for index, (key, value) in enumerate(items):
            marker = self._full(len(items) - index)
            if marker is not None:
                if marker:
                    out.fields["..."].string_value = marker
                break
            out.fields[str(key)].CopyFrom(self.value(value, depth))
        return out

    def _full(self, remaining: int) -> str | None:
        """None while there is room for the `remaining` items of a
        container; else what stands for them: a marker that takes the last
        value left, or nothing when none is."""
        if self.left < 0 or self.left > 1 or (self.left == 1 and remaining <= 1):
            return None
        if self.left == 0:
            return ""
        self.left = 0
        return f"<{remaining} more values>"

    def value(self, value: object, depth: int) -> struct_pb2.Value:
        out = struct_pb2.Value()
        counted = self.left > 0
        if counted:
            self.left -= 1
        if value is None:
            out.null_value = struct_pb2.NULL_VALUE
        elif isinstance(value, bool):
            out.bool_value = value
        elif isinstance(value, (int, float)):
            out.number_value = float(value)
        elif isinstance(value, str):
            out.string_value = value
        elif isinstance(value, (Mapping, list, tuple)):
            if id(value) in self.path and not self.lenient:
                raise ValueError(f"a field value contains itself: {type(value).__name__}")
            if id(value) in self.path or (value and depth >= self.max_depth):
                if self.lenient:
                    out.string_value = _repr(value)
                elif isinstance(value, Mapping):
                    # One level past the limit, so that the server (and
                    # the writer's check) refuse it, naming the limit.
                    out.struct_value.fields["..."].string_value = _TOO_DEEP
                else:
                    out.list_value.values.add().string_value = _TOO_DEEP
                return out
            self.path.add(id(value))
            try:
                if isinstance(value, Mapping):
                    out.struct_value.CopyFrom(self.struct(value, depth + 1))
                else:
                    items = out.list_value.values
                    for index, item in enumerate(value):
                        marker = self._full(len(value) - index)
                        if marker is not None:
                            if marker:
                                items.add().string_value = marker
                            break
                        items.append(self.value(item, depth + 1))
            finally:
                self.path.discard(id(value))
        elif isinstance(value, (datetime.datetime, datetime.date)):
            out.string_value = value.isoformat()
        else:
            if counted:
                self.left += 1  # counted again below
            return self.value(self.other(value), depth)
        return out


def to_value(value: object, other: Converter = refuse) -> struct_pb2.Value:
    """A protobuf `Value`: dicts, lists and tuples nest; datetimes become
    ISO 8601 text; other types go through `other`. Nesting stops one
    level past `MAX_DEPTH`, with a `"<nested too deep>"` there that the
    server refuses; ValueError for a value that contains itself."""
    return _Converter(other).value(value, 0)


def to_struct(
    values: Mapping[str, object] | None,
    other: Converter = refuse,
    *,
    lenient: bool = False,
    max_levels: int = MAX_DEPTH + 1,
    max_values: int = MAX_VALUES,
) -> struct_pb2.Struct:
    """A protobuf `Struct` of `values`, as `to_value` converts them. With
    `lenient`, keeps within the server's limits instead: a container whose
    values would sit deeper than `max_levels` (the server's
    `--max-struct-depth`, at most `MAX_DEPTH` + 1), or that holds itself,
    becomes its `repr`, and past
    `max_values` values the rest is left out, with a marker saying how
    many."""
    return _Converter(other, lenient, max_levels, max_values).struct(values, 0)


def from_value(value: struct_pb2.Value) -> JsonValue:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**63 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> Fields:
    return {key: from_value(value) for key, value in struct.fields.items()}


# Time -----------------------------------------------------------------------


def to_timestamp(when: datetime.datetime) -> timestamp_pb2.Timestamp:
    """A naive datetime is taken as local time, as `datetime.timestamp` does."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when.astimezone(datetime.timezone.utc))
    return out


def from_timestamp(timestamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    return timestamp.ToDatetime(tzinfo=datetime.timezone.utc)


def to_duration(value: datetime.timedelta | float) -> duration_pb2.Duration:
    """A timedelta, or seconds."""
    if not isinstance(value, datetime.timedelta):
        value = datetime.timedelta(seconds=value)
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


# Messages -------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A session as the server reports it; times are UTC datetimes."""

    id: str
    app_name: str = ""
    mode: str = ""
    platform: str = ""
    client_pid: int = 0
    parent_session_id: str = ""
    job_id: str = ""
    metadata: Fields = field(default_factory=dict)
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None
    state: SessionState = SessionState.UNSPECIFIED
    end_reason: str = ""
    last_seq: int = 0
    entry_count: int = 0
    size_bytes: int = 0
    lease_ttl: datetime.timedelta | None = None

    @property
    def active(self) -> bool:
        return self.state is SessionState.ACTIVE

    @classmethod
    def from_pb(cls, message: pb.Session) -> Session:
        def time(name: str) -> datetime.datetime | None:
            if not message.HasField(name):
                return None
            stamp: timestamp_pb2.Timestamp = getattr(message, name)
            return from_timestamp(stamp)

        return cls(
            id=message.id,
            app_name=message.app_name,
            mode=message.mode,
            platform=message.platform,
            client_pid=message.client_pid,
            parent_session_id=message.parent_session_id,
            job_id=message.job_id,
            metadata=from_struct(message.metadata),
            created_at=time("created_at"),
            updated_at=time("updated_at"),
            ended_at=time("ended_at"),
            state=state_from_pb(message.state),
            end_reason=message.end_reason,
            last_seq=message.last_seq,
            entry_count=message.entry_count,
            size_bytes=message.size_bytes,
            lease_ttl=message.lease_ttl.ToTimedelta() if message.HasField("lease_ttl") else None,
        )


@dataclass(frozen=True)
class Entry:
    """A log entry. To append, `message` is enough: `seq` is assigned by
    the server and a missing `timestamp` is the server's receive time."""

    message: str = ""
    level: LevelLike = Level.INFO
    logger: str = ""
    fields: Mapping[str, object] = field(default_factory=dict)
    format: str = ""
    timestamp: datetime.datetime | None = None
    trace_id: bytes = b""
    span_id: bytes = b""
    seq: int = 0

    def to_pb(self, other: Converter = refuse) -> pb.LogEntry:
        out = pb.LogEntry(
            level=level_to_pb(self.level),
            logger=self.logger,
            message=self.message,
            format=self.format,
            trace_id=self.trace_id,
            span_id=self.span_id,
        )
        if self.fields:
            out.fields.CopyFrom(to_struct(self.fields, other))
        if self.timestamp is not None:
            out.timestamp.CopyFrom(to_timestamp(self.timestamp))
        return out

    @classmethod
    def from_pb(cls, message: pb.LogEntry) -> Entry:
        return cls(
            seq=message.seq,
            timestamp=from_timestamp(message.timestamp) if message.HasField("timestamp") else None,
            level=level_from_pb(message.level),
            logger=message.logger,
            message=message.message,
            format=message.format,
            fields=from_struct(message.fields),
            trace_id=message.trace_id,
            span_id=message.span_id,
        )


EntryLike = Union[Entry, str]
"""An `Entry`, or a message to store at info level."""


def entry_to_pb(entry: EntryLike) -> pb.LogEntry:
    if isinstance(entry, str):
        return pb.LogEntry(level=pb.LEVEL_INFO, message=entry)
    if isinstance(entry, Entry):
        return entry.to_pb()
    raise TypeError(f"an entry is an Entry or a str, not {type(entry).__name__}")


def log_filter(
    min_level: LevelLike | None = None,
    logger_prefixes: Sequence[str] | str = (),
    contains: str = "",
    **more: str | bool,
) -> pb.LogFilter | None:
    """The API's LogFilter, or None when nothing filters. `more` passes
    further LogFilter fields of the proto (`regex`, `ignore_case`) as they
    are."""
    if isinstance(logger_prefixes, str):
        logger_prefixes = [logger_prefixes]
    if min_level is None and not logger_prefixes and not contains and not more:
        return None
    return pb.LogFilter(
        min_level=level_to_pb(min_level) if min_level is not None else pb.LEVEL_UNSPECIFIED,
        logger_prefixes=list(logger_prefixes),
        contains=contains,
        # Checked by protobuf when built (an unknown name or a wrong type
        # raises); typed loosely so fields the proto gains pass through.
        **cast("dict[str, Any]", more),
    )
