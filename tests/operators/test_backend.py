"""The backend in use is the one asked for: the interpreter pass must really run Triton."""

from __future__ import annotations

import torch

import kernels
from tests.conftest import INTERPRET


def test_cpu_backend_matches_the_environment():
    assert kernels.active_backend("cpu") == ("triton" if INTERPRET else "torch")
    assert kernels.active_backend(torch.device("cpu")) == kernels.active_backend("cpu")


def test_cuda_uses_triton():
    assert kernels.active_backend("cuda") == "triton"


def test_other_devices_use_torch():
    assert kernels.active_backend("meta") == "torch"
