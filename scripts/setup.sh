#!/usr/bin/env bash
# Creates .venv (once) with the CPU build of torch and everything the project needs.
# Idempotent: re-runs pip only when this file or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.esper-slot-setup"
# the version line too: the installed metadata carries esper_slot.__version__
want=$( (cat scripts/setup.sh pyproject.toml; grep '^__version__' esper_slot/__init__.py) \
  | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# Pinned first: this exact version is a local CPU wheel here, while an unpinned torch would pull
# several GB of CUDA packages.
"$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.13.0"
"$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,bench,demo]"
echo "$want" > "$stamp"
