"""The real `sessionlog` binary as a pytest fixture.

`ServerProcess` serves on 127.0.0.1:0 and a Unix socket in a temporary
directory, with a token file, and knows it is up from its "serving" log
lines (read by a thread, so nothing polls or sleeps). `restart()` stops it
with SIGTERM and starts it again on the same data and socket. The binary is
$SESSIONLOG_BIN, else target/debug/sessionlog of this repository (under
$CARGO_TARGET_DIR when that is set).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionlog

REPOSITORY = Path(__file__).resolve().parents[3]
START_TIMEOUT_SECONDS = 30.0
TOKEN = "python-tests-token"


def server_binary() -> Path:
    if "SESSIONLOG_BIN" in os.environ:
        return Path(os.environ["SESSIONLOG_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPOSITORY / "target"))
    return target / "debug" / "sessionlog"


class ServerProcess:
    def __init__(self, directory: Path, *extra_args: str) -> None:
        self.directory = directory
        self.extra_args = extra_args
        self.socket = directory / "sessionlog.sock"
        self.token_file = directory / "token"
        self.token_file.write_text(f"# the tests' token\n{TOKEN}\n", encoding="utf-8")
        self.tcp_address = ""
        self.log: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._serving: list[str] = []
        self._changed = threading.Condition()

    @property
    def unix_address(self) -> str:
        return f"unix:{self.socket}"

    def client(self, server: str | None = None, **options: object) -> sessionlog.Client:
        """A client of this server with the token (TCP unless told)."""
        options.setdefault("token_file", self.token_file)
        return sessionlog.Client(server or self.tcp_address, **options)  # type: ignore[arg-type]

    def start(self) -> None:
        binary = server_binary()
        if not binary.is_file():
            pytest.fail(f"{binary} not found: build it with `cargo build --bin sessionlog`")
        self._serving = []
        self.process = subprocess.Popen(
            [
                str(binary), "serve",
                "--data-dir", str(self.directory / "data"),
                "--listen", "127.0.0.1:0",
                "--listen", self.unix_address,
                "--auth-token-file", str(self.token_file),
                "--log-format", "json",
                "--shutdown-grace", "5s",
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": "info"},
        )  # fmt: skip
        threading.Thread(target=self._read_log, args=(self.process,), daemon=True).start()
        with self._changed:
            if not self._changed.wait_for(
                lambda: len(self._serving) >= 2 or self._exited(), START_TIMEOUT_SECONDS
            ) or len(self._serving) < 2:
                self.stop()
                pytest.fail("the server did not start:\n" + "\n".join(self.log[-30:]))
        self.tcp_address = next(a for a in self._serving if not a.startswith("unix:"))

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _read_log(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._changed:
                self.log.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("fields", {}).get("message") == "serving":
                    self._serving.append(record["fields"]["listen"])
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def stop(self) -> None:
        """SIGTERM, and a clean exit within 30 s."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("the server was still running 30 s after SIGTERM")
        assert status == 0, f"the server exited with {status}:\n" + "\n".join(self.log[-30:])

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A short path: a Unix socket's path is limited to about 100 bytes.
    process = ServerProcess(tmp_path_factory.mktemp("sl"))
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[sessionlog.Client]:
    with server.client() as connected:
        yield connected
