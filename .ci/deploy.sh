#!/usr/bin/env bash
# CI for the deployment files: hadolint on the Dockerfile; each Kubernetes
# overlay rendered by `kubectl kustomize` and validated, strictly, against
# the Kubernetes 1.33 schemas; then .ci/deploy_check.py starts the real
# server as the Dockerfile and each overlay configure it and checks the
# probes, grace periods, volumes and scrape settings against it, and runs
# the collector overlay's Collector config in the real Collector against
# it. The tools come from the pinned PyPI packages in deploy/requirements-ci.txt, in the
# venv target/deploy-venv. Uses target/debug/sessionlog (built by `cargo
# test`; built here when missing; under $CARGO_TARGET_DIR when that is set).
# No image is built and nothing is applied to a cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

k8s_version=1.33.0
rendered=target/deploy-rendered
server_bin=${CARGO_TARGET_DIR:-target}/debug/sessionlog

echo "== deploy: venv (target/deploy-venv)"
venv=target/deploy-venv
requirements=deploy/requirements-ci.txt
source .ci/python-venv.sh
tools=$venv/bin

fail() {
  echo "deploy: FAILED: $*" >&2
  exit 1
}

echo "== deploy: hadolint Dockerfile ($("$tools/hadolint" --version))"
timeout 120 "$tools/hadolint" --failure-threshold warning Dockerfile

# validate NAME FILE: strict schema validation of every document in FILE.
# kubernetes-validate only warns about a kind it has no schema for, so a
# warning fails here too.
validate() {
  local name=$1 file=$2 out
  out=$(timeout 120 "$tools/kubernetes-validate" --strict -k "$k8s_version" - <"$file" 2>&1) ||
    fail "$name does not validate against Kubernetes $k8s_version: $out"
  printf '%s\n' "$out"
  if grep -v '^INFO ' <<<"$out" | grep -q .; then
    fail "$name: kubernetes-validate printed more than passes"
  fi
  grep -q '^INFO .* passed ' <<<"$out" || fail "$name: nothing was validated"
}

echo "== deploy: the validator rejects an unknown field"
cat >"target/deploy-invalid.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: invalid
notAField: true
EOF
if timeout 120 "$tools/kubernetes-validate" --strict -k "$k8s_version" - <target/deploy-invalid.yaml >/dev/null 2>&1; then
  fail "kubernetes-validate --strict accepted an unknown field"
fi

rm -rf "$rendered"
mkdir -p "$rendered"
overlays=()
for kustomization in deploy/kubernetes/*/kustomization.yaml; do
  dir=$(dirname "$kustomization")
  name=$(basename "$dir")
  [[ $name == base ]] && continue
  echo "== deploy: kubectl kustomize $dir | kubernetes-validate --strict -k $k8s_version"
  timeout 120 "$tools/kubectl" kustomize "$dir" >"$rendered/$name.yaml"
  validate "$dir" "$rendered/$name.yaml"
  overlays+=("$rendered/$name.yaml")
done
((${#overlays[@]} >= 3)) || fail "expected the collector, sidecar and standalone overlays, found ${#overlays[@]}"

if [[ ! -x $server_bin ]]; then
  echo "== deploy: building $server_bin"
  cargo build --locked --bin sessionlog
fi

# The collector overlay's config runs in the real Collector.
OTELCOL_BINARY=$("$py" -c 'import os, otel_collector
print(os.path.join(os.path.dirname(otel_collector.__file__), "bin", "otelcol-contrib_linux_amd64"))')
export OTELCOL_BINARY

echo "== deploy: the Dockerfile and manifests against the real server (and the Collector)"
timeout 300 "$py" .ci/deploy_check.py "$server_bin" Dockerfile "${overlays[@]}"

# must_fail NAME WHAT SED SOURCE INSERTED EXPECTED: deploy_check.py must
# fail, on EXPECTED (a grep pattern), for SOURCE changed by SED (which must
# put INSERTED in).
must_fail() {
  local name=$1 what=$2 sed_expr=$3 source=$4 inserted=$5 expected=$6
  sed "$sed_expr" "$source" >"$rendered/$name.yaml"
  grep -q "$inserted" "$rendered/$name.yaml" || fail "$name: the change was not put in"
  if timeout 300 "$py" .ci/deploy_check.py "$server_bin" Dockerfile "$rendered/$name.yaml" \
    >"$rendered/$name.out" 2>&1; then
    cat "$rendered/$name.out"
    fail "deploy_check.py passed $what"
  fi
  grep -q "$expected" "$rendered/$name.out" ||
    fail "deploy_check.py failed, but not on $what: $(cat "$rendered/$name.out")"
  echo "deploy: $what failed the check, as it must"
}

echo "== deploy: the check fails on a probe service name the server does not serve"
must_fail wrong-probe-name "a readiness probe for sessionlog.v1.Nope" \
  's/service: sessionlog\.v1\.SessionLog$/service: sessionlog.v1.Nope/' "$rendered/sidecar.yaml" \
  'sessionlog.v1.Nope' "FAILED: .*'sessionlog.v1.Nope' is SERVING"
echo "== deploy: the check fails on a Collector posting to a port the server does not serve"
must_fail wrong-collector-port "a Collector posting to port 4319" \
  's|endpoint: http://sessionlog:4318|endpoint: http://sessionlog:4319|' "$rendered/collector.yaml" \
  'sessionlog:4319' "FAILED: .*Service sessionlog port 4319 reaches"
echo "== deploy: ok"
