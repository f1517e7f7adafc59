#!/usr/bin/env bash
# The whole test suite, twice: once on the PyTorch backend (CPU tensors run the PyTorch formulas)
# and once with TRITON_INTERPRET=1 (CPU tensors run the real Triton kernels in the interpreter).
# CUDA-marked tests run where a GPU is present and are skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${VENV:-.venv}/bin/python
echo "== pass 1/2: PyTorch backend on CPU =="
"$PY" -m pytest -q "$@"
echo "== pass 2/2: Triton kernels under TRITON_INTERPRET=1 =="
TRITON_INTERPRET=1 "$PY" -m pytest -q -m "not cuda" "$@"
