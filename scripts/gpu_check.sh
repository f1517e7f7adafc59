#!/usr/bin/env bash
# One-shot GPU check for a lent CUDA machine (torch and triton already installed, nothing to
# install): the whole test suite with the CUDA-marked tests, then the full benchmark.
#   bash scripts/gpu_check.sh tests   # pytest, log under $OUT (or ./out/gpu)
#   bash scripts/gpu_check.sh bench   # python -m bench -> $OUT/<device>.{json,md,png}
#   bash scripts/gpu_check.sh extra   # compiled step (peak memory), telemetry costs -> $OUT/*.md
#   bash scripts/gpu_check.sh all     # tests and bench (may not fit one 10-minute device call)
# Copy the bench files into bench/results/ and commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
out=${OUT:-out/gpu}
mkdir -p "$out"
what=${1:-all}
python3 - <<'PY'
import torch, triton
print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO GPU")
PY
status=0
if [[ $what == tests || $what == all ]]; then
  python3 -m pytest tests -q -p no:cacheprovider -rs 2>&1 | tee "$out/pytest.log" | tail -n 40
  status=${PIPESTATUS[0]}
fi
if [[ $what == bench || $what == all ]]; then
  device=$(python3 -c "import bench.__main__ as b, torch; print(b.slug(b.device_name(torch.device('cuda'))))")
  python3 -m bench --out "$out/$device.json" 2>&1 | tee "$out/bench.log" | tail -n 80
  status=$((status || PIPESTATUS[0]))
fi
if [[ $what == extra ]]; then
  python3 -m bench.compiled_step --rounds 100 --out "$out/compiled_step_gpu.md" 2>&1 \
    | tee "$out/compiled_step.log" | tail -n 20
  status=${PIPESTATUS[0]}
  python3 -m bench.telemetry --rounds 100 --out "$out/telemetry_gpu.md" 2>&1 \
    | tee "$out/telemetry.log" | tail -n 20
  status=$((status || PIPESTATUS[0]))
fi
exit $status
