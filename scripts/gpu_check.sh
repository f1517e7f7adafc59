#!/usr/bin/env bash
# GPU checks for a lent CUDA machine (torch and triton already installed, nothing to install),
# planned as three device calls of at most 10 minutes each, every mode writing under $OUT:
#   bash scripts/gpu_check.sh tests   # call 1: pytest (CUDA-marked tests included), then
#                                     #   compute-sanitizer memcheck over a small CUDA subset
#   bash scripts/gpu_check.sh bench   # call 2: python -m bench, operator cases only
#   bash scripts/gpu_check.sh e2e     # call 3: the end-to-end steps (resumes call 2's file),
#                                     #   then Nsight Compute per op, then the compiled-step and
#                                     #   telemetry benches
# Modes "ncu" and "extra" run call 3's last two parts alone. Each part has its own time limit
# (seconds, overridable: CUDA_S, TESTS_S, SANITIZE_S, BENCH_S, E2E_S, NCU_S, EXTRA_S) so that a slow
# part cannot take the rest of the call with it, and the bench keeps every finished case in
# $OUT/<device>.partial.json. To resume in a later call, copy that file (from the fetched files)
# to bench/results/ before the call: it travels with the working tree, and bench/e2e find it.
# Copy the results into bench/results/ and commit them.
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
  step pytest_cuda "${CUDA_S:-200}" python3 -m pytest tests -m cuda -q -p no:cacheprovider -rs
  step pytest_rest "${TESTS_S:-240}" python3 -m pytest tests -m "not cuda" -q -p no:cacheprovider \
    -rs -n 8 --maxfail=25
  # memcheck instruments every kernel launch: small CUDA cases only
  step sanitize "${SANITIZE_S:-150}" compute-sanitizer --tool memcheck --error-exitcode 9 \
    python3 -m pytest -q -p no:cacheprovider tests/operators/test_reference.py tests/operators/test_determinism.py \
    -k cuda
fi
if [[ $what == bench ]]; then
  resume_from
  step bench "${BENCH_S:-540}" python3 -m bench --out "$out/$device.json" --no-e2e --resume
fi
if [[ $what == e2e ]]; then
  resume_from
  step e2e "${E2E_S:-300}" python3 -m bench --out "$out/$device.json" --no-ops --resume
fi
if [[ $what == e2e || $what == ncu ]]; then
  mkdir -p "$out/ncu"
  for case in $(python3 -m bench.ncu_cases --list | tr ' ' '@'); do
    case=${case//@/ }
    file=$(python3 -c "import bench.ncu_cases as n, sys; print(n.file_name(sys.argv[1]))" "$case")
    timeout "${NCU_S:-60}" ncu --clock-control none --print-units base --csv \
      --kernel-name regex:'_fwd_kernel|_bwd_kernel|_finish_kernel' \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      python3 -m bench.ncu_cases --run "$case" > "$out/ncu/$file" 2> "$out/ncu/${file%.csv}.err" \
      || status=1
  done
  python3 -m bench.ncu_cases --parse "$out/ncu" | tee "$out/ncu.md"
fi
if [[ $what == e2e || $what == extra ]]; then
  step compiled_step "${EXTRA_S:-150}" python3 -m bench.compiled_step --rounds 100 \
    --out "$out/compiled_step_gpu.md"
  step telemetry "${EXTRA_S:-150}" python3 -m bench.telemetry --rounds 100 \
    --out "$out/telemetry_gpu.md"
fi
exit $status
