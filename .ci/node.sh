#!/usr/bin/env bash
# CI for Node clients nobody here wrote: @grpc/grpc-js with
# @grpc/proto-loader (producer, follower resuming from a cursor, over TCP
# and the Unix socket, gzip-compressed requests, a Value with no kind) and
# the OpenTelemetry JS OTLP/gRPC log exporter, against
# target/debug/sessionlog (built by `cargo test`; built here when missing;
# under $CARGO_TARGET_DIR when that is set). The packages are pinned in
# tests/node/package-lock.json (npm ci). Needs node (18+) and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog
command -v node >/dev/null 2>&1 || { echo "node: node is required" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "node: npm is required" >&2; exit 1; }
if [[ ! -x $server_bin ]]; then
  echo "== node: building $server_bin"
  cargo build --locked --bin sessionlog
fi

echo "== node: npm ci (tests/node), node $(node --version)"
(cd tests/node && timeout 300 npm ci --no-audit --no-fund --loglevel=error)

echo "== node: interop.test.mjs"
SESSIONLOG_BIN=$(realpath "$server_bin") timeout 180 node --test tests/node/interop.test.mjs
