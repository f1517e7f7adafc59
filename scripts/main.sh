#!/usr/bin/env bash
# The main job: grow a seed in a small CNN on scikit-learn's digits under torch.compile, through
# TRAINING, BLENDING and FOSSILIZED, then a strict checkpoint reload (python -m esper_slot.demo).
# Extra arguments go to the demo: --quick, --freeze-seed, --out DIR (default out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" -m esper_slot.demo "$@"
