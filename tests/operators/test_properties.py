"""Hypothesis properties: exact ends of the blend ramp and lerp's bounds, over random shapes,
dtypes, layouts and per-sample coefficients (some clamped from outside [0, 1])."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

import kernels
from tests.support.cases import layout
from tests.support.checks import same_layout

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


@st.composite
def blend_inputs(draw, device="cpu"):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    seed_dtype = draw(st.sampled_from([dtype, torch.float32]))
    kind = draw(st.sampled_from(["contiguous", "channels_last", "permuted"]))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    host = layout((torch.randn(shape, generator=gen) * scale).to(dtype), kind).to(device)
    seed = layout((torch.randn(shape, generator=gen) * scale).to(seed_dtype), kind).to(device)
    return host, seed


def coefficient(draw, host, values):
    """0-d, or per-sample [B, 1, ..., 1], with values drawn from ``values``."""
    per_sample = draw(st.booleans())
    n = host.shape[0] if per_sample else 1
    picked = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    t = torch.tensor(picked, dtype=draw(st.sampled_from([torch.float32, host.dtype])))
    shape = (n,) + (1,) * (host.dim() - 1) if per_sample else ()
    return t.reshape(shape).to(host.device)


def per_sample_view(coef: torch.Tensor, host: torch.Tensor) -> torch.Tensor:
    return coef.reshape((coef.numel(),) + (1,) * (host.dim() - 1)).expand(host.shape)


@given(inputs=blend_inputs(), data=st.data())
def test_ends_of_the_ramp_are_exact(inputs, data):
    """Where clamp(alpha) is 0, y is bitwise host; where it is 1, bitwise seed (cast to host's
    dtype) for add and gate (with the gate at 1), and bitwise host for multiply at 0."""
    host, seed = inputs
    alpha = coefficient(data.draw, host, [0.0, 1.0, -2.0, 3.5])
    a = per_sample_view(alpha.clamp(0, 1), host)
    want = torch.where(a == 0, host, seed.to(host.dtype))
    ones = torch.ones_like(alpha)
    for y in (
        kernels.blend_add(host, seed, alpha),
        kernels.blend_gate(host, seed, alpha, ones),
        kernels.blend_gate(host, seed, ones, alpha),
    ):
        assert y.dtype == host.dtype and same_layout(y, torch.empty_like(host))
        assert torch.equal(y, want)
    zeros = torch.zeros_like(alpha)
    for y in (
        kernels.blend_multiply(host, seed, zeros, host * 0.5),
        kernels.blend_gate(host, seed, alpha, zeros),
    ):
        assert torch.equal(y, host)


@given(inputs=blend_inputs(), data=st.data())
def test_add_stays_between_host_and_seed(inputs, data):
    host, seed = inputs
    alpha = coefficient(data.draw, host, [0.1, 0.25, 0.49, 0.5, 0.51, 0.9, 0.999])
    y = kernels.blend_add(host, seed, alpha)
    s = seed.to(host.dtype)
    assert torch.all(torch.minimum(host, s) <= y) and torch.all(y <= torch.maximum(host, s))


@given(inputs=blend_inputs())
def test_ste_is_host(inputs):
    host, seed = inputs
    y = kernels.ste(host, seed)
    assert torch.equal(y, host) and same_layout(y, host) and y.dtype == host.dtype


@given(inputs=blend_inputs(), data=st.data())
def test_multiply_is_host_where_seed_matches_its_input(inputs, data):
    host, _ = inputs
    alpha = coefficient(data.draw, host, [0.0, 0.3, 1.0, 7.0])
    same = host * 0.5
    assert torch.equal(kernels.blend_multiply(host, same, alpha, same), host)
