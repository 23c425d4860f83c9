#!/usr/bin/env bash
# The standard benchmark set (issue #9): builds the release binaries
# (`sessionlog`, the server, and `sessionlog-bench`, the load), runs each
# workload BENCH_RUNS times (a fresh local server and database per run), and
# prints one markdown table to stdout: median [min..max], the reference
# figure measured elsewhere, sessionlog / reference, the target, and whether
# the median meets it. Progress goes to stderr. About 5 minutes on 2 cores,
# plus the churn workload's BENCH_CHURN_DURATION.
#
#   BENCH_DURATION=5s         how long each timed workload measures
#   BENCH_WARMUP=1s           unmeasured load before each ingest run
#   BENCH_RUNS=3              runs per workload
#   BENCH_CATCH_UP=200000     entries a catching-up follower reads
#   BENCH_MEMORY_ENTRIES=1000000  entries of the memory workload
#   BENCH_SESSIONS=10000      sessions of the retained-sessions workload
#   BENCH_SESSION_ENTRIES=1000    entries in each of them
#   BENCH_FOOTPRINT_SESSIONS=1000 sessions the log corpus (bench/corpus/) is
#                             spread over in the footprint workload
#   BENCH_FOOTPRINT_ENTRIES=1000  entries in each session of the second
#                             footprint workload (the same sessions, longer)
#   BENCH_SEARCH_SESSIONS=1000   sessions of the search workload
#   BENCH_SEARCH_ENTRIES=1000     entries in each of them (corpus lines)
#   BENCH_PRUNE_SESSIONS=10000    sessions stored before the prune workload's
#                             restart
#   BENCH_PRUNE_ENTRIES=100   corpus lines in each of them
#   BENCH_PRUNE_COUNT=2500    sessions the restarted server's retention prunes
#   BENCH_CHURN_DURATION=30m  how long the churn workload starts, fills and
#                             ends sessions (run once, whatever BENCH_RUNS)
#   BENCH_CHURN_RETAINED=1000 sessions its server's retention keeps
#   BENCH_CHURN_ENTRIES=1000  corpus lines in each of its sessions
#   BENCH_CHURN_SAMPLE=10s    how often it measures the data dir
#   BENCH_TEMP_DIR=DIR        where the databases go (default: the system's
#                             temp dir; use the disk you deploy on)
#   BENCH_OUT=DIR             keep each workload's JSON lines there
#   BENCH_BIN=PATH            use this sessionlog binary (the server under
#                             test) instead of building the release one (CI
#                             smoke-tests the script so)
#   BENCH_TOOL=PATH           likewise for the sessionlog-bench binary
#
# Needs cargo and python3 (which turns the JSON into the table).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-5s}
warmup=${BENCH_WARMUP:-1s}
runs=${BENCH_RUNS:-3}
catch_up=${BENCH_CATCH_UP:-200000}
memory_entries=${BENCH_MEMORY_ENTRIES:-1000000}
sessions=${BENCH_SESSIONS:-10000}
session_entries=${BENCH_SESSION_ENTRIES:-1000}
footprint_sessions=${BENCH_FOOTPRINT_SESSIONS:-1000}
footprint_entries=${BENCH_FOOTPRINT_ENTRIES:-1000}
search_sessions=${BENCH_SEARCH_SESSIONS:-1000}
search_entries=${BENCH_SEARCH_ENTRIES:-1000}
prune_sessions=${BENCH_PRUNE_SESSIONS:-10000}
prune_entries=${BENCH_PRUNE_ENTRIES:-100}
prune_count=${BENCH_PRUNE_COUNT:-2500}
churn_duration=${BENCH_CHURN_DURATION:-30m}
churn_retained=${BENCH_CHURN_RETAINED:-1000}
churn_entries=${BENCH_CHURN_ENTRIES:-1000}
churn_sample=${BENCH_CHURN_SAMPLE:-10s}
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/sessionlog}
tool=${BENCH_TOOL:-${CARGO_TARGET_DIR:-target}/release/sessionlog-bench}
if [[ -n ${BENCH_OUT:-} ]]; then
  out=$BENCH_OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
temp_dir=()
if [[ -n ${BENCH_TEMP_DIR:-} ]]; then
  temp_dir=(--temp-dir "$BENCH_TEMP_DIR")
fi

if [[ -z ${BENCH_BIN:-} ]]; then
  echo "== build sessionlog (release)" >&2
  cargo build --release --locked -p sessionlog --bin sessionlog >&2
fi
if [[ -z ${BENCH_TOOL:-} ]]; then
  echo "== build sessionlog-bench (release)" >&2
  cargo build --release --locked -p sessionlog-bench >&2
fi

# bench NAME ARGS...: one workload against fresh local servers run from
# $bin, its JSON lines into $out/NAME.jsonl.
bench() {
  local name=$1
  shift
  echo "== $name: sessionlog-bench $* --runs $runs" >&2
  timeout 900 "$tool" "$@" --server-bin "$bin" ${temp_dir[@]+"${temp_dir[@]}"} --runs "$runs" \
    --json >"$out/$name.jsonl"
}

started=$SECONDS
bench ingest-interval ingest --fsync interval --duration "$duration" --warmup "$warmup" --baseline
bench ingest-always ingest --fsync always --duration "$duration" --warmup "$warmup" --baseline
bench single-1 ingest --fsync always --batch 1 --concurrency 1 --duration "$duration" --warmup "$warmup"
bench single-16 ingest --fsync always --batch 1 --concurrency 16 --duration "$duration" --warmup "$warmup"
bench single-16-interval ingest --fsync interval --batch 1 --concurrency 16 --duration "$duration" \
  --warmup "$warmup"
bench single-16-own-sessions ingest --fsync interval --batch 1 --concurrency 16 --sessions 16 \
  --duration "$duration" --warmup "$warmup"
bench floor floor --concurrency 16 --duration "$duration" --warmup "$warmup"
bench follow-100 follow --followers 100 --rate 2000 --duration "$duration"
bench follow-100-per-entry follow --followers 100 --rate 2000 --pace per-entry --duration "$duration"
bench follow-1000 follow --followers 1000 --rate 200 --duration "$duration"
bench catch-up follow --catch-up "$catch_up"
bench memory follow --sessions 1000 --followers 100 --rate 100000 --batch 1000 \
  --count "$memory_entries"
bench footprint footprint --corpus bench/corpus --sessions "$footprint_sessions"
bench footprint-long footprint --corpus bench/corpus --sessions "$footprint_sessions" \
  --entries-per-session "$footprint_entries"
bench search search --corpus bench/corpus --sessions "$search_sessions" \
  --entries-per-session "$search_entries"
bench prune prune --corpus bench/corpus --sessions "$prune_sessions" \
  --entries-per-session "$prune_entries" --prune "$prune_count"

# Retained sessions, once (it writes sessions x entries): fill a server that
# runs from a directory of ours, end the sessions (as retention keeps them),
# stop it, and time its start-up on the full
# store (to SERVING, polled every 20 ms), its RSS then, and the disk it takes
# against the entries' encoded bytes. Writes $out/sessions.jsonl.
retained_sessions() {
  local dir sock pid started ready
  dir=$(mktemp -d "${BENCH_TEMP_DIR:-${TMPDIR:-/tmp}}/sessionlog-bench.XXXXXX")
  sock=$dir/sessionlog.sock
  serve() {
    "$bin" serve --listen "unix:$sock" --data-dir "$dir/data" --log-format json \
      2>>"$dir/serve.log" &
    pid=$!
    for _ in $(seq 1500); do
      "$bin" health --server "unix:$sock" >/dev/null 2>&1 && return 0
      sleep 0.02
    done
    echo "the server in $dir did not become healthy" >&2
    return 1
  }
  echo "== sessions: $sessions sessions x $session_entries entries, then a restart" >&2
  serve
  timeout 900 "$tool" ingest --server "unix:$sock" --server-pid "$pid" \
    --sessions "$sessions" --batch "$((session_entries < 1000 ? session_entries : 1000))" \
    --count "$((sessions * session_entries))" --warmup 0s --keep-sessions --json \
    >"$out/sessions-fill.jsonl"
  kill -TERM "$pid"
  wait "$pid"
  started=$(date +%s%N)
  serve
  ready=$(date +%s%N)
  local rss logical disk
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  logical=$("$bin" ls --server "unix:$sock" --json \
    | python3 -c 'import json, sys; print(sum(int(json.loads(l)["size_bytes"]) for l in sys.stdin))')
  kill -TERM "$pid"
  wait "$pid"
  disk=$(du -sb "$dir/data" | cut -f1)
  python3 -c 'import json, sys
ns, kib, disk, logical = map(int, sys.argv[1:])
print(json.dumps({"startup_seconds": ns / 1e9, "rss_mib": kib / 1024, "disk_bytes": disk,
                  "logical_bytes": logical, "disk_ratio": disk / max(logical, 1)}))' \
    "$((ready - started))" "$rss" "$disk" "$logical" >"$out/sessions.jsonl"
  rm -rf "$dir"
}
retained_sessions

# Churn, once (it runs for BENCH_CHURN_DURATION): sessions started, filled
# with corpus lines and ended while retention prunes the oldest; the data
# dir sampled against the compressed data retained. Bounded by its
# duration plus 10 minutes (4 hours for a duration not in s, m or h).
churn_limit() {
  local d=$1
  case $d in
    *ms) echo 600 ;;
    *s) echo $((${d%s} + 600)) ;;
    *m) echo $((${d%m} * 60 + 600)) ;;
    *h) echo $((${d%h} * 3600 + 600)) ;;
    *) echo 14400 ;;
  esac
}
echo "== churn: sessionlog-bench churn --duration $churn_duration --retained $churn_retained" >&2
timeout "$(churn_limit "$churn_duration")" "$tool" churn --corpus bench/corpus \
  --duration "$churn_duration" --retained "$churn_retained" \
  --entries-per-session "$churn_entries" --sample-every "$churn_sample" --server-bin "$bin" \
  ${temp_dir[@]+"${temp_dir[@]}"} --json >"$out/churn.jsonl" 2>"$out/churn-samples.txt"
echo "== done in $((SECONDS - started)) s" >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$out" "$runs" "$duration" "$catch_up" "$memory_entries" "$(nproc)" "$cpu" "$commit" \
  "$sessions" "$session_entries" "$footprint_sessions" "$footprint_entries" "$search_sessions" \
  "$search_entries" "$churn_duration" "$churn_retained" "$churn_entries" "$prune_sessions" \
  "$prune_entries" "$prune_count" <<'PY'
import json
import sys
from pathlib import Path

(out, runs, duration, catch_up, memory_entries, cores, cpu, commit, sessions, session_entries,
 footprint_sessions, footprint_entries, search_sessions, search_entries, churn_duration,
 churn_retained, churn_entries, prune_sessions, prune_entries, prune_count) = sys.argv[1:]


def spread(name, key):
    """(median, min, max) of a figure: the summary line, or the only run."""
    lines = [json.loads(line) for line in Path(out, f"{name}.jsonl").read_text().splitlines()]
    summary = [line for line in lines if line.get("summary")]
    if summary:
        return tuple(summary[0][part][key] for part in ("median", "min", "max"))
    return (lines[0][key],) * 3


# How each kind of figure reads: (number, unit); the unit is written once,
# after the median.
def rate(value):
    return f"{value:,.0f}", "/s"


def ms(micros):
    return f"{micros / 1000:.2f}", " ms"


def us(value):
    return f"{value:.2f}", " µs"


def mib(value):
    return f"{value:.1f}", " MiB"


def megabytes(value):
    return f"{value:,.0f}", " MB/s"


def ratio(value):
    return f"{value:.2f}", "x"


def cell(show, median, low, high):
    number, unit = show(median)
    return f"{number}{unit} [{show(low)[0]}..{show(high)[0]}]"


rows = []


def row(workload, name, key, show, reference=None, reference_text="", target=None):
    """target: (text, predicate on the median)."""
    median, low, high = spread(name, key)
    ours = cell(show, median, low, high)
    against = f"{median / reference:.2f}x" if reference else ""
    met = ""
    if target:
        met = "yes" if target[1](median) else "no"
    rows.append((workload, ours, reference_text, against, target[0] if target else "", met))


row("ingest, --fsync interval, 4 clients, batches of 1,000 x 200 B: entries/s",
    "ingest-interval", "entries_per_second", rate,
    170_000, "170,000/s (Redis 7 Streams, AOF everysec)",
    ("≥ 170,000/s", lambda v: v >= 170_000))
row("same: server CPU per entry", "ingest-interval", "server_cpu_us_per_entry", us,
    4.0, "4 µs (Redis, AOF everysec)", ("≤ 4 µs", lambda v: v <= 4.0))
row("same: append p99 (a batch of 1,000)", "ingest-interval", "append_p99_us", ms)
row("raw sled, the same entries, one key each, flushed every 200 ms",
    "ingest-interval", "store_entries_per_second", rate,
    80_000, "75,000-85,000/s (raw sled 0.34, apply_batch(1000))")
row("service / raw sled (same run)", "ingest-interval", "ratio_to_store", ratio)
row("ingest, --fsync always, 4 clients, batches of 1,000 x 200 B: entries/s",
    "ingest-always", "entries_per_second", rate,
    80_000, "80,000/s (Redis 7 Streams, AOF always)",
    ("≥ 80,000/s", lambda v: v >= 80_000))
row("raw sled, the same entries, flushed after each batch",
    "ingest-always", "store_entries_per_second", rate)
row("single-entry appends, --fsync always, 1 client", "single-1", "entries_per_second", rate)
one_client = spread("single-1", "entries_per_second")[0]
sixteen, low, high = spread("single-16", "entries_per_second")
rows.append((
    "single-entry appends, --fsync always, 16 clients (group commit)",
    cell(rate, sixteen, low, high),
    "", f"{sixteen / one_client:.2f}x of 1 client" if one_client else "",
    "≥ 5x one client", "yes" if one_client and sixteen >= 5 * one_client else "no",
))
row("single-entry appends, --fsync interval, 16 clients: appends/s",
    "single-16-interval", "entries_per_second", rate,
    91_900, "91,900/s (Redis 7 Streams, XADD, 16 clients)",
    ("≥ 40,000/s", lambda v: v >= 40_000))
row("same: server CPU per append", "single-16-interval", "server_cpu_us_per_append", us,
    11.0, "11 µs (Redis XADD)", ("≤ 25 µs", lambda v: v <= 25.0))
row("same, each client its own session (16 sessions): appends/s",
    "single-16-own-sessions", "entries_per_second", rate)
row("same: server CPU per append", "single-16-own-sessions", "server_cpu_us_per_append", us)
row("floor: GetSession (answered from memory, no store), 16 clients: calls/s",
    "floor", "calls_per_second", rate)
row("same: server CPU per call (gRPC, HTTP/2, TCP, runtime: what any small call costs)",
    "floor", "server_cpu_us_per_call", us)
row("follow, 100 followers x 2,000 entries/s (--pace tick: what is due each ms in one append): append-to-receive p50",
    "follow-100", "latency_p50_us", ms, 7_000, "7 ms (Redis Streams)")
row("same: p99", "follow-100", "latency_p99_us", ms, 70_000, "70 ms (Redis Streams)",
    ("≤ 5 ms", lambda v: v <= 5_000))
row("follow, 100 followers x 2,000 single-entry appends/s (--pace per-entry): appends/s achieved",
    "follow-100-per-entry", "producer_appends_per_second", rate,
    target=("2,000/s (within 1%)", lambda v: v >= 1_980))
row("same: producer behind schedule, p99", "follow-100-per-entry", "producer_lag_p99_us", ms)
row("same: append-to-receive p50", "follow-100-per-entry", "latency_p50_us", ms,
    6_100, "6.1 ms (Redis Streams, XREAD BLOCK)")
row("same: p99", "follow-100-per-entry", "latency_p99_us", ms,
    26_000, "26 ms (Redis Streams, XREAD BLOCK)", ("≤ 5 ms", lambda v: v <= 5_000))
row("same: server CPU per delivered entry", "follow-100-per-entry",
    "server_cpu_us_per_delivered", us, 3.1, "3.1 µs (Redis Streams)",
    ("≤ 3 µs", lambda v: v <= 3.0))
row("same: server CPU per append", "follow-100-per-entry", "server_cpu_us_per_append", us)
row("follow, 1,000 followers x 200 entries/s: p99", "follow-1000", "latency_p99_us", ms,
    target=("≤ 20 ms", lambda v: v <= 20_000))
row(f"catch-up: one follower reads {int(catch_up):,} stored entries", "catch-up",
    "catch_up_entries_per_second", rate, target=("≥ 500,000/s", lambda v: v >= 500_000))
row("memory: server RSS idle, after start-up", "ingest-interval", "server_idle_rss_mib", mib,
    target=("≤ 20 MB", lambda v: v <= 20))
row(f"memory: {int(memory_entries):,} entries in 1,000 sessions + 100 followers, peak RSS",
    "memory", "server_peak_rss_mib", mib, target=("≤ 64 MB", lambda v: v <= 64))



def seconds(value):
    return f"{value:.2f}", " s"


row(f"sessions: {int(sessions):,} retained (ended) x {int(session_entries):,} entries: start-up to SERVING",
    "sessions", "startup_seconds", seconds, target=("≤ 1 s", lambda v: v <= 1))
row("same: RSS after start-up", "sessions", "rss_mib", mib,
    target=("≤ 150 MB", lambda v: v <= 150))
row("same: disk / encoded entry bytes", "sessions", "disk_ratio", ratio,
    target=("≤ 3x", lambda v: v <= 3))
corpus_mb = spread("footprint", "corpus_bytes")[0] / 1e6
row(f"footprint: the real log corpus ({corpus_mb:.1f} MB, bench/corpus/), a line per entry, "
    f"batches of 100 into {int(footprint_sessions):,} sessions, ended, server stopped: "
    "data dir blocks allocated / encoded entry byte",
    "footprint", "disk_per_encoded_byte", ratio,
    0.25, "0.25 (issue 20 target; aim 0.1)", ("≤ 0.25x", lambda v: v <= 0.25))
row("same: data dir blocks allocated / raw message byte", "footprint", "disk_per_raw_byte", ratio)
row("same: data dir file sizes / encoded entry byte", "footprint", "file_size_per_encoded_byte", ratio)
row("same: ingest entries/s (4 clients)", "footprint", "entries_per_second", rate)
row(f"footprint, longer sessions: {int(footprint_sessions):,} sessions x {int(footprint_entries):,} "
    "corpus lines each (read on from each one's place in the corpus), ended, server stopped: "
    "data dir blocks allocated / encoded entry byte",
    "footprint-long", "disk_per_encoded_byte", ratio,
    0.25, "0.25 (issue 20 target; aim 0.1)", ("≤ 0.25x", lambda v: v <= 0.25))
row("same: data dir blocks allocated / raw message byte", "footprint-long", "disk_per_raw_byte", ratio)
row("same: data dir file sizes / encoded entry byte", "footprint-long", "file_size_per_encoded_byte", ratio)
search_mb = spread("search", "encoded_entry_bytes")[0] / 1e6
row(f"search: the corpus in {int(search_sessions):,} sealed sessions x {int(search_entries):,} entries "
    f"({search_mb:.0f} MB encoded), `contains` a common term (limit 100,000): time",
    "search", "common_seconds", seconds, target=("≤ 1 s", lambda v: v <= 1))
row("same: encoded MB examined per second", "search", "common_mb_per_second", megabytes)
row("same, a rare term (5 sessions): time", "search", "rare_seconds", seconds,
    target=("≤ 0.1 s", lambda v: v <= 0.1))
row("same: encoded MB examined per second", "search", "rare_mb_per_second", megabytes)
issue_prune = (int(prune_sessions), int(prune_count)) == (10_000, 2_500)
row(f"prune: {int(prune_sessions):,} ended sessions x {int(prune_entries):,} corpus lines, "
    f"restarted with retention keeping {int(prune_sessions) - int(prune_count):,}: SERVING to "
    f"{int(prune_count):,} pruned (metrics, polled every 5 ms)",
    "prune", "prune_seconds", seconds,
    *((0.5, "0.5 s (issue 20 target)", ("≤ 0.5 s", lambda v: v <= 0.5)) if issue_prune else ()))
row("same: serving line to last pruned line (server log)", "prune", "prune_log_seconds", seconds)
row("same: restart to SERVING", "prune", "restart_seconds", seconds)
row("same: data dir allocated after / before", "prune", "disk_allocated_after_per_before", ratio)
row("same: server peak RSS, restart and pruning", "prune", "server_peak_rss_mib", mib)
row(f"churn, {churn_duration}: sessions of {int(churn_entries):,} corpus lines started, filled "
    f"and ended by 4 clients while retention keeps {int(churn_retained):,}: data dir "
    "(allocated) / compressed data retained, max after the first quarter (1 run)",
    "churn", "allocated_per_compressed_max", ratio,
    2.0, "2 (issue 20 target)", ("≤ 2x", lambda v: v <= 2))
row("same: data dir (file sizes) / compressed data retained, max", "churn",
    "disk_per_compressed_max", ratio, target=("≤ 2x", lambda v: v <= 2))
row("same: at the end", "churn", "allocated_per_compressed_last", ratio)
row("same: ingest entries/s", "churn", "entries_per_second", rate)

print(f"sessionlog {commit}; {cores} cores ({cpu}), loopback; "
      f"median [min..max] of {runs} runs, {duration} each; ratio = sessionlog / reference")
print()
print("| workload | sessionlog | reference | ratio | target | met? |")
print("|---|---|---|---|---|---|")
for cells in rows:
    print("| " + " | ".join(cells) + " |")
PY
