#!/usr/bin/env bash
# CI: a smoke run of `sessionlog-bench` so it keeps working: every workload
# for a fraction of a second through scripts/bench.sh (which also checks
# the table it prints), then `store` alone. The debug binaries, each run
# against its own local server on 127.0.0.1:0; no thresholds: these
# figures mean nothing on a debug build. Uses target/debug/sessionlog and
# target/debug/sessionlog-bench (built by the tests; built here when
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog
tool=${CARGO_TARGET_DIR:-target}/debug/sessionlog-bench
if [[ ! -x $bin ]]; then
  cargo build --locked -p sessionlog --bin sessionlog
fi
if [[ ! -x $tool ]]; then
  cargo build --locked -p sessionlog-bench
fi

table=$(mktemp)
trap 'rm -f "$table"' EXIT
BENCH_BIN=$bin BENCH_TOOL=$tool BENCH_RUNS=1 BENCH_DURATION=300ms BENCH_WARMUP=100ms BENCH_CATCH_UP=2000 \
  BENCH_MEMORY_ENTRIES=5000 BENCH_SESSIONS=20 BENCH_SESSION_ENTRIES=100 BENCH_FOOTPRINT_SESSIONS=50 \
  BENCH_FOOTPRINT_ENTRIES=20 BENCH_SEARCH_SESSIONS=20 BENCH_SEARCH_ENTRIES=50 \
  BENCH_CHURN_DURATION=3s BENCH_CHURN_RETAINED=20 BENCH_CHURN_ENTRIES=50 BENCH_CHURN_SAMPLE=250ms \
  BENCH_PRUNE_SESSIONS=40 BENCH_PRUNE_ENTRIES=5 BENCH_PRUNE_COUNT=10 \
  timeout 300 bash scripts/bench.sh >"$table"
cat "$table"
rows=$(grep -c '^| [a-z]' "$table" || true)
if [[ $rows -lt 48 ]]; then
  echo "bench smoke: the table has $rows workload rows, not 48" >&2
  exit 1
fi
timeout 60 "$tool" store --count 10000 --warmup 0s
