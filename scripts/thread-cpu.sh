#!/usr/bin/env bash
# Where a server's CPU goes, by thread, under one `sessionlog-bench ingest`
# run: starts a release server on a free loopback port with a fresh data
# dir, runs the bench against it with the arguments given, and prints the
# server CPU per append of each kind of thread (tokio's workers and
# blocking pool, which share the name tokio-rt-worker; the committer,
# sessionlog-comm, as the kernel cuts sessionlog-commit; sled's I/O pool,
# sled-io-N), read from /proc/PID/task/*/stat before and after. sled
# starts extra I/O threads under load and they exit when idle; the CPU of
# one that exits during the run is missed, so the sled-io figure is a
# lower bound.
#
#   scripts/thread-cpu.sh --batch 1 --concurrency 16 --duration 5s
#   FSYNC=always scripts/thread-cpu.sh --batch 1 --concurrency 1
#
# Needs the release binaries (scripts/bench.sh builds them) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/sessionlog}
tool=${BENCH_TOOL:-${CARGO_TARGET_DIR:-target}/release/sessionlog-bench}
fsync=${FSYNC:-interval}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data/db" --fsync "$fsync" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  "$bin" health --server "http://127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done

snapshot() {
  for task in /proc/"$pid"/task/*; do
    printf '%s %s\n' "$(tr ' ' '_' <"$task/comm")" "$(cut -d' ' -f14,15 "$task/stat")"
  done
}
snapshot >"$data/before"
"$tool" ingest --server "http://127.0.0.1:$port" --server-pid "$pid" --fsync "$fsync" --json "$@" \
  >"$data/run.json"
snapshot >"$data/after"

python3 - "$data" <<'PY'
import collections, json, re, sys

data = sys.argv[1]
run = json.loads(open(f"{data}/run.json").read().splitlines()[0])
appends = run["appends"] + run.get("warmup_entries", 0) / max(1, run["params"]["batch"])
ticks_per_second = 100  # USER_HZ


def load(name):
    by_kind = collections.Counter()
    for line in open(f"{data}/{name}"):
        comm, user, system = line.split()
        by_kind[re.sub(r"-\d+$", "", comm)] += int(user) + int(system)
    return by_kind


before, after = load("before"), load("after")
print(f"{run['entries_per_second']:,.0f} appends/s; server CPU per append, by thread:")
total = 0.0
for kind in sorted(set(before) | set(after)):
    micros = (after[kind] - before[kind]) * 1e6 / ticks_per_second / appends
    total += micros
    if micros >= 0.5:
        print(f"  {kind:<20} {micros:7.1f} µs")
print(f"  {'all threads':<20} {total:7.1f} µs")
PY
