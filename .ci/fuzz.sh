#!/usr/bin/env bash
# CI: the fuzz crate. Checks it, then builds every target as libFuzzer
# builds it (SanitizerCoverage through the stable compiler's -C flags; no
# nightly, no cargo-fuzz) and runs each one for FUZZ_SECONDS (default 15),
# starting from its seeds in fuzz/seeds/<target>. A crash fails the step
# and leaves the input under target/fuzz/artifacts/<target>/ (under
# $CARGO_TARGET_DIR when that is set). Prints the executions per target.
# libfuzzer-sys compiles libFuzzer, even for `cargo check`: Debian's g++ is
# installed here when there is no C++ compiler (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-15}"
targets=(requests raw_entry http_query)

if ! command -v c++ >/dev/null 2>&1; then
  echo "-- installing Debian's g++ (libFuzzer is C++)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq g++ >/dev/null
fi

echo "-- cargo check --locked -p sessionlog-fuzz"
cargo check --locked -p sessionlog-fuzz

# Instrument only the target's code: with an explicit --target, RUSTFLAGS
# skip build scripts and proc macros, which would not link against the
# coverage callbacks libFuzzer provides. A target dir of its own keeps the
# main build's artifacts valid.
host="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="${CARGO_TARGET_DIR:-target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
echo "-- build the targets (release, instrumented, $target_dir)"
cargo build --locked --release -p sessionlog-fuzz --bins \
  --target "$host" --target-dir "$target_dir"
unset RUSTFLAGS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  echo "-- run $target for ${seconds}s"
  # New inputs go to the first (scratch) directory; the seeds stay as
  # they are.
  mkdir -p "$work/$target" "$target_dir/artifacts/$target"
  log="$work/$target.log"
  status=0
  "$target_dir/$host/release/$target" \
    "$work/$target" "fuzz/seeds/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$target_dir/artifacts/$target/" \
    >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  # libFuzzer's last line: "#N DONE cov: <edges> ft: <features> corp: <inputs>/<size> ..."
  reached="$(sed -nE 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+(cov: [0-9]+).*(corp: [0-9]+).*/\1, \2/p' "$log" | tail -n 1)"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "FAIL $target (exit $status) after ${runs:-?} executions; input in $target_dir/artifacts/$target/" >&2
    failed+=("$target")
  else
    echo "ok   $target: ${runs:-?} executions in ${seconds}s (${reached:-no final stats})"
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  exit 1
fi
