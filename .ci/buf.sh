#!/usr/bin/env bash
# CI for proto/: `buf lint` with the rules in buf.yaml, and `buf breaking`
# against recent commits that changed it, so the public API (and the storage schema)
# cannot change incompatibly by accident. buf comes from the pinned buf-bin
# package in the Python examples' venv.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== buf: venv (target/python-venv)"
source .ci/python-venv.sh
buf=$venv/bin/buf
"$buf" --version

echo "== buf: lint"
timeout 120 "$buf" lint

echo "== buf: breaking (against recent commits that changed proto/)"
# A submission may hold several commits, so compare against each of the
# last ones that changed proto/ (not only the parent): a break made in an
# earlier commit of the same submission is caught too. A shallow clone is
# deepened when possible.
if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
  timeout 120 git fetch --quiet --deepen=30 || true
fi
mapfile -t baselines < <(git log --format=%H -n 10 'HEAD~1' -- proto 2>/dev/null || true)
if ((${#baselines[@]} == 0)); then
  echo "buf: SKIPPED the breaking check: no earlier commit changed proto/" \
    "(first commit, or a shallow clone that could not be deepened)"
fi
for ref in "${baselines[@]}"; do
  echo "buf: breaking against $(git log -1 --format='%h %s' "$ref" | cut -c1-72)"
  timeout 120 "$buf" breaking proto --against ".git#ref=$ref,subdir=proto"
done
echo "== buf: ok"
