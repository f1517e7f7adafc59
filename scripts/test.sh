#!/usr/bin/env bash
# Lint and type check (ruff over the code, mypy over kernels/ and esper_slot/), then the whole
# test suite, twice: once on the PyTorch backend (CPU tensors run the PyTorch formulas)
# and once with TRITON_INTERPRET=1 (CPU tensors run the real Triton kernels in the interpreter).
# CUDA-marked tests run where a GPU is present and are skipped elsewhere. Tests marked
# "backend_independent" (torch.compile's graph budget over many compiles, the grad-flow warning:
# nothing a kernel backend changes) run in the first pass only. Between the passes, a smoke run of
# the benchmark harness (its output goes to a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${VENV:-.venv}/bin/python
echo "== lint (ruff) and type check (mypy) =="
"$PY" -m ruff check kernels esper_slot bench tests examples
"$PY" -m mypy
echo "== pass 1/2: PyTorch backend on CPU =="
"$PY" -m pytest -q "$@"
echo "== benchmark smoke: python -m bench --quick, and the pytest-benchmark cases once =="
smoke=$(mktemp -d)
trap 'rm -rf "$smoke"' EXIT
"$PY" -m bench --quick --out "$smoke/bench.json" > "$smoke/bench.log" 2>&1 || {
  cat "$smoke/bench.log"; exit 1; }
tail -n 3 "$smoke/bench.log"
"$PY" -m pytest -q -p no:cacheprovider bench/test_pytest_benchmark.py --benchmark-disable
echo "== pass 2/2: Triton kernels under TRITON_INTERPRET=1 =="
TRITON_INTERPRET=1 "$PY" -m pytest -q -m "not cuda and not backend_independent" "$@"
