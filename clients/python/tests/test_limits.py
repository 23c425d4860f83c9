"""One entry over a server limit never stops a writer or a Handler: the
writer drops (and counts) it before it reaches a batch, the Handler shrinks
it into the limits, and a batch the server refuses anyway is split down to
the entry it refuses alone."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import sessionlog
from sessionlog import Entry, WriterOptions
from sessionlog._types import MAX_DEPTH

from conftest import ServerProcess


def nested(depth: int) -> dict[str, object]:
    """A dict `depth` levels deep: {"n": {"n": ... {"n": "leaf"}}}."""
    value: object = "leaf"
    for _ in range(depth):
        value = {"n": value}
    assert isinstance(value, dict)
    return value


def levels(value: object) -> int:
    """How deep a value read back nests (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((levels(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((levels(v) for v in value), default=0)
    return 0


def count(value: object) -> int:
    """Values as the server counts them: each, nested ones included."""
    if isinstance(value, dict):
        return 1 + sum(count(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(count(v) for v in value)
    return 1


def self_containing() -> dict[str, object]:
    loop: dict[str, object] = {"name": "loop"}
    loop["self"] = loop
    return loop


@pytest.fixture
def logger(client: sessionlog.Client) -> Iterator[tuple[logging.Logger, sessionlog.Handler]]:
    handler = sessionlog.Handler(client, app_name="limits", options=WriterOptions(linger=0))
    log = logging.getLogger("limits-test")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, handler
    log.removeHandler(handler)
    handler.close()


def test_max_depth_is_within_the_servers_default() -> None:
    # A field's value is level 1 on the server, 0 here; the default is 16.
    assert MAX_DEPTH <= 15


@pytest.mark.parametrize(
    "case",
    ["extra nested 20 deep", "logger of 300 bytes", "2000 args", "70 KB template", "dict in itself"],
)
def test_a_record_over_a_limit_is_shrunk_and_later_ones_are_stored(
    client: sessionlog.Client,
    logger: tuple[logging.Logger, sessionlog.Handler],
    case: str,
) -> None:
    log, handler = logger
    if case == "extra nested 20 deep":
        log.info("deep", extra={"deep": nested(20)})
    elif case == "logger of 300 bytes":
        long_name = logging.getLogger("limits-test." + "é" * 150)
        long_name.info("long name")
    elif case == "2000 args":
        log.info("many %s", list(range(2000)))
    elif case == "70 KB template":
        log.info("x" * 70_000 + " %s", 1)
    else:
        log.info("loop", extra={"loop": self_containing()})
    log.info("after")
    assert handler.writer.flush(timeout=30)
    report = handler.report
    assert (report.stored, report.dropped, report.lost, report.error) == (2, 0, 0, None)
    first, after = client.read(handler.session_id).entries
    assert after.message == "after"
    if case == "extra nested 20 deep":
        assert levels(first.fields["deep"]) == 15  # + 1 for the field itself: 16
        assert "'n': {'n': " in str(first.fields["deep"])  # the rest as its repr
    elif case == "logger of 300 bytes":
        assert len(first.logger.encode()) <= 256 and first.logger.startswith("limits-test.é")
    elif case == "2000 args":
        (args,) = first.fields["args"]  # type: ignore[misc]
        assert isinstance(args, list) and args[:3] == [0, 1, 2]
        assert count(first.fields) - 1 == 1_000  # 1 + 1 + 997 numbers + 1 marker
        assert args[-1] == "<1003 more values>"
        assert first.message.startswith("many [0, 1, 2,")  # the message is whole
    elif case == "70 KB template":
        assert len(first.format.encode()) <= 64 << 10 and first.format.endswith("…[cut]")
        assert first.message == "x" * 70_000 + " 1"
    else:
        assert first.fields["loop"] == {"name": "loop", "self": "{'name': 'loop', 'self': {...}}"}


def test_a_record_over_the_entry_size_is_cut_to_fit(
    client: sessionlog.Client, logger: tuple[logging.Logger, sessionlog.Handler]
) -> None:
    log, handler = logger
    log.info("big %s", "y" * (2 << 20))
    log.info("big fields", extra={"blob": "z" * (2 << 20)})
    log.info("after")
    assert handler.writer.flush(timeout=30)
    assert (handler.report.stored, handler.report.dropped) == (3, 0)
    message, fields, after = client.read(handler.session_id).entries
    assert message.message.startswith("big yyy") and message.message.endswith("…[cut]")
    assert "blob" not in fields.fields and "sessionlog.fields_left_out" in fields.fields
    assert after.message == "after"


@pytest.mark.parametrize(
    "entry",
    [
        Entry("deep", fields={"deep": nested(20)}),
        Entry("deep 17", fields={"deep": nested(16)}),
        Entry("long name", logger="l" * 300),
        Entry("many", fields={"args": list(range(2000))}),
        Entry("long format", format="f" * 70_000),
        Entry("bad trace id", trace_id=b"\x01" * 5),
        Entry("bad span id", span_id=b"\x01" * 9),
    ],
    ids=lambda entry: entry.message,
)
def test_an_entry_over_a_limit_is_dropped_at_write_and_later_ones_are_stored(
    client: sessionlog.Client, entry: Entry
) -> None:
    with client.writer(app_name="limits", options=WriterOptions(linger=0)) as writer:
        assert writer.write("before")
        assert not writer.write(entry)
        assert writer.write("after")
        assert writer.flush(timeout=30)
    report = writer.report()
    assert (report.stored, report.dropped, report.lost, report.error) == (2, 1, 0, None)
    assert [e.message for e in client.read(writer.session_id).entries] == ["before", "after"]


def test_an_entry_containing_itself_is_refused_at_write(client: sessionlog.Client) -> None:
    with client.writer(app_name="limits", options=WriterOptions(linger=0)) as writer:
        with pytest.raises(ValueError, match="contains itself"):
            writer.write(Entry("loop", fields={"loop": self_containing()}))
        assert writer.write("after")
        assert writer.flush(timeout=30)
    assert writer.report().stored == 1


def test_an_entry_at_every_limit_is_stored(client: sessionlog.Client) -> None:
    entry = Entry(
        "at the limits",
        logger="l" * 256,
        format="f" * (64 << 10),
        # 16 levels; 16 + 1 + 983 values
        fields={"deep": nested(15), "wide": list(range(983))},
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
    )
    with client.writer(app_name="limits") as writer:
        assert writer.write(entry)
        assert writer.flush(timeout=30)
    assert writer.report().stored == 1
    (stored,) = client.read(writer.session_id).entries
    assert levels(stored.fields["deep"]) == 15 and stored.logger == "l" * 256


def test_a_batch_the_server_refuses_is_split_down_to_the_refused_entry(tmp_path: Path) -> None:
    """The server's names are shorter than the options say: the writer's
    check passes the entry, the server refuses its batch, and the writer
    isolates it and stores the others, in order."""
    server = ServerProcess(tmp_path, "--max-name-length", "10")
    server.start()
    try:
        with server.client() as client:
            writer = client.writer(app_name="split", options=WriterOptions(linger=1.0))
            for n in range(9):
                assert writer.write(Entry(f"entry {n}", logger="long-logger" if n == 6 else "ok"))
            assert writer.flush(timeout=30)
            report = writer.close()
            assert (report.stored, report.dropped, report.lost, report.error) == (8, 0, 1, None)
            assert report.last_refusal is not None
            assert report.last_refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-name-length" in report.last_refusal.details
            messages = [e.message for e in client.read(writer.session_id).entries]
            assert messages == [f"entry {n}" for n in range(9) if n != 6]
    finally:
        server.stop()
