#!/usr/bin/env bash
# CI for the Python client: a venv with examples/python/requirements.txt, the
# package clients/python installed into it (its stubs generated from proto/
# by the build), mypy --strict on the package, its pytest suite (which starts
# the real binary itself), then a real server on loopback and the examples:
# the producer, the follower (whole session, from a cursor, and across a
# server restart) and the OpenTelemetry SDK check, each compared with what it
# must print.
# Needs python3 (3.11+) with venv and pip; uses target/debug/sessionlog
# (built by `cargo test`; built here when missing; under $CARGO_TARGET_DIR
# when that is set).
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog
examples=examples/python

echo "== python: venv (target/python-venv)"
source .ci/python-venv.sh

# The venv's pinned setuptools and grpcio-tools build it (no build
# isolation): the same generator every run, and nothing fetched.
echo "== python: pip install ./clients/python"
timeout 300 "$py" -m pip install --disable-pip-version-check --quiet --no-build-isolation \
  --force-reinstall --no-deps ./clients/python
"$py" -m pip check

# Absolute paths for the steps run from clients/python (not resolved:
# the venv's python is a symlink, and it is the venv only by its own path).
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
py_abs=$(absolute "$py")

echo "== python: mypy --strict on the package"
(cd clients/python && timeout 300 "$py_abs" -m mypy --strict -p sessionlog)

if [[ ! -x $server_bin ]]; then
  echo "== python: building $server_bin"
  cargo build --locked --bin sessionlog
fi

# tests/test_tls.py makes its certificates with the openssl command line.
if ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq openssl >/dev/null
fi

echo "== python: pytest (clients/python/tests, against $server_bin)"
server_abs=$(absolute "$server_bin")
(cd clients/python && SESSIONLOG_BIN=$server_abs timeout 300 "$py_abs" -m pytest -q -p no:cacheprovider)

tmp=$(mktemp -d)
server_pid=""
background_pids=()
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for pid in "${background_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fail() {
  echo "python: FAILED: $*" >&2
  exit 1
}

# read_until FD LOG PATTERN: copies lines from FD to LOG until one contains
# PATTERN and leaves that line in $line; fails after 60 s without a line.
read_until() {
  local fd=$1 log=$2 pattern=$3
  while IFS= read -r -t 60 -u "$fd" line; do
    printf '%s\n' "$line" >>"$log"
    [[ $line == *"$pattern"* ]] && return 0
  done
  echo "no line containing '$pattern' (log: $log):" >&2
  cat "$log" >&2
  return 1
}

token_file=$tmp/token
printf 'ci-%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$token_file"
sock=$tmp/sessionlog.sock
server_log=$tmp/server.log
tcp_addr=""

# Starts the server on 127.0.0.1:0 and the Unix socket, and waits for its
# "serving" log line for each (the TCP one says which port it got). The log
# goes through a FIFO that a background `cat` keeps draining afterwards.
start_server() {
  rm -f "$tmp/server.fifo"
  mkfifo "$tmp/server.fifo"
  RUST_LOG=info "$server_bin" serve --data-dir "$tmp/data" --log-format json \
    --listen 127.0.0.1:0 --listen "unix:$sock" --auth-token-file "$token_file" \
    --shutdown-grace 5s 2>"$tmp/server.fifo" &
  server_pid=$!
  exec 3<"$tmp/server.fifo"
  read_until 3 "$server_log" '"serving"'
  local first=$line
  read_until 3 "$server_log" '"serving"'
  tcp_addr=$(printf '%s\n%s\n' "$first" "$line" | "$py" -c '
import json, sys
print(*[a for a in (json.loads(l)["fields"]["listen"] for l in sys.stdin) if not a.startswith("unix:")])')
  cat <&3 >>"$server_log" &
  background_pids+=($!)
  exec 3<&-
  echo "server pid $server_pid serving on $tcp_addr and unix:$sock"
}

# Stops the server with SIGTERM and requires a clean exit (status 0).
# A `sleep` is the deadline: whichever ends first wakes `wait -n`.
stop_server() {
  kill -TERM "$server_pid"
  sleep 30 &
  local deadline_pid=$! ended="" status=0
  wait -n -p ended "$server_pid" "$deadline_pid" || status=$?
  if [[ $ended != "$server_pid" ]]; then
    echo "the server is still running 30 s after SIGTERM; killing it" >&2
    kill -KILL "$server_pid"
    wait "$server_pid" || status=$?
  fi
  kill "$deadline_pid" 2>/dev/null || true
  wait "$deadline_pid" 2>/dev/null || true
  server_pid=""
  [[ $status == 0 ]] || fail "the server exited with status $status after SIGTERM (log: $(cat "$server_log"))"
}

run() { timeout 60 "$py" "$@" --token-file "$token_file"; }

echo "== python: start server ($server_bin)"
start_server

echo "== python: producer"
session_id=$(run "$examples/producer.py" --server "$tcp_addr")
echo "session $session_id"
[[ $session_id =~ ^[A-Za-z0-9._:-]{1,128}$ ]] || fail "producer printed '$session_id', not a session id"

echo "== python: producer without the token is refused"
if timeout 60 "$py" "$examples/producer.py" --server "$tcp_addr" >/dev/null 2>"$tmp/refused.err"; then
  fail "producer without a token succeeded"
fi
cat "$tmp/refused.err"
grep -q '^producer: UNAUTHENTICATED: ' "$tmp/refused.err" || fail "producer without a token: no UNAUTHENTICATED error"

# What the producer appended, as the follower prints it, then the end entry.
cat >"$tmp/expected" <<'EOF'
   1 INFO     build: fetching sources repo="sessionlog"
   2 DEBUG    build: cache hit for 12 crates count=12
   3 INFO     build: compiling
   4 WARN     test: slow test: follow_resumes seconds=4.5 test="follow_resumes"
   5 ERROR    test: flaky test retried attempt=2 passed=true
   6 INFO     deploy: uploaded 3 artifacts n=3 tags=["linux", "x86_64"]
   7 INFO     sessions: Session ended: done
EOF

echo "== python: follower (whole session)"
run "$examples/follower.py" --server "$tcp_addr" "$session_id" >"$tmp/follow.out" 2>"$tmp/follow.err" ||
  fail "follower exited with status $?: $(cat "$tmp/follow.err")"
cat "$tmp/follow.out" "$tmp/follow.err"
diff -u "$tmp/expected" "$tmp/follow.out" || fail "follower output differs from what the producer appended"
grep -qx 'session ended: done' "$tmp/follow.err" || fail "follower did not report the end"

# grpcio's default channel options: the socket's path, %-encoded, is the
# :authority (vendor/h2/PATCH.md).
echo "== python: follower (after seq 4, over the Unix socket, grpcio defaults)"
run "$examples/follower.py" --server "unix:$sock" --after 4 "$session_id" >"$tmp/follow-after.out" ||
  fail "follower --after 4 exited with status $?"
cat "$tmp/follow-after.out"
diff -u <(tail -n +5 "$tmp/expected") "$tmp/follow-after.out" || fail "follower --after 4 printed other entries than 5..7"

echo "== python: follower resumes across a server restart"
cli() { timeout 30 "$server_bin" "$@" --server "unix:$sock" --token-file "$token_file"; }
live_id=$(cli start --app resume-check)
printf 'one\ntwo\n' | cli append "$live_id" --logger before
mkfifo "$tmp/follower.fifo"
timeout 60 "$py" "$examples/follower.py" --server "unix:$sock" --token-file "$token_file" "$live_id" \
  >"$tmp/resume.out" 2>"$tmp/follower.fifo" &
follower_pid=$!
background_pids+=("$follower_pid")
exec 4<"$tmp/follower.fifo"
read_until 4 "$tmp/resume.err" "caught up at seq 2"
cat <&4 >>"$tmp/resume.err" &
follower_log_pid=$!
background_pids+=("$follower_log_pid")
exec 4<&-
stop_server # the open Follow ends with UNAVAILABLE; the follower retries
start_server
printf 'three\nfour\n' | cli append "$live_id" --logger after
cli end "$live_id" --reason restarted >/dev/null
follower_status=0
wait "$follower_pid" || follower_status=$?
wait "$follower_log_pid" # the rest of its stderr is in resume.err
cat "$tmp/resume.out" "$tmp/resume.err"
[[ $follower_status == 0 ]] || fail "follower exited with status $follower_status across the restart"
diff -u - <(sed -E 's/^ +[0-9]+ [A-Z]+ +//' "$tmp/resume.out") <<'EOF' || fail "follower did not print each entry once across the restart"
before: one
before: two
after: three
after: four
sessions: Session ended: restarted
EOF
grep -q 'resuming after seq 2' "$tmp/resume.err" || fail "follower did not report resuming from its cursor"

echo "== python: OpenTelemetry SDK -> OTLP intake"
run "$examples/otlp_sdk_check.py" --server "$tcp_addr" || fail "the OTLP check failed"

echo "== python: stop server"
stop_server
echo "== python: ok"
