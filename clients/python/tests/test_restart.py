"""Across a server restart (SIGTERM, then a new process on the same data and
socket): followers resume from their cursor with no gap and no duplicate,
and a writer stores each entry once, in order."""

from __future__ import annotations

import asyncio
import datetime
import queue
import threading

import grpc

import sessionlog
from sessionlog import Batch, CaughtUp, Ended, Reconnecting

from conftest import ServerProcess

WAIT_SECONDS = 30


def messages(events: list[sessionlog.FollowEvent]) -> list[str]:
    return [entry.message for event in events if isinstance(event, Batch) for entry in event.entries]


def test_followers_resume_from_their_cursor_across_a_restart(server: ServerProcess) -> None:
    with server.client(server.unix_address) as client:
        session = client.start_session(app_name="resume")
        client.append(session.id, ["one", "two"])

        sync_events: queue.Queue[sessionlog.FollowEvent] = queue.Queue()
        async_events: queue.Queue[sessionlog.FollowEvent] = queue.Queue()

        def follow_sync() -> None:
            for event in client.follow(session.id):
                sync_events.put(event)

        async def follow_async() -> None:
            async for event in client.follow_async(session.id, after_seq=1):
                async_events.put(event)

        threads = [
            threading.Thread(target=follow_sync, daemon=True),
            threading.Thread(target=lambda: asyncio.run(follow_async()), daemon=True),
        ]
        for thread in threads:
            thread.start()
        seen: dict[str, list[sessionlog.FollowEvent]] = {"sync": [], "async": []}
        for name, events in (("sync", sync_events), ("async", async_events)):
            while not isinstance(event := events.get(timeout=WAIT_SECONDS), CaughtUp):
                seen[name].append(event)
            seen[name].append(event)

        server.restart()
        # The channel may be backing off from an attempt made while the
        # server was stopping; a call then fails at once. Wait for it.
        assert client._channel is not None
        grpc.channel_ready_future(client._channel).result(timeout=WAIT_SECONDS)
        client.append(session.id, ["three", "four"])
        client.end_session(session.id, reason="restarted")
        for thread in threads:
            thread.join(timeout=WAIT_SECONDS)
            assert not thread.is_alive(), "a follower did not end with the session"
        for name, events in (("sync", sync_events), ("async", async_events)):
            while not events.empty():
                seen[name].append(events.get())

    end = "Session ended: restarted"
    assert messages(seen["sync"]) == ["one", "two", "three", "four", end]
    assert messages(seen["async"]) == ["two", "three", "four", end]
    for events in seen.values():
        reconnects = [event for event in events if isinstance(event, Reconnecting)]
        # Both had caught up at seq 2 when the server stopped.
        assert reconnects and all(event.after_seq == 2 for event in reconnects), events
        assert isinstance(events[-1], Ended)


def test_a_writer_stores_each_entry_once_across_a_restart(server: ServerProcess) -> None:
    with server.client(server.unix_address) as client:
        writer = client.writer(app_name="restart-writer")
        for n in range(500):
            assert writer.write(f"entry {n}")
        assert writer.flush(timeout=WAIT_SECONDS)
        server.stop()
        # Written while the server is down: they wait in the buffer.
        for n in range(500, 1_000):
            assert writer.write(f"entry {n}")
        assert not writer.flush(timeout=0.3), "stored while the server was down?"
        server.start()
        restarted_at = datetime.datetime.now(datetime.timezone.utc)
        for n in range(1_000, 1_500):
            assert writer.write(f"entry {n}")
        report = writer.close(timeout=WAIT_SECONDS)
        assert (report.stored, report.dropped, report.lost, report.error) == (1_500, 0, 0, None)
        assert report.last_seq == 1_500

        entries = list(client.read_all(writer.session_id))
    assert [(entry.seq, entry.message) for entry in entries] == [
        (n + 1, f"entry {n}") for n in range(1_500)
    ]
    # Stamped when written, not when the server got them after the restart.
    assert entries[999].timestamp is not None and entries[999].timestamp < restarted_at
