"""At exit with the server down, a program waits about one `close_timeout`
(logging.shutdown's flush and close share it), not one for each."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import sessionlog

SCRIPT = """
import logging, sys, time
import sessionlog
handler = sessionlog.Handler(sessionlog.Client(sys.argv[1]), close_timeout=2.0)
logging.getLogger().addHandler(handler)
logging.getLogger("app").warning("the server is down")
print(time.time(), flush=True)
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_exit_with_the_server_down_waits_one_close_timeout() -> None:
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, f"127.0.0.1:{closed_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    ended = time.time()
    assert process.returncode == 0, process.stderr
    shutdown = ended - float(process.stdout.split()[0])
    assert 1.5 < shutdown < 2.0 + 1.0, f"exit took {shutdown:.2f} s"


def test_client_close_closes_its_writers_under_one_deadline() -> None:
    client = sessionlog.Client(f"127.0.0.1:{closed_port()}")
    writers = [client.writer(app_name=f"down-{n}") for n in range(3)]
    for writer in writers:
        assert writer.write("never stored")
    started = time.monotonic()
    client.close(writer_timeout=1.0)
    took = time.monotonic() - started
    assert took < 1.0 + 0.7, f"close took {took:.2f} s for 3 writers"
    assert [w.report().lost for w in writers] == [1, 1, 1]
