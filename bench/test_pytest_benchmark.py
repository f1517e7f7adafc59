"""The benchmark cases under pytest-benchmark, for users who prefer that harness:

    pytest bench/test_pytest_benchmark.py                 # time every case
    pytest bench/test_pytest_benchmark.py --benchmark-disable   # run each once (CI smoke)

Not part of the default test run (testpaths is tests/). `python -m bench` is the full harness
(copy bandwidth, GB/s, compiled formulas, end to end, JSON/table/plot)."""

from __future__ import annotations

import pytest
import torch

from bench import cases

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
NUMEL = 2**24 if DEVICE.type == "cuda" else 2**16


@pytest.mark.parametrize("pass_", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", ["ours", "eager"])
@pytest.mark.parametrize("op", cases.OPS)
def test_operator(benchmark, op, impl, pass_):
    fn = (cases.OURS if impl == "ours" else cases.EAGER)[op]
    inputs = cases.make_inputs(NUMEL, torch.float32, DEVICE, pass_ == "fwd+bwd")
    run = cases.runner(fn, pass_, inputs)

    def timed():
        out = run()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.extra_info["bytes"] = cases.min_bytes(op, NUMEL, torch.float32, pass_)
    result = benchmark(timed)
    assert result is not None
