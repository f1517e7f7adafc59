#!/usr/bin/env bash
# The test command. Format, lint and type checks (ruff format --check, ruff check, mypy over
# kernels/ and esper_slot/), then two test passes run side by side, then a smoke run of the
# benchmark harness:
#   pass 1: the whole suite on the PyTorch backend (CPU tensors run the PyTorch formulas);
#   pass 2: TRITON_INTERPRET=1 (CPU tensors run the real Triton kernels in the interpreter), over
#           the layers that call the kernels: tests/operators and tests/slot. The other layers
#           (compile, checkpoints, distributed, project) reach no kernel launch those two do not
#           (docs/testing.md: measured with tests/conftest.py's ESPER_KERNEL_LOG).
# CUDA-marked tests run where a GPU is present and are skipped elsewhere. Tests marked
# "backend_independent" (torch.compile's graph budget, the grad-flow warning: nothing a kernel
# backend changes) run in pass 1 only. Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${VENV:-.venv}/bin/python
echo "== format (ruff format --check), lint (ruff check), type check (mypy) =="
"$PY" -m ruff format --check kernels esper_slot bench tests examples
"$PY" -m ruff check kernels esper_slot bench tests examples
"$PY" -m mypy
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "== pass 1/2 (PyTorch backend) and pass 2/2 (Triton interpreter), side by side =="
start=$SECONDS
# One thread each: the two passes share the machine's cores instead of oversubscribing them.
(OMP_NUM_THREADS=1 TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider \
   -m "not cuda and not backend_independent" tests/operators tests/slot "$@" \
   > "$logs/pass2.log" 2>&1; echo $? > "$logs/pass2.rc") &
rc1=0
OMP_NUM_THREADS=1 "$PY" -m pytest -q "$@" || rc1=$?
echo "(pass 1 done after $((SECONDS - start)) s; waiting for pass 2)"
wait
echo "== pass 2/2: Triton kernels under TRITON_INTERPRET=1 (tests/operators, tests/slot) =="
tail -n 25 "$logs/pass2.log"
rc2=$(cat "$logs/pass2.rc")
echo "(both passes done after $((SECONDS - start)) s)"
if [[ $rc1 -ne 0 || $rc2 -ne 0 ]]; then
  [[ $rc2 -ne 0 ]] && cat "$logs/pass2.log"
  echo "FAILED: pass 1 exit $rc1, pass 2 exit $rc2"
  exit 1
fi
echo "== benchmark smoke: python -m bench --quick, and the pytest-benchmark cases once =="
"$PY" -m bench --quick --out "$logs/bench.json" > "$logs/bench.log" 2>&1 || {
  cat "$logs/bench.log"; exit 1; }
tail -n 3 "$logs/bench.log"
"$PY" -m pytest -q -p no:cacheprovider bench/test_pytest_benchmark.py --benchmark-disable
