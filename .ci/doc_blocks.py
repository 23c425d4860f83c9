#!/usr/bin/env python3
"""Runs the command blocks of README.md and the docs against a real server.

Every ```sh and ```console block in FILES carries a marker on the line
above it, which this script reads:

    <!-- ci: run plain -->     run against a server without tokens
    <!-- ci: run token -->     run against a server with a token file
                               `token` holding `s3cret`
    <!-- ci: skip: REASON -->  not run, for the reason given

A block without a marker fails the check, so a new block is either run or
consciously skipped; the blocks run are read from the files each time, so
what runs is exactly what the reader sees. `--check` only checks the
markers (no server, no binary).

How blocks run: each scenario has its own server (gRPC and HTTP on free
loopback ports, `target/debug/sessionlog`); the addresses the docs use
(`127.0.0.1:50051`, `localhost:50051`, `127.0.0.1:8080`) become the
server's, and SESSIONLOG_SERVER points the CLI at it. Blocks run in a
directory that links `proto/`, `examples/` and `clients/` and has `token`
(target/docs-work, kept between runs with the `.venv` a block makes);
HOME is target/docs-home, so `~/.grpcurl` is kept between runs too. `sessionlog` is
the built binary, and `cargo run [flags] -- ARGS` runs it too (the README
aliases `sl` to that); every other cargo command is cargo.

An sh block runs under `bash -e -o pipefail` with aliases on; a command
whose comment says `until stopped` must run and print, and is stopped
once it has; background jobs must exit 0 by the block's end. In a console
block each `$ ` line runs and must exit 0; when the documented output is
JSON, the real one must be JSON with the same error code (or none), and
`event: NAME` lines documented must be among the real ones.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["README.md", "docs/clients.md", "docs/http.md"]
MARKER = re.compile(r"^<!-- ci: (run (plain|token)|skip: .+) -->$")
FENCE = re.compile(r"^```(\w*)\s*$")
BLOCK_TIMEOUT = 300
TOKEN = "s3cret"


class Block:
    def __init__(self, path, line, lang, scenario, text):
        self.path, self.line, self.lang = path, line, lang
        self.scenario, self.text = scenario, text

    def where(self):
        return f"{self.path}:{self.line}"


def blocks():
    """Every runnable block, in order; exits on a block without a marker."""
    found, missing = [], []
    for name in FILES:
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            fence = FENCE.match(lines[index])
            if not fence:
                index += 1
                continue
            lang, start = fence.group(1), index
            end = start + 1
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if lang in ("sh", "console"):
                marker = MARKER.match(lines[start - 1]) if start > 0 else None
                if not marker:
                    missing.append(f"{name}:{start + 1}")
                elif marker.group(2):
                    text = "\n".join(lines[start + 1 : end]) + "\n"
                    found.append(Block(name, start + 1, lang, marker.group(2), text))
            index = end + 1
    if missing:
        sys.exit(
            "doc blocks: these blocks have no `<!-- ci: run plain|token -->` or "
            "`<!-- ci: skip: REASON -->` line above them: " + ", ".join(missing)
        )
    return found


class Server:
    """`sessionlog serve` on free loopback ports, its log drained to a file."""

    def __init__(self, binary, work, token_file):
        self.log_path = work / "server.log"
        args = [
            str(binary), "serve", "--data-dir", str(work / "data"),
            "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--log-format", "json", "--shutdown-grace", "5s",
        ]
        if token_file:
            args += ["--auth-token-file", str(token_file)]
        env = dict(os.environ, RUST_LOG="info")
        self.process = subprocess.Popen(args, stderr=subprocess.PIPE, env=env, text=True)
        self.grpc = self.http = None
        log = self.log_path.open("w", encoding="utf-8")
        deadline = time.monotonic() + 60
        for line in self.process.stderr:
            log.write(line)
            fields = json.loads(line).get("fields", {})
            if fields.get("message") == "serving":
                self.grpc = fields["listen"]
            elif fields.get("message") == "serving http":
                self.http = fields["listen"]
            if (self.grpc and self.http) or time.monotonic() > deadline:
                break
        if not (self.grpc and self.http):
            log.close()
            self.stop()
            sys.exit(f"doc blocks: the server did not start: {self.log_path.read_text()}")
        self.drain = threading.Thread(target=self._drain, args=(log,), daemon=True)
        self.drain.start()

    def _drain(self, log):
        for line in self.process.stderr:
            log.write(line)
        log.close()

    def stop(self):
        """SIGTERM; the server must exit 0 within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        return status


SH_PRELUDE = r"""
shopt -s expand_aliases
# A block that fails leaves no background job behind (`sl tail -f` would
# wait for an end that never comes).
trap 'status=$?; kill $(jobs -p) 2>/dev/null || true; exit "$status"' EXIT
# Runs a command meant to run until stopped: it must print, and still be
# running once it has; then it is stopped.
until_stopped() {
  local out pid
  out=$(mktemp)
  # Its own process group (job control), so stopping it stops the
  # processes it started too.
  set -m
  "$@" >"$out" &
  pid=$!
  set +m
  while [[ ! -s $out ]] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  cat "$out"
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && echo "until_stopped: '$*' ended by itself" >&2
    return 1
  fi
  kill -- "-$pid"
  wait "$pid" || true
}
"""

SH_EPILOGUE = r"""
for job in $(jobs -p); do wait "$job"; done
"""


def shell_script(text):
    """An sh block as a script: `until stopped` lines wrapped (see above)."""
    out, continued = [], False
    for line in text.splitlines():
        stopped = re.search(r"\s+#[^'\"]*\buntil stopped\b[^'\"]*$", line)
        if not continued and stopped:
            # Through eval, so an alias in the command still expands.
            line = "until_stopped eval " + shlex.quote(line[: stopped.start()])
        continued = line.rstrip().endswith("\\")
        out.append(line)
    return SH_PRELUDE + "\n".join(out) + "\n" + SH_EPILOGUE


def console_steps(text):
    """(command, documented output lines) for each `$ ` line."""
    steps = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def json_line(line):
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def compare(documented, actual):
    """Why the output does not match the documented one, or None."""
    actual_lines = actual.splitlines()
    for index, line in enumerate(documented):
        expected = json_line(line)
        if expected is None:
            continue
        got = json_line(actual_lines[index]) if index < len(actual_lines) else None
        if got is None:
            return f"line {index + 1} is not JSON: {actual_lines[index:index + 1]}"
        want_code = expected.get("error", {}).get("code")
        got_code = got.get("error", {}).get("code") if isinstance(got.get("error"), dict) else None
        if want_code != got_code:
            return f"line {index + 1}: error code {got_code}, documented {want_code}"
    events = {line for line in documented if line.startswith("event: ")}
    missing = events - set(actual_lines)
    if missing:
        return f"missing {sorted(missing)}"
    return None


def substitute(text, server):
    for documented in ("127.0.0.1:50051", "localhost:50051"):
        text = text.replace(documented, server.grpc)
    return text.replace("127.0.0.1:8080", server.http)


def shell(args, cwd, env):
    """Runs `args` in a process group of its own; on the timeout the whole
    group is killed, so nothing it started outlives it. (status, stdout,
    stderr)"""
    process = subprocess.Popen(
        args, cwd=cwd, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, stdout, stderr


def run(block, server, env, cwd):
    text = substitute(block.text, server)
    if block.lang == "sh":
        script = cwd / "block.sh"
        script.write_text(shell_script(text), encoding="utf-8")
        status, stdout, stderr = shell(["bash", "-e", "-o", "pipefail", str(script)], cwd, env)
        sys.stdout.write(stdout[-4000:])
        if status != 0:
            return f"exit status {status}: {stderr[-4000:]}"
        return None
    for command, documented in console_steps(text):
        print(f"$ {command}")
        status, stdout, stderr = shell(["bash", "-o", "pipefail", "-c", command], cwd, env)
        sys.stdout.write(stdout[-4000:].rstrip("\n") + "\n")
        if status != 0:
            return f"`{command}`: exit status {status}: {stderr[-2000:]}"
        mismatch = compare(documented, stdout)
        if mismatch:
            return f"`{command}`: the output differs from the documented one: {mismatch}"
    return None


def scratch(base, binary):
    """The directory blocks run in, and their environment. It is kept in
    target/ between runs, so the venv a block makes is made once."""
    work = ROOT / "target" / "docs-work"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("proto", "examples", "clients"):
        link = work / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    (work / "token").write_text(TOKEN + "\n", encoding="utf-8")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "sessionlog").symlink_to(binary)
    real_cargo = shutil.which("cargo") or "cargo"
    cargo = bin_dir / "cargo"
    cargo.write_text(
        "#!/usr/bin/env bash\n"
        "# `cargo run [flags] -- ARGS` runs the built binary; the rest is cargo.\n"
        'if [[ ${1-} == run ]]; then\n'
        '  while [[ $# -gt 0 && $1 != -- ]]; do shift; done\n'
        '  shift\n'
        f'  exec "{binary}" "$@"\n'
        "fi\n"
        f'exec "{real_cargo}" "$@"\n',
        encoding="utf-8",
    )
    cargo.chmod(0o755)
    home = ROOT / "target" / "docs-home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")
    for name in ("SESSIONLOG_SERVER", "SESSIONLOG_TOKEN_FILE", "PYTHONPATH"):
        env.pop(name, None)
    return work, env


def main():
    found = blocks()
    if sys.argv[1:] == ["--check"]:
        print(f"doc blocks: {len(found)} blocks to run in {len(FILES)} files, every block marked")
        return
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve() / "debug" / "sessionlog"
    if not binary.exists():
        sys.exit(f"doc blocks: {binary} is missing; build it first")
    failures, passed = [], 0
    for scenario in ("plain", "token"):
        with tempfile.TemporaryDirectory() as temp:
            base = Path(temp)
            work, env = scratch(base, binary)
            token_file = work / "token" if scenario == "token" else None
            server = Server(binary, base, token_file)
            env["SESSIONLOG_SERVER"] = f"http://{server.grpc}"
            try:
                for block in (b for b in found if b.scenario == scenario):
                    print(f"== {block.where()} ({block.lang}, {scenario})", flush=True)
                    try:
                        failure = run(block, server, env, work)
                    except subprocess.TimeoutExpired:
                        failure = f"still running after {BLOCK_TIMEOUT} s"
                    if failure:
                        failures.append(f"{block.where()}: {failure}")
                        print(f"FAILED: {failure}", flush=True)
                    else:
                        passed += 1
            finally:
                status = server.stop()
            if status != 0:
                failures.append(
                    f"the {scenario} server exited with {status}: "
                    f"{server.log_path.read_text()[-4000:]}"
                )
    print(f"docs: {passed} passed, {len(failures)} failed")
    if failures:
        sys.exit("\n".join(failures))


if __name__ == "__main__":
    main()
