"""Every Client method against the real server, over TCP and a Unix socket."""

from __future__ import annotations

import asyncio
import datetime
import queue
import threading
import uuid
from pathlib import Path

import grpc
import pytest

import sessionlog
from sessionlog import Batch, CaughtUp, Ended, Entry, Level, SessionState
from sessionlog._connection import parse_server

from conftest import ServerProcess


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_a_session_is_started_updated_renewed_and_ended(client: sessionlog.Client) -> None:
    session = client.start_session(
        app_name="api-test",
        mode="ci",
        platform="linux",
        client_pid=0,
        job_id="job-1",
        metadata={"branch": "main", "attempt": 2, "flags": ["a", "b"], "nested": {"x": None}},
        lease_ttl=datetime.timedelta(minutes=5),
    )
    assert session.active and session.state is SessionState.ACTIVE
    assert session.metadata == {"branch": "main", "attempt": 2, "flags": ["a", "b"], "nested": {"x": None}}
    assert session.lease_ttl == datetime.timedelta(minutes=5)
    assert session.created_at is not None and session.created_at.tzinfo is not None

    updated = client.update_session(session.id, {"branch": None, "reviewed": True})
    assert updated.metadata == {"attempt": 2, "flags": ["a", "b"], "nested": {"x": None}, "reviewed": True}

    expires = client.heartbeat(session.id)
    assert expires is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    assert now < expires <= now + datetime.timedelta(minutes=5, seconds=5)

    ended = client.end_session(session.id, reason="exit code 0")
    assert ended.state is SessionState.ENDED and ended.end_reason == "exit code 0"
    assert ended.ended_at is not None
    fetched = client.get_session(session.id)
    assert fetched.state is SessionState.ENDED and fetched.last_seq == 1  # the end entry
    assert fetched.job_id == "job-1" and fetched.mode == "ci" and fetched.platform == "linux"


def test_a_chosen_id_is_kept_and_cannot_be_started_twice(client: sessionlog.Client) -> None:
    session_id = unique("chosen")
    assert client.start_session(session_id).id == session_id
    with pytest.raises(sessionlog.Error) as raised:
        client.start_session(session_id)
    assert raised.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_list_sessions_iterates_over_every_page(client: sessionlog.Client) -> None:
    app = unique("lister")
    started = [client.start_session(app_name=app).id for _ in range(7)]
    client.end_session(started[0], reason="done")

    listed = [session.id for session in client.list_sessions(app_name=app, page_size=2)]
    assert sorted(listed) == sorted(started)
    ended = [session.id for session in client.list_sessions("ended", app_name=app, page_size=2)]
    assert ended == [started[0]]
    active = list(client.list_sessions(SessionState.ACTIVE, app_name=app, page_size=3))
    assert sorted(session.id for session in active) == sorted(started[1:])


def test_delete_session_removes_it(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="deleter")
    with pytest.raises(sessionlog.Error) as active:
        client.delete_session(session.id)
    assert active.value.code == grpc.StatusCode.FAILED_PRECONDITION
    client.delete_session(session.id, force=True)
    with pytest.raises(sessionlog.Error) as gone:
        client.get_session(session.id)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
    assert "NOT_FOUND" in str(gone.value)


def test_appended_entries_read_back_with_python_types(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="appender")
    when = datetime.datetime(2026, 5, 1, 12, 30, 15, 250000, tzinfo=datetime.timezone.utc)
    entries = [
        Entry(
            "cache hit for 12 crates",
            level="debug",
            logger="build",
            format="cache hit for {count} crates",
            fields={"count": 12, "ratio": 0.5, "ok": True, "tags": ["x", 1], "none": None},
            timestamp=when,
            trace_id=bytes(range(16)),
            span_id=bytes(range(8)),
        ),
        Entry("slow test", level=Level.WARN, logger="test.unit"),
        "plain text at info",
    ]
    result = client.append(session.id, entries, batch_id="batch-1")
    assert (result.first_seq, result.last_seq, result.duplicate) == (1, 3, False)
    retry = client.append(session.id, entries, batch_id="batch-1")
    assert (retry.first_seq, retry.last_seq, retry.duplicate) == (1, 3, True)

    page = client.read(session.id)
    assert [entry.seq for entry in page.entries] == [1, 2, 3]
    assert page.last_seq == 3 and page.next_cursor == 3 and page.state is SessionState.ACTIVE
    first = page.entries[0]
    assert first.level is Level.DEBUG and first.level == "debug"
    assert (first.logger, first.message, first.format) == (
        "build", "cache hit for 12 crates", "cache hit for {count} crates",
    )  # fmt: skip
    assert first.fields == {"count": 12, "ratio": 0.5, "ok": True, "tags": ["x", 1], "none": None}
    assert first.timestamp == when
    assert (first.trace_id, first.span_id) == (bytes(range(16)), bytes(range(8)))
    assert page.entries[2].level is Level.INFO and page.entries[2].message == "plain text at info"
    assert page.entries[2].timestamp is not None  # the server's receive time


def test_append_with_expected_last_seq_is_optimistic(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="optimist")
    assert client.append(session.id, ["one"], expected_last_seq=0).last_seq == 1
    with pytest.raises(sessionlog.Error) as raised:
        client.append(session.id, ["two"], expected_last_seq=0)
    assert raised.value.code == grpc.StatusCode.ABORTED
    with pytest.raises(sessionlog.Error) as empty:
        client.append(session.id, [])
    assert empty.value.code == grpc.StatusCode.INVALID_ARGUMENT
    client.end_session(session.id)
    with pytest.raises(sessionlog.Error) as ended:
        client.append(session.id, ["late"])
    assert ended.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_read_pages_tails_and_filters(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="reader")
    client.append(
        session.id,
        [
            Entry(f"line {n}", level="error" if n % 3 == 0 else "info", logger=f"mod{n % 2}.sub")
            for n in range(1, 11)
        ],
    )
    page = client.read(session.id, after_seq=2, limit=3)
    assert [entry.seq for entry in page.entries] == [3, 4, 5] and page.next_cursor == 5
    assert [entry.seq for entry in client.read(session.id, tail=2).entries] == [9, 10]
    errors = client.read(session.id, min_level="error")
    assert [entry.seq for entry in errors.entries] == [3, 6, 9] and errors.next_cursor == 10
    odd = client.read(session.id, logger_prefixes="mod1")
    assert [entry.seq for entry in odd.entries] == [1, 3, 5, 7, 9]
    assert [entry.seq for entry in client.read(session.id, contains="line 1").entries] == [1, 10]
    assert [e.seq for e in client.read_all(session.id, after_seq=4)] == list(range(5, 11))
    assert [e.seq for e in client.read_all(session.id, min_level="error")] == [3, 6, 9]
    with pytest.raises(ValueError, match="unknown level"):
        client.read(session.id, min_level="loud")


def test_calls_without_the_token_are_refused(server: ServerProcess) -> None:
    with sessionlog.Client(server.tcp_address) as anonymous:
        with pytest.raises(sessionlog.Error) as raised:
            anonymous.start_session()
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    with sessionlog.Client(server.tcp_address, token="wrong") as wrong:
        with pytest.raises(sessionlog.Error) as refused:
            wrong.start_session()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_environment_names_server_and_token_file(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONLOG_SERVER", f"http://{server.tcp_address}")
    monkeypatch.setenv("SESSIONLOG_TOKEN_FILE", str(server.token_file))
    with sessionlog.Client() as from_env:
        assert from_env.server == f"http://{server.tcp_address}"
        assert from_env.start_session(app_name="env").active


def test_server_strings_parse_like_the_command_line() -> None:
    assert parse_server("http://127.0.0.1:50051").grpc_target == "127.0.0.1:50051"
    assert parse_server("http://example.test").grpc_target == "example.test:80"
    secure = parse_server("https://example.test")
    assert (secure.grpc_target, secure.tls) == ("example.test:443", True)
    assert parse_server("http://[::1]:7000").grpc_target == "[::1]:7000"
    assert parse_server("unix:/run/sessionlog.sock").grpc_target == "unix:/run/sessionlog.sock"
    assert parse_server("localhost:50051").grpc_target == "localhost:50051"
    for bad in ("ftp://host:1", "http://host:1/path", "unix:", "", "/tmp/socket"):
        with pytest.raises(ValueError):
            parse_server(bad)


def test_a_token_file_without_a_token_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n# only a comment\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        sessionlog.Client("127.0.0.1:1", token_file=empty)


def test_a_unix_socket_works_with_grpcio_default_options(server: ServerProcess) -> None:
    with server.client(server.unix_address) as over_socket:
        session = over_socket.start_session(app_name="unix")
        over_socket.append(session.id, ["over the socket"])
        over_socket.end_session(session.id, reason="done")
        assert [e.message for e in over_socket.read(session.id).entries] == [
            "over the socket", "Session ended: done",
        ]  # fmt: skip
        events = list(over_socket.follow(session.id))
    assert isinstance(events[-1], Ended) and events[-1].session.end_reason == "done"


def test_follow_delivers_history_then_live_entries_then_the_end(
    client: sessionlog.Client,
) -> None:
    session = client.start_session(app_name="follower")
    client.append(session.id, ["one", "two"])
    events: queue.Queue[sessionlog.FollowEvent] = queue.Queue()

    def follow() -> None:
        for event in client.follow(session.id):
            events.put(event)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    seen = []
    while not isinstance(event := events.get(timeout=10), CaughtUp):
        assert isinstance(event, Batch)
        seen.extend(entry.message for entry in event.entries)
    assert seen == ["one", "two"] and event.cursor == 2
    client.append(session.id, ["three"])
    live = events.get(timeout=10)
    assert isinstance(live, Batch) and [e.seq for e in live.entries] == [3] and live.cursor == 3
    client.end_session(session.id, reason="finished")
    end_entry = events.get(timeout=10)
    assert isinstance(end_entry, Batch) and end_entry.entries[0].message == "Session ended: finished"
    ended = events.get(timeout=10)
    assert isinstance(ended, Ended) and ended.session.end_reason == "finished"
    thread.join(timeout=10)
    assert not thread.is_alive(), "follow did not stop after `ended`"


def test_follow_from_a_cursor_a_tail_and_with_a_filter(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="cursor")
    client.append(session.id, [Entry(f"e{n}", level="warn" if n == 4 else "info") for n in range(1, 6)])
    client.end_session(session.id)

    def seqs(events: list[sessionlog.FollowEvent]) -> list[int]:
        return [entry.seq for event in events if isinstance(event, Batch) for entry in event.entries]

    assert seqs(list(client.follow(session.id, after_seq=3))) == [4, 5, 6]
    assert seqs(list(client.follow(session.id, tail=2))) == [5, 6]
    assert seqs(list(client.follow(session.id, min_level="warn"))) == [4]
    events = list(client.follow(session.id, max_batch=2))
    assert [len(event.entries) for event in events if isinstance(event, Batch)] == [2, 2, 2]
    assert sum(isinstance(event, CaughtUp) for event in events) == 1


def test_follow_of_an_unknown_session_raises(client: sessionlog.Client) -> None:
    with pytest.raises(sessionlog.Error) as raised:
        list(client.follow("no-such-session"))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_follow_async_delivers_the_same_events(client: sessionlog.Client) -> None:
    session = client.start_session(app_name="async")
    client.append(session.id, ["a", "b"])

    async def follow() -> list[sessionlog.FollowEvent]:
        events = []
        async for event in client.follow_async(session.id, after_seq=1):
            events.append(event)
            if isinstance(event, CaughtUp):
                client.append(session.id, ["c"])
                client.end_session(session.id, reason="async done")
        return events

    events = asyncio.run(asyncio.wait_for(follow(), timeout=20))
    messages = [e.message for event in events if isinstance(event, Batch) for e in event.entries]
    assert messages == ["b", "c", "Session ended: async done"]
    assert isinstance(events[-1], Ended)


def test_watch_reports_existing_then_new_sessions(client: sessionlog.Client) -> None:
    app = unique("watched")
    existing = client.start_session(app_name=app)
    events = client.watch(include_existing=True, app_name=app)
    first = next(events)
    assert first.kind is sessionlog.EventKind.STARTED and first.session is not None
    assert first.session.id == existing.id
    caught_up = next(events)
    assert caught_up.kind == "caught_up" and caught_up.session is None
    new = client.start_session(app_name=app)
    started = next(events)
    assert started.kind is sessionlog.EventKind.STARTED and started.session is not None
    assert started.session.id == new.id
    client.end_session(new.id, reason="bye")
    ended = next(events)
    assert ended.kind is sessionlog.EventKind.ENDED and ended.session is not None
    assert ended.session.end_reason == "bye"
    events.close()  # cancels the stream


def test_a_closed_client_refuses_calls(server: ServerProcess) -> None:
    closed = server.client()
    closed.close()
    with pytest.raises(sessionlog.Error) as raised:
        closed.get_session("x")
    assert raised.value.code == grpc.StatusCode.CANCELLED


def test_closing_the_client_ends_a_follow_with_cancelled(server: ServerProcess) -> None:
    closing = server.client()
    session = closing.start_session(app_name="closing")
    outcome: queue.Queue[object] = queue.Queue()

    def follow() -> None:
        try:
            for event in closing.follow(session.id):
                outcome.put(event)
        except sessionlog.Error as error:
            outcome.put(error)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert isinstance(outcome.get(timeout=10), CaughtUp)
    closing.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    error = outcome.get(timeout=1)
    assert isinstance(error, sessionlog.Error) and error.code == grpc.StatusCode.CANCELLED
