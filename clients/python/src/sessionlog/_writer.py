"""A buffered, batching writer for one session, like the Rust client's.

Producers hand entries to a bounded buffer; `write` never waits for the
network: it takes a lock that the sending thread holds only to move
entries, and when the buffer is full (or the entry is larger than the
server accepts) it drops the entry and counts it. One background thread
sends the buffer in order, as batches of at most `max_batch` entries and
`max_batch_bytes` encoded bytes (far under the server's 16 MiB
`--max-message-size`), each with a batch id, retrying transient failures
with the same id, so each entry is stored once through lost answers and
server restarts.

`write` drops (and counts) an entry over any of the server's per-entry
limits (`WriterOptions` holds the server's defaults), so that a batch is
never refused for one entry; if the server refuses a batch anyway
(INVALID_ARGUMENT or RESOURCE_EXHAUSTED: its limits are lower than the
options say), the writer sends its halves on their own down to the entry
refused alone, counts that one as lost, and goes on. Any other failure
that is not transient stops the writer: storing later batches would
leave a gap in the order the producer wrote.
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

TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

# What the server refuses a batch for, when one of its entries is over a
# limit (RESOURCE_EXHAUSTED) or breaks a rule (INVALID_ARGUMENT).
_REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED})


def refusal(message: pb.LogEntry, options: WriterOptions) -> str | None:
    """Why the server, with `options`' limits, would refuse `message`; None
    when it would store it."""
    size = message.ByteSize()
    if size > options.max_entry_bytes:
        return f"an entry of {size} bytes, at most {options.max_entry_bytes}"
    if len(message.logger.encode()) > options.max_name_bytes:
        return f"a logger name longer than {options.max_name_bytes} bytes"
    if len(message.format.encode()) > options.max_text_bytes:
        return f"a format longer than {options.max_text_bytes} bytes"
    if len(message.trace_id) not in (0, TRACE_ID_BYTES):
        return f"a trace id of {len(message.trace_id)} bytes, not {TRACE_ID_BYTES}"
    if len(message.span_id) not in (0, SPAN_ID_BYTES):
        return f"a span id of {len(message.span_id)} bytes, not {SPAN_ID_BYTES}"
    if message.level not in pb.Level.values():
        return f"level {message.level}"
    # The server's walk: every value counts, a field's own value is level 1.
    pending = [(value, 1) for value in message.fields.fields.values()]
    values = 0
    while pending:
        value, depth = pending.pop()
        values += 1
        if values > options.max_struct_values:
            return f"fields of more than {options.max_struct_values} values"
        if depth > options.max_struct_depth:
            return f"fields nested deeper than {options.max_struct_depth} levels"
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            pending.extend((inner, depth + 1) for inner in value.struct_value.fields.values())
        elif kind == "list_value":
            pending.extend((inner, depth + 1) for inner in value.list_value.values)
        elif kind is None:
            return "a field value with no kind set"
    return None


@dataclass(frozen=True)
class WriterOptions:
    capacity: int = 10_000
    """Entries buffered before `write` drops."""
    max_batch: int = 500
    """The most entries in one Append."""
    max_batch_bytes: int = 4 << 20
    """The most encoded bytes in one Append (a single entry goes alone)."""
    max_entry_bytes: int = 1 << 20
    """Larger entries are dropped at `write` (the server's default
    `--max-entry-size`). This and the limits below are the server's
    defaults; `write` drops (and counts) an entry over any of them, since
    the server would refuse the batch holding it. Set them to the server's
    flags when it runs with others."""
    max_name_bytes: int = 256
    """The longest logger name, in UTF-8 bytes (`--max-name-length`)."""
    max_text_bytes: int = 64 << 10
    """The longest format template, in UTF-8 bytes (`--max-text-length`)."""
    max_struct_depth: int = 16
    """How deep `fields` may nest, a field's value being level 1
    (`--max-struct-depth`; the client never builds deeper than 16)."""
    max_struct_values: int = 1_000
    """Values in one entry's `fields`, nested ones included
    (`--max-struct-values`)."""
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
    refused them, was unavailable past the deadline, or the writer
    stopped)."""
    last_seq: int
    """The last seq stored."""
    error: Error | None
    """Why the writer stopped early, if it did."""
    last_refusal: Error | None = None
    """The server's answer the last time it refused an entry (sent alone,
    after it refused a batch holding it); the entry counts as lost and the
    writer goes on."""


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
        self._reset()

    def _reset(self) -> None:
        """A writer with nothing written yet, and its sending thread."""
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
        self._last_refusal: Error | None = None
        self._deadline = threading.Event()
        self._in_flight: grpc.Future[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sessionlog-writer-{self.session_id}", daemon=True
        )
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """In a child made by os.fork, which has none of the parent's
        threads: a fresh writer on the same session, with its own thread
        (on the client's new channel) and counts. What the parent had
        buffered stays the parent's to send; a writer closed before the
        fork stays closed."""
        closing = self._closing
        self._reset()
        if closing:
            self._closing = True
            self._thread.join()

    # The producer side ------------------------------------------------------

    def write(self, entry: EntryLike, timeout: float = 0.0) -> bool:
        """Buffers `entry` (an Entry, or a message at info level) for sending;
        an entry without a timestamp gets the current time.

        Returns False, and counts the entry as dropped, when the buffer is
        full, the entry is over one of the options' limits (larger than
        `max_entry_bytes`, a logger name or format too long, fields too deep
        or with too many values, a trace or span id of the wrong length),
        or the writer is closed or stopped. Never waits for the server: with `timeout` 0 it
        returns at once; otherwise it waits up to `timeout` seconds for room.
        Raises TypeError or ValueError for an entry that cannot be encoded.
        """
        message = entry_to_pb(entry)
        if not message.HasField("timestamp"):
            # Now, not when the server gets it: it may be down for a while.
            message.timestamp.GetCurrentTime()
        return self._write_pb(message, timeout)

    def _write_pb(self, message: pb.LogEntry, timeout: float = 0.0) -> bool:
        # Checked here, not in a batch: one entry the server refuses would
        # have it refuse the whole batch.
        refused = refusal(message, self.options)
        size = message.ByteSize() + ENTRY_FRAMING_BYTES
        with self._changed:
            if refused is not None:
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
        self._begin_close()
        return self._finish_close(time.monotonic() + timeout)

    def _begin_close(self) -> None:
        """Refuses later writes and has the thread send what is left."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    def _finish_close(self, deadline: float) -> WriterReport:
        """Waits for the thread until `deadline` (a `time.monotonic()`),
        then stops its retries and cancels its call."""
        self._thread.join(max(deadline - time.monotonic(), 0.0))
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
                last_refusal=self._last_refusal,
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
                self._start = None  # a child forked from now on need not start it
            while (batch := self._gather()) is not None:
                self._send(batch)
        except Error as error:
            self._stop(error)
        except Exception as unexpected:  # a bug here must not hang flush and close
            self._stop(Error(grpc.StatusCode.INTERNAL, f"the log writer failed: {unexpected!r}"))

    def _send(self, batch: list[pb.LogEntry]) -> None:
        """Stores `batch`. When the server refuses it for what an entry
        holds (the writer's check passed it, so the server's limits differ
        from the options'), sends each half on its own, down to the entry it
        refuses alone, which is counted as lost: one entry must not stop the
        writer. Other failures raise."""
        try:
            request = pb.AppendRequest(
                session_id=self.session_id, entries=batch, batch_id=_ids.ulid()
            )
        except Exception as unencodable:  # protobuf's own limits (nesting)
            refused = Error(grpc.StatusCode.INVALID_ARGUMENT, f"cannot encode: {unencodable!r}")
        else:
            try:
                response = self._retry(
                    lambda: self._stub().append.future(request, **self._call_options())
                )
            except Error as error:
                if error.code not in _REFUSALS or self._deadline.is_set():
                    raise
                refused = error
            else:
                with self._changed:
                    self._stored += len(batch)
                    self._finished += len(batch)
                    self._last_seq = response.last_seq
                    self._changed.notify_all()
                return
        if len(batch) > 1:
            half = len(batch) // 2
            self._send(batch[:half])
            self._send(batch[half:])
            return
        with self._changed:
            self._lost += 1
            self._finished += 1
            self._last_refusal = refused
            self._changed.notify_all()

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
