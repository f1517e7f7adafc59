"""Forward values and every gradient against the reference formulas (tests/support/reference.py) in
float32, bfloat16 and float16, on shapes that span several kernel blocks with ragged tails."""

from __future__ import annotations

import pytest
import torch

import kernels
from tests.conftest import INTERPRET
from tests.support.cases import OPS, make_case
from tests.support.checks import assert_matches_oracle, forward_backward

# The last: many samples (one program each with per-sample alpha) and 17 blocks with a ragged
# tail; under the Triton interpreter, which runs programs one at a time in Python, 67 samples
# (5 blocks) keep both properties at a quarter of the cost (the 257-sample cases took 105 s of
# the interpreter pass's ~12 minutes).
SHAPES = [(4, 8, 16, 16), (3, 5, 7, 11), (6, 33, 40), (67, 65) if INTERPRET else (257, 65)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("alpha", ["scalar", "per_sample"])
@pytest.mark.parametrize("op", OPS)
def test_matches_reference(op, alpha, shape, dtype, device):
    case = make_case(
        op,
        shape,
        dtype,
        device,
        alpha=alpha,
        gate="scalar" if alpha == "per_sample" else "per_sample",
    )
    assert_matches_oracle(case, torch.randn(shape, dtype=dtype, device=device))


@pytest.mark.parametrize("op", OPS)
def test_mixed_dtypes_cast_to_host(op, device):
    """A float32 seed (and seed_input) with a bfloat16 host: values are cast to bfloat16 first,
    the output is bfloat16, and seed's gradient comes back in float32."""
    shape = (4, 6, 8)
    case = make_case(
        op, shape, torch.bfloat16, device, alpha="per_sample", seed_dtype=torch.float32
    )
    assert case.args[1].dtype == torch.float32
    assert_matches_oracle(case, torch.randn(shape, dtype=torch.bfloat16, device=device))


def test_alpha_gradient_skipped_when_not_required(device):
    """alpha as a plain buffer (the slot's case): no alpha gradient, host/seed still exact."""
    case = make_case("add", (4, 8, 8), torch.float32, device, alpha="scalar")
    host, seed, alpha = case.args
    alpha = alpha.detach()
    grad = torch.randn(host.shape, device=device)
    _, (g_host, g_seed) = forward_backward(case.ours, (host, seed, alpha), grad)
    a = alpha.clamp(0, 1)
    torch.testing.assert_close(g_host, grad * (1 - a))
    torch.testing.assert_close(g_seed, grad * a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("offset", [1e-2, 1e-4, 1e-6, 1e-9])
def test_multiply_alpha_gradient_when_seed_is_close_to_its_input(offset, dtype, device):
    """tanh(seed - seed_input) for tiny differences: a cancelling tanh would ruin dL/dalpha =
    sum(g host tanh(...)) while leaving the forward looking fine."""
    host = torch.randn(4, 256, dtype=dtype, device=device)
    seed_input = host * 0.5
    seed = seed_input + offset * torch.rand(4, 256, dtype=dtype, device=device)
    alpha = torch.tensor(0.5, dtype=dtype, device=device, requires_grad=True)
    (ours,) = torch.autograd.grad(
        kernels.blend_multiply(host, seed, alpha, seed_input).sum(), alpha
    )
    t = torch.tanh(seed.double() - seed_input.double())
    want = (host.double() * t).sum()
    torch.testing.assert_close(
        ours.double(), want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0
    )


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64], ids=str
)
@pytest.mark.parametrize("per_sample", [False, True])
def test_blend_add_is_torch_lerp_bit_for_bit(per_sample, dtype, device):
    """blend_add(h, s, alpha) == torch.lerp(h, s, alpha), every bit, on both backends: the
    kernels write lerp's two contractions as tl.fma (as CUDA's and the CPU's lerp do) and pin
    every other contraction off, so the interpreter, the CPU and CUDA agree. blend_gate with a
    gate of 1 is the same lerp."""
    shape = (8, 32, 64)  # 16K elements: 16 kernel blocks
    host = torch.randn(shape, dtype=dtype, device=device)
    seed = torch.randn(shape, dtype=dtype, device=device)
    alpha_shape = (8, 1, 1) if per_sample else ()
    for value in [0.0, 0.3, 0.5, 0.7, 1.0, 0.123456] if not per_sample else [None]:
        alpha = (
            torch.rand(alpha_shape, device=device).to(dtype)
            if value is None
            else torch.full(alpha_shape, value, dtype=dtype, device=device)
        )
        want = torch.lerp(host, seed, alpha.expand(shape) if per_sample else alpha)
        assert torch.equal(kernels.blend_add(host, seed, alpha), want), value
        gate = torch.ones(8, 1, 1, dtype=dtype, device=device)
        assert torch.equal(kernels.blend_gate(host, seed, alpha, gate), want), value
