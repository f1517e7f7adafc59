#!/usr/bin/env bash
# The main job: runs every operator forward and backward and prints the backend in use.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" examples/operators.py "$@"
