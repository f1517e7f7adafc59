"""Same inputs, bitwise identical outputs and gradients, run to run (no float atomics: the
coefficient gradients are per-program partial sums reduced in a fixed order). On CPU both
backends run programs one after another, so this can only fail on CUDA, where programs race."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import INTERPRET
from tests.support.cases import OPS, make_case


@pytest.mark.parametrize("alpha", ["scalar", "per_sample"])
@pytest.mark.parametrize("op", OPS)
def test_bitwise_reproducible(op, alpha, device):
    if device == "cpu" and INTERPRET:
        pytest.skip("the interpreter runs programs one at a time: nothing can race (22 s saved)")
    shape = (4, 16, 33, 31)  # several blocks per sample, ragged tails
    case = make_case(op, shape, torch.float32, device, alpha=alpha)
    grad = torch.randn(shape, device=device)
    runs = []
    for _ in range(2):
        args = case.clone_args()
        y = case.ours(*args)
        runs.append((y, *torch.autograd.grad(y, args, grad)))
    for first, second in zip(*runs):
        assert torch.equal(first, second)
