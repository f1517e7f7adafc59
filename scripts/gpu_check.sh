#!/usr/bin/env bash
# GPU checks for a lent CUDA machine (torch and triton already installed, nothing to install).
# A session has 15 minutes of device time, the machine's start and idle time included, so this is
# three device calls of about 4 minutes each (give the run tool timeout_s=270), every mode writing
# under $OUT:
#   bash scripts/gpu_check.sh tests   # call 1 (~225 s): the CUDA-marked tests (operators at 16M
#                                     #   and past 2^31 elements, multi-slot compiled == eager,
#                                     #   bf16 autocast, CUDA graphs), then tests/operators and
#                                     #   tests/slot on CUDA over 12 xdist workers, then
#                                     #   compute-sanitizer memcheck over small CUDA cases
#   bash scripts/gpu_check.sh bench   # call 2 (~215 s): python -m bench, operator cases only
#   bash scripts/gpu_check.sh e2e     # call 3 (~230 s): the end-to-end steps (resumes call 2's
#                                     #   file), Nsight Compute per op, the compiled-step bench
# Mode "ncu" runs call 3's Nsight part alone, "extra" the compiled-step and telemetry benches.
# Each part has its own time limit (seconds, overridable: CUDA_S, TESTS_S, SANITIZE_S, BENCH_S,
# E2E_S, NCU_S per case, EXTRA_S) so that a slow part cannot take the rest of the call with it,
# and the bench keeps every finished case in $OUT/<device>.partial.json. To resume in a later
# call or session, copy that file (from the fetched files) to bench/results/ before the call: it
# travels with the working tree, and bench/e2e find it. Copy the results into bench/results/ and
# commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
out=${OUT:-out/gpu}
mkdir -p "$out"
what=${1:-tests}
python3 - <<'PY' | tee "$out/versions.txt"
import torch, triton
print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO GPU")
PY
status=0
step() {  # step NAME SECONDS CMD...: run with a time limit, log to $out/NAME.log, keep status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s) =="
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "== $name: exit $rc =="
  [[ $rc -ne 0 ]] && status=1
  return 0
}
device=$(python3 -c "import bench.__main__ as b, torch; print(b.slug(b.device_name(torch.device('cuda'))))")
resume_from() {  # carry a partial bench file from bench/results/ into $out
  if [[ -f bench/results/$device.partial.json && ! -f $out/$device.partial.json ]]; then
    cp "bench/results/$device.partial.json" "$out/"
  fi
}
if [[ $what == tests ]]; then
  # the CUDA tests first and alone (the reason for the call), then the rest spread over the
  # machine's cores with pytest-xdist (installed there), where compiling dominates
  step pytest_cuda "${CUDA_S:-100}" python3 -m pytest tests -m cuda -q -p no:cacheprovider -rs
  # the operator and slot layers' device-parametrised tests, CUDA cases only (the CPU ones ran in
  # CI); the other layers reach the same kernels (docs/testing.md)
  step pytest_rest "${TESTS_S:-75}" python3 -m pytest tests/operators tests/slot -m "not cuda" \
    -k cuda -q -p no:cacheprovider -rs -n 12 --maxfail=25
  # memcheck instruments every kernel launch: small CUDA cases only (every op, both alpha
  # kinds, a ragged 3x5x7x11 shape in float32 and bfloat16; every op's determinism case)
  step sanitize "${SANITIZE_S:-45}" compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 -m pytest -q -p no:cacheprovider tests/operators/test_reference.py \
    tests/operators/test_determinism.py -k "cuda and (3x5x7x11 and not float16 or bitwise)"
fi
if [[ $what == bench ]]; then
  resume_from
  step bench "${BENCH_S:-210}" python3 -m bench --out "$out/$device.json" --no-e2e --resume
fi
if [[ $what == e2e ]]; then
  resume_from
  step e2e "${E2E_S:-75}" python3 -m bench --out "$out/$device.json" --no-ops --resume
fi
if [[ $what == e2e || $what == ncu ]]; then
  mkdir -p "$out/ncu"
  for case in $(python3 -m bench.ncu_cases --list | tr ' ' '@'); do
    case=${case//@/ }
    file=$(python3 -c "import bench.ncu_cases as n, sys; print(n.file_name(sys.argv[1]))" "$case")
    timeout "${NCU_S:-15}" ncu --clock-control none --print-units base --csv \
      --kernel-name regex:"$(python3 -m bench.ncu_cases --kernel-regex)" \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      python3 -m bench.ncu_cases --run "$case" > "$out/ncu/$file" 2> "$out/ncu/${file%.csv}.err" \
      || status=1
  done
  python3 -m bench.ncu_cases --parse "$out/ncu" | tee "$out/ncu.md"
fi
if [[ $what == e2e || $what == extra ]]; then
  step compiled_step "${EXTRA_S:-55}" python3 -m bench.compiled_step --rounds 50 \
    --out "$out/compiled_step_gpu.md"
fi
if [[ $what == extra ]]; then
  step telemetry "${EXTRA_S:-55}" python3 -m bench.telemetry --rounds 50 \
    --out "$out/telemetry_gpu.md"
fi
exit $status
