"""`Client`: the sessionlog API with Python types, on one grpcio channel.

Every method raises `sessionlog.Error` (a gRPC status code and message) when
the call fails; unary calls have a deadline (`timeout`, 10 s by default).
"""

from __future__ import annotations

import datetime
import gc
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from sessionlog import _ids, _rpc, _streams
from sessionlog._connection import Connection, PathLike
from sessionlog._errors import Error
from sessionlog._types import (
    Entry,
    EntryLike,
    LevelLike,
    Session,
    SessionState,
    entry_to_pb,
    from_timestamp,
    log_filter,
    state_from_pb,
    state_to_pb,
    to_duration,
    to_struct,
)
from sessionlog._writer import LogWriter, WriterOptions
from sessionlog.v1 import sessionlog_pb2 as pb

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True)
class AppendResult:
    first_seq: int
    last_seq: int
    duplicate: bool
    """True when the batch id was stored before: nothing was stored again."""


@dataclass(frozen=True)
class ReadResult:
    entries: list[Entry]
    next_cursor: int
    """The `after_seq` of the next page (past entries a filter skipped)."""
    last_seq: int
    state: SessionState


class Client:
    """A connection to a sessionlog server.

    `server` is `http://host:port`, `https://host:port`, `unix:/path` or
    `host:port`; by default `$SESSIONLOG_SERVER`, else
    `http://127.0.0.1:50051`. `token` (or the first line of `token_file`,
    by default `$SESSIONLOG_TOKEN_FILE`) is sent as `authorization: Bearer`.
    For `https://`: `ca_file` (default `$SESSIONLOG_CA_FILE`, else the
    system's roots) and a client certificate (`cert_file`, `key_file`).
    Connecting is lazy: a server that is down fails the first call with
    `UNAVAILABLE`, not the constructor.
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        token_file: PathLike | None = None,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        timeout: float | None = 10.0,
    ) -> None:
        self._connection = Connection(server, token, token_file, ca_file, cert_file, key_file)
        self.server = self._connection.target.server
        self.timeout = timeout
        self._channel: grpc.Channel | None = self._connection.channel()
        self._stub_: _rpc.Stub | None = _rpc.Stub(self._channel)
        self._writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()
        self._lock = threading.Lock()
        _CLIENTS.add(self)

    def _after_fork_in_child(self) -> None:
        """In a child made by os.fork: grpcio's channels do not survive a
        fork, so an open client gets a new channel (the parent's is left
        alone: it is the parent's), and its writers start afresh on it."""
        self._lock = threading.Lock()
        if self._channel is None:
            return
        self._channel = self._connection.channel()
        self._stub_ = _rpc.Stub(self._channel)
        for writer in list(self._writers):
            writer._after_fork_in_child()

    # Lifecycle ----------------------------------------------------------------

    def close(self, writer_timeout: float = 5.0) -> None:
        """Closes the writers made by this client, all at once within
        `writer_timeout` seconds in all, then the channel; open streams end."""
        writers = list(self._writers)
        for writer in writers:
            writer._begin_close()
        deadline = time.monotonic() + writer_timeout
        for writer in writers:
            writer._finish_close(deadline)
        with self._lock:
            channel, self._channel, self._stub_ = self._channel, None, None
        if channel is not None:
            channel.close()
            # grpcio's finished calls can sit in reference cycles; left to
            # the collection at interpreter exit, a call's finalizer waits on
            # a lock that grpcio's daemon thread, frozen by then, may hold,
            # and the program hangs (1 exit in about 20 after a follow that
            # reconnected). Collected here, while that thread still runs.
            gc.collect()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _stub(self) -> _rpc.Stub:
        stub = self._stub_
        if stub is None:
            raise Error(grpc.StatusCode.CANCELLED, "the client is closed")
        return stub

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[Request, Response], request: Request
    ) -> Response:
        try:
            return method(request, timeout=self.timeout, metadata=self._connection.metadata)
        except grpc.RpcError as error:
            raise Error.from_rpc(error) from None

    # Sessions -----------------------------------------------------------------

    def start_session(
        self,
        session_id: str = "",
        *,
        app_name: str = "",
        mode: str = "",
        platform: str = "",
        client_pid: int = 0,
        parent_session_id: str = "",
        job_id: str = "",
        metadata: Mapping[str, object] | None = None,
        lease_ttl: datetime.timedelta | float | None = None,
    ) -> Session:
        """Starts an active session; an empty `session_id` gets a new one.
        `lease_ttl` (a timedelta or seconds) ends it unless heartbeats renew it."""
        request = _start_request(
            session_id, app_name, mode, platform, client_pid, parent_session_id, job_id,
            metadata, lease_ttl,
        )  # fmt: skip
        return Session.from_pb(self._call(self._stub().start_session, request))

    def update_session(self, session_id: str, metadata: Mapping[str, object]) -> Session:
        """Merges `metadata` into the session's (a key set to None is removed)."""
        request = pb.UpdateSessionRequest(session_id=session_id, metadata=to_struct(metadata))
        return Session.from_pb(self._call(self._stub().update_session, request))

    def end_session(self, session_id: str, reason: str = "") -> Session:
        request = pb.EndSessionRequest(session_id=session_id, reason=reason)
        return Session.from_pb(self._call(self._stub().end_session, request))

    def heartbeat(self, session_id: str) -> datetime.datetime | None:
        """Renews the lease; returns when it now expires (None: no lease)."""
        response = self._call(
            self._stub().heartbeat, pb.HeartbeatRequest(session_id=session_id)
        )
        if not response.HasField("lease_expires_at"):
            return None
        return from_timestamp(response.lease_expires_at)

    def get_session(self, session_id: str) -> Session:
        request = pb.GetSessionRequest(session_id=session_id)
        return Session.from_pb(self._call(self._stub().get_session, request))

    def list_sessions(
        self,
        state: SessionState | str | None = None,
        *,
        app_name: str = "",
        job_id: str = "",
        parent_session_id: str = "",
        page_size: int = 0,
    ) -> Iterator[Session]:
        """Every matching session (`state`: "active", "ended", or None for
        all), fetching page after page as the iterator is consumed."""
        request = pb.ListSessionsRequest(
            state=state_to_pb(state),
            app_name=app_name,
            job_id=job_id,
            parent_session_id=parent_session_id,
            page_size=page_size,
        )
        while True:
            page = self._call(self._stub().list_sessions, request)
            for session in page.sessions:
                yield Session.from_pb(session)
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def delete_session(self, session_id: str, *, force: bool = False) -> None:
        """Removes the session and its log (`force` for an active one)."""
        request = pb.DeleteSessionRequest(session_id=session_id, force=force)
        self._call(self._stub().delete_session, request)

    # Entries ------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        entries: Iterable[EntryLike],
        batch_id: str | None = None,
        expected_last_seq: int | None = None,
    ) -> AppendResult:
        """Appends `entries` (Entry objects, or messages at info level) as
        one atomic batch in one request. With `batch_id`, a retry of a batch
        already stored stores nothing (`duplicate`); with
        `expected_last_seq`, it fails with ABORTED unless the session's
        last seq is that. For many entries, `writer()` batches within the
        server's limits."""
        request = pb.AppendRequest(
            session_id=session_id,
            entries=[entry_to_pb(entry) for entry in entries],
            batch_id=batch_id or "",
        )
        if expected_last_seq is not None:
            request.expected_last_seq = expected_last_seq
        response = self._call(self._stub().append, request)
        return AppendResult(response.first_seq, response.last_seq, response.duplicate)

    def read(
        self,
        session_id: str,
        after_seq: int = 0,
        limit: int | None = None,
        tail: int | None = None,
        *,
        min_level: LevelLike | None = None,
        logger_prefixes: Sequence[str] | str = (),
        contains: str = "",
        **more_filter: str | bool,
    ) -> ReadResult:
        """One page of entries after `after_seq` (at most `limit`; the
        server's default is 1,000 and every page stays under its byte
        budget), or the last `tail` entries. Filters: `min_level`,
        `logger_prefixes`, `contains`, and further LogFilter fields of the
        proto by name."""
        request = pb.ReadRequest(
            session_id=session_id, after_seq=after_seq, limit=limit or 0, tail=tail or 0
        )
        filter_ = log_filter(min_level, logger_prefixes, contains, **more_filter)
        if filter_ is not None:
            request.filter.CopyFrom(filter_)
        return self._read(request)

    def _read(self, request: pb.ReadRequest) -> ReadResult:
        response = self._call(self._stub().read, request)
        return ReadResult(
            entries=[Entry.from_pb(entry) for entry in response.entries],
            next_cursor=response.next_cursor,
            last_seq=response.last_seq,
            state=state_from_pb(response.state),
        )

    def read_all(
        self,
        session_id: str,
        after_seq: int = 0,
        *,
        min_level: LevelLike | None = None,
        logger_prefixes: Sequence[str] | str = (),
        contains: str = "",
        **more_filter: str | bool,
    ) -> Iterator[Entry]:
        """Every entry after `after_seq` up to the session's last seq as of
        each page, reading page after page as the iterator is consumed."""
        request = pb.ReadRequest(session_id=session_id, after_seq=after_seq)
        filter_ = log_filter(min_level, logger_prefixes, contains, **more_filter)
        if filter_ is not None:
            request.filter.CopyFrom(filter_)
        while True:
            page = self._read(request)
            yield from page.entries
            if page.next_cursor <= request.after_seq or page.next_cursor >= page.last_seq:
                return
            request.after_seq = page.next_cursor

    def follow(
        self,
        session_id: str,
        after_seq: int = 0,
        tail: int = 0,
        *,
        min_level: LevelLike | None = None,
        logger_prefixes: Sequence[str] | str = (),
        contains: str = "",
        max_batch: int = 0,
        give_up_after: float | None = None,
        **more_filter: str | bool,
    ) -> Iterator[_streams.FollowEvent]:
        """The session's entries after `after_seq` (or its last `tail`),
        then live ones, as events: `Batch`, one `CaughtUp` per connection,
        `Truncated`, `Reconnecting`, and `Ended`, after which it stops.

        After a transient error (UNAVAILABLE, a server restart) it waits
        (0.1 s, doubling to 5 s), yields `Reconnecting` and resumes after
        the last cursor it got: no entry is skipped or repeated. Other
        errors, or transient ones lasting `give_up_after` seconds, raise
        `Error`. Closing the iterator ends the stream; closing the client
        makes the iterator raise `Error` with CANCELLED.
        """
        cursor = self._follow_cursor(
            session_id, after_seq, tail, min_level, logger_prefixes, contains, max_batch,
            give_up_after, more_filter,
        )  # fmt: skip
        return _streams.follow(self._stub, self._connection.metadata, cursor)

    def follow_async(
        self,
        session_id: str,
        after_seq: int = 0,
        tail: int = 0,
        *,
        min_level: LevelLike | None = None,
        logger_prefixes: Sequence[str] | str = (),
        contains: str = "",
        max_batch: int = 0,
        give_up_after: float | None = None,
        **more_filter: str | bool,
    ) -> AsyncIterator[_streams.FollowEvent]:
        """`follow` for asyncio (`async for event in client.follow_async(id)`),
        over a grpc.aio channel of its own, made in the running loop and
        closed when the iteration ends."""
        cursor = self._follow_cursor(
            session_id, after_seq, tail, min_level, logger_prefixes, contains, max_batch,
            give_up_after, more_filter,
        )  # fmt: skip
        self._stub()  # fails now when the client is closed
        return _streams.follow_async(
            self._connection.aio_channel, self._connection.metadata, cursor
        )

    def _follow_cursor(
        self,
        session_id: str,
        after_seq: int,
        tail: int,
        min_level: LevelLike | None,
        logger_prefixes: Sequence[str] | str,
        contains: str,
        max_batch: int,
        give_up_after: float | None,
        more_filter: Mapping[str, str | bool],
    ) -> _streams.Cursor:
        request = pb.FollowRequest(
            session_id=session_id, after_seq=after_seq, tail=tail, max_batch=max_batch
        )
        filter_ = log_filter(min_level, logger_prefixes, contains, **more_filter)
        if filter_ is not None:
            request.filter.CopyFrom(filter_)
        return _streams.Cursor(request, give_up_after)

    def watch(
        self,
        include_existing: bool = False,
        *,
        state: SessionState | str | None = None,
        app_name: str = "",
        job_id: str = "",
    ) -> Iterator[_streams.SessionEvent]:
        """Session events as they happen (after the existing sessions, and
        a `caught_up` event, with `include_existing`), until the iterator
        or the client is closed. It does not reconnect: events missed
        while disconnected cannot be replayed."""
        request = pb.WatchSessionsRequest(
            include_existing=include_existing,
            state=state_to_pb(state),
            app_name=app_name,
            job_id=job_id,
        )
        return _streams.watch(self._stub(), self._connection.metadata, request)

    def writer(
        self,
        session_id: str | None = None,
        *,
        options: WriterOptions | None = None,
        app_name: str = "",
        mode: str = "",
        platform: str = "",
        client_pid: int = 0,
        parent_session_id: str = "",
        job_id: str = "",
        metadata: Mapping[str, object] | None = None,
        lease_ttl: datetime.timedelta | float | None = None,
    ) -> LogWriter:
        """A `LogWriter` for the existing session `session_id`, or, without
        one, for a new session started (and retried) by its thread with the
        other arguments; its id is made here, so `writer.session_id` is
        known at once."""
        start = None
        if session_id is None:
            session_id = _ids.ulid()
            start = _start_request(
                session_id, app_name, mode, platform, client_pid, parent_session_id, job_id,
                metadata, lease_ttl,
            )  # fmt: skip
        elif any((app_name, mode, platform, client_pid, parent_session_id, job_id, metadata)) or (
            lease_ttl is not None
        ):
            raise ValueError("session details are for a new session, not an existing one")
        self._stub()  # fails now when the client is closed
        writer = LogWriter(
            self._stub, self._connection.metadata, session_id, start, options or WriterOptions()
        )
        self._writers.add(writer)
        return writer


_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _start_request(
    session_id: str,
    app_name: str,
    mode: str,
    platform: str,
    client_pid: int,
    parent_session_id: str,
    job_id: str,
    metadata: Mapping[str, object] | None,
    lease_ttl: datetime.timedelta | float | None,
) -> pb.StartSessionRequest:
    request = pb.StartSessionRequest(
        session_id=session_id,
        app_name=app_name,
        mode=mode,
        platform=platform,
        client_pid=client_pid,
        parent_session_id=parent_session_id,
        job_id=job_id,
    )
    if metadata:
        request.metadata.CopyFrom(to_struct(metadata))
    if lease_ttl is not None:
        request.lease_ttl.CopyFrom(to_duration(lease_ttl))
    return request
