"""A Handler (and its client) made before os.fork keeps working in the
child: the child gets a new channel and a writer thread of its own."""

from __future__ import annotations

import logging
import os
import select

import sessionlog
from sessionlog import WriterOptions


def wait_for_child(pid: int, timeout: float) -> int:
    """The child's exit status; fails after `timeout` seconds."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"the child {pid} was still running after {timeout} s")
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    finally:
        os.close(pidfd)


def test_records_logged_in_a_forked_child_are_stored(client: sessionlog.Client) -> None:
    handler = sessionlog.Handler(client, app_name="forking", options=WriterOptions(linger=0))
    log = logging.getLogger("fork-test")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info("parent before")
        assert handler.writer.flush(timeout=30)
        pid = os.fork()
        if pid == 0:  # the child: exits 0 only when its records were stored
            status = 1
            try:
                for n in range(3):
                    log.info("child %d", n)
                if handler.writer.flush(timeout=20) and handler.report.stored == 3:
                    status = 0
            finally:
                os._exit(status)
        log.info("parent after")
        assert wait_for_child(pid, 40) == 0
        assert handler.writer.flush(timeout=30)
    finally:
        log.removeHandler(handler)
        handler.close()
    messages = sorted(entry.message for entry in client.read(handler.session_id).entries)
    assert messages == ["child 0", "child 1", "child 2", "parent after", "parent before"]
    assert handler.report.stored == 2  # the parent's own
