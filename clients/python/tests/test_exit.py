"""At exit with the server down, a program waits about one `close_timeout`
(logging.shutdown's flush and close share it), not one for each."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

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
