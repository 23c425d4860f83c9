#!/usr/bin/env bash
# CI: sessionlog against a real OpenTelemetry Collector over OTLP/HTTP
# (tests/collector/scenarios.py: a tailed file, a sessionlog restart under
# the Collector's retries, a /var/log/pods layout with
# --otlp-session-from, and a sidecar forwarding over OTLP/HTTP). The
# Collector binary ships in a PyPI package installed into its own venv
# (target/collector-venv, tests/collector/requirements.txt). Uses
# target/debug/sessionlog (built by `cargo test`; built here when missing;
# under $CARGO_TARGET_DIR when that is set). Each scenario has a 50 s
# deadline; the whole suite is cut off at 180 s.
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog

echo "== collector: venv (target/collector-venv)"
venv=target/collector-venv
requirements=tests/collector/requirements.txt
source .ci/python-venv.sh

collector_bin=$("$py" -c 'import os, otel_collector
print(os.path.join(os.path.dirname(otel_collector.__file__), "bin", "otelcol-contrib_linux_amd64"))')
[[ -x $collector_bin ]] || { echo "collector: no Collector binary at $collector_bin" >&2; exit 1; }
"$collector_bin" --version

if [[ ! -x $server_bin ]]; then
  echo "== collector: building $server_bin"
  cargo build --locked --bin sessionlog
fi

echo "== collector: scenarios"
timeout 180 "$py" tests/collector/scenarios.py "$server_bin" "$collector_bin"
