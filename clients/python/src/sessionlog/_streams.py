"""The server's streams as Python iterators: `follow` (sync and asyncio),
which resumes from its cursor after transient errors, and `watch`.

The follow guarantee: across any number of reconnects the caller gets
every entry after the starting cursor once, in seq order. It holds because
each reconnect asks for the entries after the last cursor the server sent
(`LogBatch.cursor`, `CaughtUp.cursor`), which covers exactly what was
already yielded; a reconnect repeats nothing but the `CaughtUp` event.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Union

import grpc
import grpc.aio

from sessionlog import _rpc
from sessionlog._errors import Error, is_transient
from sessionlog._types import Entry, Session
from sessionlog.v1 import sessionlog_pb2 as pb

FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class Batch:
    """Entries in seq order; `cursor` is where a resume starts (it can pass
    the last entry's seq when a filter skipped later ones)."""

    entries: list[Entry]
    cursor: int


@dataclass(frozen=True)
class CaughtUp:
    """The history is delivered; what follows is live. Sent once per
    connection, so again after a reconnect."""

    cursor: int


@dataclass(frozen=True)
class Truncated:
    """Entries before `first_available_seq` were pruned before they could be sent."""

    first_available_seq: int


@dataclass(frozen=True)
class Ended:
    """The session ended; the iterator stops after this."""

    session: Session


@dataclass(frozen=True)
class Reconnecting:
    """The connection was lost (`error`); the iterator reconnects and
    resumes after `after_seq`."""

    after_seq: int
    error: Error = field(compare=False)


FollowEvent = Union[Batch, CaughtUp, Truncated, Ended, Reconnecting]


class EventKind(str, enum.Enum):
    UNSPECIFIED = "unspecified"
    STARTED = "started"
    UPDATED = "updated"
    ENDED = "ended"
    DELETED = "deleted"
    CAUGHT_UP = "caught_up"

    def __str__(self) -> str:
        return self.value


_KIND_FROM_PB = {
    pb.SessionEvent.KIND_STARTED: EventKind.STARTED,
    pb.SessionEvent.KIND_UPDATED: EventKind.UPDATED,
    pb.SessionEvent.KIND_ENDED: EventKind.ENDED,
    pb.SessionEvent.KIND_DELETED: EventKind.DELETED,
    pb.SessionEvent.KIND_CAUGHT_UP: EventKind.CAUGHT_UP,
}


@dataclass(frozen=True)
class SessionEvent:
    """A session started, updated, ended or was deleted; `caught_up` (with
    no session) once the existing sessions asked for are delivered."""

    kind: EventKind
    session: Session | None


class Cursor:
    """Where a follow resumes, and its retry state."""

    def __init__(self, request: pb.FollowRequest, give_up_after: float | None) -> None:
        self.request = request
        self.give_up_after = give_up_after
        self.backoff = FIRST_BACKOFF_SECONDS
        self.failing_since: float | None = None

    def event(self, response: pb.FollowResponse) -> FollowEvent | None:
        """The event of `response`, advancing the cursor; None for an event
        this client does not know."""
        self.backoff = FIRST_BACKOFF_SECONDS
        self.failing_since = None
        kind = response.WhichOneof("event")
        if kind == "batch":
            self._seen(response.batch.cursor)
            entries = [Entry.from_pb(entry) for entry in response.batch.entries]
            return Batch(entries, response.batch.cursor)
        if kind == "caught_up":
            self._seen(response.caught_up.cursor)
            return CaughtUp(response.caught_up.cursor)
        if kind == "truncated":
            return Truncated(response.truncated.first_available_seq)
        if kind == "ended":
            return Ended(Session.from_pb(response.ended))
        return None

    def _seen(self, cursor: int) -> None:
        # Resumes continue from the cursor, no longer from the tail.
        self.request.after_seq = max(self.request.after_seq, cursor)
        self.request.tail = 0

    def lost(self, error: Error) -> float:
        """How long to wait before reconnecting; raises `error` when it is
        not transient or failures have lasted past `give_up_after`."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if not is_transient(error) or (
            self.give_up_after is not None and now - self.failing_since >= self.give_up_after
        ):
            raise error
        delay = self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF_SECONDS)
        return delay


CLOSED_EARLY = "the follow stream closed before the session ended"


def follow(
    stub: Callable[[], _rpc.Stub],
    metadata: tuple[tuple[str, str], ...],
    cursor: Cursor,
) -> Iterator[FollowEvent]:
    """The sync follow; `stub` gives the current stub (it raises once the
    client is closed)."""
    while True:
        call = stub().follow(cursor.request, metadata=metadata)
        try:
            for response in call:
                event = cursor.event(response)
                if event is not None:
                    yield event
                if isinstance(event, Ended):
                    return
            error = Error(grpc.StatusCode.UNAVAILABLE, CLOSED_EARLY)
        except grpc.RpcError as rpc_error:
            error = Error.from_rpc(rpc_error)
        finally:
            call.cancel()
        delay = cursor.lost(error)
        stub()  # a closed client ends the follow here, with CANCELLED
        time.sleep(delay)
        yield Reconnecting(cursor.request.after_seq, error)


async def follow_async(
    channel: Callable[[], grpc.aio.Channel],
    metadata: tuple[tuple[str, str], ...],
    cursor: Cursor,
) -> AsyncIterator[FollowEvent]:
    """The asyncio follow, on a channel of its own for the running loop."""
    aio_channel = channel()
    try:
        method = _rpc.FOLLOW.aio_stream(aio_channel)
        while True:
            call = method(cursor.request, metadata=metadata)
            try:
                async for response in call:
                    event = cursor.event(response)
                    if event is not None:
                        yield event
                    if isinstance(event, Ended):
                        return
                error = Error(grpc.StatusCode.UNAVAILABLE, CLOSED_EARLY)
            except grpc.RpcError as rpc_error:
                error = Error.from_rpc(rpc_error)
            finally:
                call.cancel()
            await asyncio.sleep(cursor.lost(error))
            yield Reconnecting(cursor.request.after_seq, error)
    finally:
        await aio_channel.close()


def watch(
    stub: _rpc.Stub, metadata: tuple[tuple[str, str], ...], request: pb.WatchSessionsRequest
) -> Iterator[SessionEvent]:
    call = stub.watch_sessions(request, metadata=metadata)
    try:
        for event in call:
            session = Session.from_pb(event.session) if event.HasField("session") else None
            yield SessionEvent(_KIND_FROM_PB.get(event.kind, EventKind.UNSPECIFIED), session)
    except grpc.RpcError as error:
        raise Error.from_rpc(error) from None
    finally:
        call.cancel()
