"""A buffered, batching writer for one session, like the Rust client's.

Producers hand entries to a bounded buffer; `write` never waits for the
network: it takes a lock that the sending thread holds only to move
entries, and when the buffer is full (or the entry is larger than the
server accepts) it drops the entry and counts it. One background thread
sends the buffer in order, as batches of at most `max_batch` entries and
`max_batch_bytes` encoded bytes (far under the server's 16 MiB
`--max-message-size`), each with a batch id, retrying transient failures
with the same id, so each entry is stored once through lost answers and
server restarts. A batch that cannot be stored stops the writer: storing
later ones would leave a gap in the order the producer wrote.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypedDict, TypeVar

import grpc

from sessionlog import _ids, _rpc
from sessionlog._errors import Error, is_transient
from sessionlog._types import EntryLike, entry_to_pb
from sessionlog.v1 import sessionlog_pb2 as pb

R = TypeVar("R")


class CallOptions(TypedDict):
    timeout: float
    metadata: tuple[tuple[str, str], ...]


# What a repeated message field adds to each entry: its tag and a length of
# up to 5 bytes (the server's entries are at most a few MiB).
ENTRY_FRAMING_BYTES = 6


@dataclass(frozen=True)
class WriterOptions:
    capacity: int = 10_000
    """Entries buffered before `write` drops."""
    max_batch: int = 500
    """The most entries in one Append."""
    max_batch_bytes: int = 4 << 20
    """The most encoded bytes in one Append (a single entry goes alone)."""
    max_entry_bytes: int = 1 << 20
    """Larger entries are dropped at `write`: the server's default
    `--max-entry-size` refuses them, and that would stop the writer."""
    linger: float = 0.05
    """Seconds the first entry of a batch waits for company."""
    give_up_after: float | None = None
    """Seconds a batch may keep failing transiently before it is given up
    (None: retry until `close`'s timeout)."""
    call_timeout: float = 10.0
    """Seconds one Append may take before it is retried."""


@dataclass(frozen=True)
class WriterReport:
    """What a writer did, so far or in all."""

    session_id: str
    stored: int
    """Entries the server stored."""
    dropped: int
    """Entries `write` refused: the buffer was full, the entry too large,
    or the writer closed or stopped."""
    lost: int
    """Entries accepted into the buffer but never stored (the server
    refused them, was unavailable past the deadline, or an earlier batch
    failed)."""
    last_seq: int
    """The last seq stored."""
    error: Error | None
    """Why the writer stopped early, if it did."""


class LogWriter:
    """Made by `Client.writer`; see the module documentation."""

    def __init__(
        self,
        stub: Callable[[], _rpc.Stub],
        metadata: tuple[tuple[str, str], ...],
        session_id: str,
        start: pb.StartSessionRequest | None,
        options: WriterOptions,
    ) -> None:
        self.session_id = session_id
        self.options = options
        self._stub = stub
        self._metadata = metadata
        self._start = start
        self._changed = threading.Condition()
        self._buffer: deque[tuple[pb.LogEntry, int]] = deque()
        self._accepted = 0
        self._finished = 0  # accepted entries now stored or lost, in order
        self._stored = 0
        self._dropped = 0
        self._lost = 0
        self._last_seq = 0
        self._flushing = 0
        self._closing = False
        self._error: Error | None = None
        self._deadline = threading.Event()
        self._in_flight: grpc.Future[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sessionlog-writer-{session_id}", daemon=True
        )
        self._thread.start()

    # The producer side ------------------------------------------------------

    def write(self, entry: EntryLike, timeout: float = 0.0) -> bool:
        """Buffers `entry` (an Entry, or a message at info level) for sending;
        an entry without a timestamp gets the current time.

        Returns False, and counts the entry as dropped, when the buffer is
        full, the entry is larger than `max_entry_bytes`, or the writer is
        closed or stopped. Never waits for the server: with `timeout` 0 it
        returns at once; otherwise it waits up to `timeout` seconds for room.
        Raises TypeError or ValueError for an entry that cannot be encoded.
        """
        message = entry_to_pb(entry)
        if not message.HasField("timestamp"):
            # Now, not when the server gets it: it may be down for a while.
            message.timestamp.GetCurrentTime()
        return self._write_pb(message, timeout)

    def _write_pb(self, message: pb.LogEntry, timeout: float = 0.0) -> bool:
        size = message.ByteSize() + ENTRY_FRAMING_BYTES
        with self._changed:
            if size > self.options.max_entry_bytes:
                self._dropped += 1
                return False
            if timeout > 0:
                self._changed.wait_for(self._has_room, timeout)
            if not self._has_room() or self._closing or self._error is not None:
                self._dropped += 1
                return False
            self._buffer.append((message, size))
            self._accepted += 1
            self._changed.notify_all()
            return True

    def _has_room(self) -> bool:
        return (
            len(self._buffer) < max(self.options.capacity, 1)
            or self._closing
            or self._error is not None
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every entry written before the call is stored (True),
        or lost, or `timeout` seconds pass (False). Sends without lingering."""
        with self._changed:
            target = self._accepted
            self._flushing += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: self._finished >= target, timeout)
                return self._finished >= target and self._error is None
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 5.0) -> WriterReport:
        """Sends what is buffered and stops; later writes are dropped. After
        `timeout` seconds, retries stop and what is unsent counts as lost,
        so close returns within about `timeout` seconds."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._deadline.set()
            with self._changed:
                if self._in_flight is not None:
                    self._in_flight.cancel()
            self._thread.join()
        return self.report()

    def report(self) -> WriterReport:
        with self._changed:
            return WriterReport(
                session_id=self.session_id,
                stored=self._stored,
                dropped=self._dropped,
                lost=self._lost,
                last_seq=self._last_seq,
                error=self._error,
            )

    @property
    def dropped(self) -> int:
        with self._changed:
            return self._dropped

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # The sending thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            if self._start is not None:
                self._start_session(self._start)
            while (batch := self._gather()) is not None:
                request = pb.AppendRequest(
                    session_id=self.session_id, entries=batch, batch_id=_ids.ulid()
                )
                response = self._retry(
                    lambda: self._stub().append.future(request, **self._call_options())
                )
                with self._changed:
                    self._stored += len(batch)
                    self._finished += len(batch)
                    self._last_seq = response.last_seq
                    self._changed.notify_all()
        except Error as error:
            self._stop(error)
        except Exception as unexpected:  # a bug here must not hang flush and close
            self._stop(Error(grpc.StatusCode.INTERNAL, f"the log writer failed: {unexpected!r}"))

    def _gather(self) -> list[pb.LogEntry] | None:
        """The next batch: the first entry, then what arrives within
        `linger`, up to `max_batch` entries and `max_batch_bytes`; None
        once closing with nothing buffered."""
        options = self.options
        with self._changed:
            self._changed.wait_for(lambda: bool(self._buffer) or self._closing)
            if not self._buffer:
                return None
            first, size = self._buffer.popleft()
            batch, total = [first], size
            send_by = time.monotonic() + options.linger
            while len(batch) < max(options.max_batch, 1):
                if self._buffer:
                    entry, size = self._buffer[0]
                    if total + size > options.max_batch_bytes:
                        break
                    self._buffer.popleft()
                    batch.append(entry)
                    total += size
                    continue
                remaining = send_by - time.monotonic()
                if self._closing or self._flushing or remaining <= 0:
                    break
                self._changed.wait(remaining)
            self._changed.notify_all()  # room for writers waiting on it
            return batch

    def _start_session(self, request: pb.StartSessionRequest) -> None:
        try:
            self._retry(lambda: self._stub().start_session.future(request, **self._call_options()))
        except Error as error:
            # An earlier attempt got through, but its answer did not.
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise

    def _call_options(self) -> CallOptions:
        return {"timeout": self.options.call_timeout, "metadata": self._metadata}

    def _retry(self, send: Callable[[], grpc.Future[R]]) -> R:
        """Calls until it succeeds, fails for good, `give_up_after` passes,
        or close's deadline does."""
        started = time.monotonic()
        backoff = 0.1
        while True:
            try:
                return self._wait(send())
            except grpc.RpcError as rpc_error:
                error = Error.from_rpc(rpc_error)
            except grpc.FutureCancelledError:
                raise Error(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "the writer's close timeout passed"
                ) from None
            except ValueError as closed:  # grpcio's "closed channel"
                raise Error(grpc.StatusCode.CANCELLED, str(closed)) from None
            if not is_transient(error) or self._deadline.is_set():
                raise error
            limit = self.options.give_up_after
            if limit is not None and time.monotonic() - started >= limit:
                raise error
            if self._deadline.wait(backoff + backoff * random.uniform(0, 0.5)):
                raise error
            backoff = min(backoff * 2, 5.0)

    def _wait(self, future: grpc.Future[R]) -> R:
        """The call's result; `close` cancels it once its timeout passed."""
        with self._changed:
            self._in_flight = future
            if self._deadline.is_set():
                future.cancel()
        try:
            return future.result()
        finally:
            with self._changed:
                self._in_flight = None

    def _stop(self, error: Error) -> None:
        """Records `error`, refuses further writes, and counts what is still
        buffered as lost."""
        with self._changed:
            self._error = error
            lost = self._accepted - self._finished
            self._lost += lost
            self._finished += lost
            self._buffer.clear()
            self._changed.notify_all()
