# shellcheck shell=bash
# Sourced by .ci/python.sh and .ci/buf.sh (from the repository root): makes
# or reuses the venv target/python-venv with examples/python/requirements.txt
# installed, and sets $py to its python. .ci/deploy.sh sets $venv and
# $requirements first for a venv of its own. Needs python3 (3.11+) with venv
# and pip, or $PYTHON naming one.
venv=${venv:-target/python-venv}
requirements=${requirements:-examples/python/requirements.txt}
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
py=$venv/bin/python
# pip runs only when the pins changed since the last install into this venv.
if ! cmp -s "$requirements" "$venv/installed-requirements.txt"; then
  timeout 900 "$py" -m pip install --disable-pip-version-check --quiet --requirement "$requirements"
  cp "$requirements" "$venv/installed-requirements.txt"
fi
