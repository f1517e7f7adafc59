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
