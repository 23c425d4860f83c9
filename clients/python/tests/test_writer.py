"""The LogWriter: batches in order, bounded buffer, never waits for a server
that is down, stops on a refused batch, and stays under the byte limits."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

import sessionlog
from sessionlog import Batch, Entry, WriterOptions

from conftest import ServerProcess


def test_a_writer_stores_every_entry_once_in_order(client: sessionlog.Client) -> None:
    with client.writer(app_name="writer", job_id="w-1", metadata={"k": "v"}) as writer:
        for n in range(2_000):
            assert writer.write(Entry(f"entry {n}", fields={"n": n}))
        assert writer.flush(timeout=30)
        assert writer.report().stored == 2_000
    report = writer.report()
    assert (report.stored, report.dropped, report.lost, report.last_seq) == (2_000, 0, 0, 2_000)
    assert report.error is None
    session = client.get_session(writer.session_id)
    assert session.app_name == "writer" and session.metadata == {"k": "v"}
    messages = [entry.message for entry in client.read_all(writer.session_id)]
    assert messages == [f"entry {n}" for n in range(2_000)]
    assert not writer.write("after close") and writer.report().dropped == 1


def test_a_writer_joins_an_existing_session(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="joined")
    writer = client.writer(session.id)
    assert writer.session_id == session.id
    writer.write("joined")
    report = writer.close(timeout=10)
    assert (report.stored, report.last_seq) == (1, 1)
    with pytest.raises(ValueError):
        client.writer(session.id, app_name="not for an existing session")


def test_writes_never_wait_for_a_server_that_is_down(tmp_path: Path) -> None:
    absent = sessionlog.Client(f"unix:{tmp_path / 'nobody-listens.sock'}")
    writer = absent.writer("some-session", options=WriterOptions(capacity=100, linger=0))
    started = time.monotonic()
    accepted = sum(writer.write(f"line {n}") for n in range(1_000))
    elapsed = time.monotonic() - started
    # The first batch may be on its way when the rest are written.
    assert 100 <= accepted <= 100 + WriterOptions().max_batch
    assert writer.dropped == 1_000 - accepted
    assert elapsed < 1.0, f"1,000 writes took {elapsed:.2f} s"
    assert not writer.flush(timeout=0.2)

    started = time.monotonic()
    report = writer.close(timeout=0.5)
    assert time.monotonic() - started < 3.0, "close overran its timeout"
    assert report.stored == 0 and report.lost == accepted
    assert report.error is not None
    assert report.error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    absent.close()


def test_a_refused_batch_stops_the_writer(client: sessionlog.Client) -> None:
    writer = client.writer("no-such-session", options=WriterOptions(linger=0))
    writer.write("one")
    assert not writer.flush(timeout=10)
    report = writer.report()
    assert report.error is not None and report.error.code == grpc.StatusCode.NOT_FOUND
    assert report.lost == 1
    assert not writer.write("two") and writer.dropped == 1
    writer.close()


def test_an_entry_over_the_servers_entry_limit_is_dropped_not_fatal(
    client: sessionlog.Client,
) -> None:
    with client.writer(app_name="oversized") as writer:
        assert not writer.write("x" * (1 << 20))
        assert writer.write("small")
    report = writer.report()
    assert (report.stored, report.dropped, report.lost, report.error) == (1, 1, 0, None)


def test_large_entries_stay_under_the_message_and_receive_limits(
    server: ServerProcess,
) -> None:
    """20 entries of 900 KiB (18 MiB, more than the server's 16 MiB
    `--max-message-size`): the writer splits them into Appends of at most
    4 MiB, and reads and follows over channels with grpcio's default 4 MiB
    receive limit get every one of them (the server's pages stay under it)."""
    size = 900 << 10
    with server.client(server.unix_address) as client:
        with client.writer(app_name="large") as writer:
            for n in range(20):
                assert writer.write(Entry(f"{n:02d}" + "x" * size, fields={"n": n}))
        report = writer.report()
        assert (report.stored, report.lost, report.error) == (20, 0, None)

        pages = []
        cursor = 0
        while True:
            page = client.read(writer.session_id, after_seq=cursor)
            if not page.entries:
                break
            pages.append([entry.seq for entry in page.entries])
            cursor = page.next_cursor
        assert [seq for page in pages for seq in page] == list(range(1, 21))
        assert len(pages) >= 5, f"pages of {[len(p) for p in pages]} entries: over 4 MiB each?"

        client.end_session(writer.session_id)
        followed = [
            entry.message[:2]
            for event in client.follow(writer.session_id)
            if isinstance(event, Batch)
            for entry in event.entries
        ]
        assert followed == [f"{n:02d}" for n in range(20)] + ["Se"]


class LostAnswer(grpc.RpcError):
    """What a connection cut after the server stored the batch looks like."""


class AnswerLostOnce:
    """A stub whose first Append reaches the server but whose answer is lost."""

    class _Failed:
        def result(self) -> None:
            raise LostAnswer("the connection dropped before the answer")

        def cancel(self) -> bool:
            return False

    def __init__(self, client: sessionlog.Client) -> None:
        self.real = client._stub()
        self.appends: list[str] = []
        outer = self

        class Append:
            def future(self, request: object, **options: object) -> object:
                outer.appends.append(request.batch_id)  # type: ignore[attr-defined]
                answer = outer.real.append.future(request, **options)
                if len(outer.appends) == 1:
                    answer.result()  # stored on the server
                    return AnswerLostOnce._Failed()
                return answer

        self.append = Append()


def test_a_batch_whose_answer_was_lost_is_retried_with_its_id_and_stored_once(
    client: sessionlog.Client,
) -> None:
    session = client.start_session(app_name="lost-answer")
    stub = AnswerLostOnce(client)
    writer = sessionlog.LogWriter(
        lambda: stub,  # type: ignore[arg-type,return-value]
        client._connection.metadata,
        session.id,
        None,
        WriterOptions(linger=0.5),
    )
    for n in range(3):
        writer.write(f"entry {n}")
    report = writer.close(timeout=10)
    assert len(stub.appends) == 2 and stub.appends[0] == stub.appends[1], stub.appends
    assert (report.stored, report.lost, report.last_seq, report.error) == (3, 0, 3, None)
    assert [e.message for e in client.read(session.id).entries] == [f"entry {n}" for n in range(3)]
