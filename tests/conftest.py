"""Shared fixtures. Every kernel test runs on CPU (the PyTorch path, or the Triton kernels when
TRITON_INTERPRET=1) and, where a GPU exists, on CUDA (the Triton kernels)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import kernels

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

settings.register_profile(
    "default",
    deadline=None,
    max_examples=40 if INTERPRET else 100,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("default")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed_rng():
    torch.manual_seed(0)


def pytest_report_header(config):
    backends = {d: kernels.active_backend(d) for d in DEVICES}
    return f"esper-slot kernels backends: {backends} (TRITON_INTERPRET={int(INTERPRET)})"


# ESPER_KERNEL_LOG=FILE (with TRITON_INTERPRET=1): write every distinct Triton kernel launch
# (kernel, constexpr values, tensor dtypes) to FILE, to compare what two test selections reach,
# and to FILE.tests the first test that made each one. Launches in spawned processes (the
# distributed tests' ranks) are not seen.
if INTERPRET and os.environ.get("ESPER_KERNEL_LOG"):
    from triton.runtime.interpreter import InterpretedFunction

    _LAUNCHES: dict[str, str] = {}
    _run = InterpretedFunction.run

    def _logged_run(self, *args, grid, warmup, **kwargs):
        named = dict(zip(self.arg_names, args), **kwargs)
        parts = [f"{k}={v}" for k, v in named.items() if k.isupper()]
        parts += [f"{k}:{v.dtype}" for k, v in named.items() if isinstance(v, torch.Tensor)]
        launch = f"{self.fn.__module__}.{self.fn.__name__}({', '.join(parts)})"
        _LAUNCHES.setdefault(launch, os.environ.get("PYTEST_CURRENT_TEST", "?").split(" (")[0])
        return _run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = _logged_run  # type: ignore[method-assign]

    def pytest_sessionfinish(session, exitstatus):
        with open(os.environ["ESPER_KERNEL_LOG"], "w") as out:
            out.write("\n".join(sorted(_LAUNCHES)) + "\n")
        with open(os.environ["ESPER_KERNEL_LOG"] + ".tests", "w") as out:
            out.write("".join(f"{k}\t{v}\n" for k, v in sorted(_LAUNCHES.items())))
