#!/usr/bin/env bash
# CI for the web console in a real browser: Debian's chromium (installed
# here when /usr/bin/chromium is missing; CI runs as root) driven by the
# pinned playwright-core in tests/browser (npm ci; no browser download),
# against target/debug/sessionlog and the tracing_layer example (both built
# by `cargo test`; built here when missing; under $CARGO_TARGET_DIR when
# that is set). Screenshots go to
# target/browser-artifacts/ (sessions.png, session-live.png, console.png,
# fields.png, colours.png, search.png, session-at-seq.png,
# and failure.png when a step fails).
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog
# An example `cargo test` builds; it logs entries with fields and trace ids.
fields_bin=${CARGO_TARGET_DIR:-target}/debug/examples/tracing_layer
artifacts=${CARGO_TARGET_DIR:-target}/browser-artifacts

if [[ ! -x /usr/bin/chromium ]]; then
  echo "== browser: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq chromium >/dev/null
fi
command -v node >/dev/null 2>&1 || { echo "browser: node is required" >&2; exit 1; }
echo "== browser: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"

if [[ ! -x $server_bin ]]; then
  echo "== browser: building $server_bin"
  cargo build --locked --bin sessionlog
fi
if [[ ! -x $fields_bin ]]; then
  echo "== browser: building $fields_bin"
  cargo build --locked --example tracing_layer
fi

echo "== browser: npm ci (tests/browser)"
(cd tests/browser && timeout 300 npm ci --no-audit --no-fund --loglevel=error)

echo "== browser: console.spec.mjs"
rm -rf "$artifacts"
SESSIONLOG_BIN=$server_bin FIELDS_BIN=$fields_bin ARTIFACTS=$artifacts timeout 180 node tests/browser/console.spec.mjs
echo "== browser: screenshots in $artifacts"
