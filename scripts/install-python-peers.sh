#!/usr/bin/env bash
# Installs the official `openai` Python package into a virtualenv cached outside the repository,
# for the HTTP API conformance tests (`crates/clawgate/tests/http_api.rs`). Idempotent: a marker
# file records a finished install, so reruns are instant.
#
# Prints the venv's python interpreter on stdout (last line). Exits non-zero with a clear message
# when python3/venv is missing or pip cannot reach PyPI: the tests that need it then fail, they are
# never skipped.
set -euo pipefail

OPENAI_SPEC="${CLAWGATE_OPENAI_PY_SPEC:-openai>=1.40,<3}"
CACHE_ROOT="${CLAWGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clawgate}"
VENV="$CACHE_ROOT/pyvenv"
MARKER="$VENV/.installed-openai"
PY="$VENV/bin/python"

if [[ -f "$MARKER" && -x "$PY" ]] && "$PY" -c 'import openai' >/dev/null 2>&1; then
  echo "$PY"
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "install-python-peers: python3 is not installed (apt-get install python3 python3-venv) and retry" >&2
  exit 2
fi

mkdir -p "$CACHE_ROOT"
if [[ ! -x "$PY" ]]; then
  echo "install-python-peers: creating a virtualenv at $VENV" >&2
  if ! python3 -m venv "$VENV" >&2; then
    echo "install-python-peers: python3 -m venv failed (apt-get install python3-venv) and retry" >&2
    exit 2
  fi
fi

echo "install-python-peers: installing $OPENAI_SPEC into $VENV" >&2
if ! "$PY" -m pip install --disable-pip-version-check --quiet "$OPENAI_SPEC" >&2; then
  echo "install-python-peers: pip could not install $OPENAI_SPEC (is PyPI reachable?)" >&2
  exit 3
fi
"$PY" -c 'import openai; print("install-python-peers: openai", openai.__version__)' >&2
touch "$MARKER"
echo "$PY"
