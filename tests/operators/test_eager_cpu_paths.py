"""The eager CPU path's shortcuts give the general path's bits: the fast dispatch of blend_add /
blend_gate, native lerp for host and seed in different dense layouts, native autograd for small
multiply blends, the PyTorch path without the op boundary (BlendLerpEager, BlendMultiplyEager)
against the same path through the registered ops, and the open gradient gate that is its input.
Each is compared with the path it short-cuts (values and gradients), on inputs where they differ
most (clamping, NaN, layouts).
The PyTorch path only: under TRITON_INTERPRET=1 CPU tensors run the Triton kernels."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import kernels
from esper_slot.gradient_gate import GradientGate, gradient_gate
from kernels.lerp.cpu_fast import fast_cpu_lerp, native_lerp
from kernels.lerp.ops import BlendLerp
from kernels.lerp.torch_path import BlendLerpEager
from kernels.multiply.cpu_fast import NATIVE_BELOW, BlendMultiplyEagerCpu
from kernels.multiply.ops import BlendMultiply
from kernels.multiply.torch_path import BlendMultiplyEager
from tests.support import reference
from tests.support.cases import layout

pytestmark = pytest.mark.skipif(
    kernels.active_backend("cpu") != "torch",
    reason="the eager CPU path runs only on the PyTorch backend",
)

ALPHAS = [-0.5, 0.0, 0.3, 1.0, 1.7, math.nan]


def grads(fn, *inputs):
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    y = fn(*leaves)
    g = torch.randn_like(y)
    wrt = [t for t in leaves if t.requires_grad]
    return y.detach(), torch.autograd.grad(y, wrt, g, allow_unused=True)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fast_add_is_the_general_path(alpha, dtype):
    host, seed = torch.randn(4, 300, dtype=dtype), torch.randn(4, 300, dtype=dtype)
    a = torch.tensor(alpha)
    assert fast_cpu_lerp(host, seed, a, None) is not None  # the fast path took it
    torch.testing.assert_close(
        fast_cpu_lerp(host, seed, a, None),
        native_lerp(host, seed, a, None),
        rtol=0,
        atol=0,
        equal_nan=True,
    )
    torch.manual_seed(1)
    y, g = grads(lambda h, s: kernels.blend_add(h, s, a), host, seed)
    torch.manual_seed(1)
    y_ref, g_ref = grads(lambda h, s: BlendLerp.apply(h, s, a, None, None), host, seed)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0, equal_nan=True)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@given(alpha=st.floats(-1, 2), low=st.floats(-1, 0.5), high=st.floats(0.5, 2))
def test_fast_gate_is_the_general_path(alpha, low, high):
    host, seed = torch.randn(5, 7, 3), torch.randn(5, 7, 3)
    gate = torch.linspace(low, high, 5).reshape(5, 1, 1)
    a = torch.tensor(alpha)
    assert fast_cpu_lerp(host, seed, a, gate) is not None
    torch.manual_seed(1)
    y, g = grads(lambda h, s, gt: kernels.blend_gate(h, s, a, gt), host, seed, gate)
    torch.manual_seed(1)
    y_ref, g_ref = grads(lambda h, s, gt: native_lerp(h, s, a, gt), host, seed, gate)
    assert torch.equal(y, y_ref)
    for got, want in zip(g, g_ref):
        assert torch.equal(got, want)
    # and the contract, in float64: lerp with e = clamp(clamp(a) * clamp(g))
    want = reference.blend_gate(host.double(), seed.double(), a.double(), gate.double())
    torch.testing.assert_close(y.double(), want, rtol=1e-6, atol=1e-6)


def test_fast_path_declines_what_it_does_not_cover():
    h, s = torch.randn(4, 6), torch.randn(4, 6)
    a, g = torch.tensor(0.3), torch.rand(4, 1)
    declined = [
        (h.t(), s.t().contiguous(), a, None),  # host not contiguous
        (h, s.double(), a, None),  # seed of another dtype (the contract's cast)
        (h, s, torch.tensor(0.3, requires_grad=True), None),  # alpha learned
        (h, s, torch.rand(4, 1), None),  # per-sample alpha
        (h, h, a, None),  # the same tensor twice
        (torch.nn.Parameter(h), s, a, None),  # a subclass
        (h.bfloat16(), s.bfloat16(), a, g.bfloat16()),  # a low-precision tensor weight
        (h, s, a, torch.rand(1, 1)),  # a one-element gate (the number path)
        (h, s, a, torch.rand(4, 6)),  # not per-sample: the full checks reject it
    ]
    for case in declined:
        assert fast_cpu_lerp(*case) is None
    with pytest.raises(ValueError, match="gate"):
        kernels.blend_gate(h, s, a, torch.rand(4, 6))


@pytest.mark.parametrize("with_gate", [False, True])
def test_mixed_dense_layouts_run_natively_in_host_layout(with_gate):
    """A batch_first attention output (a transposed view) next to a contiguous seed."""
    host = torch.randn(6, 4, 8).transpose(0, 1)  # [4, 6, 8], dense, not contiguous
    seed = torch.randn(4, 6, 8)
    a = torch.tensor(0.4)
    gate = torch.rand(4, 1, 1) if with_gate else None

    def ours(h, s, *rest):
        return kernels.blend_gate(h, s, a, rest[0]) if with_gate else kernels.blend_add(h, s, a)

    def general(h, s, *rest):
        return BlendLerp.apply(h, s, a, rest[0] if with_gate else None, None)

    inputs = (host, seed) + ((gate,) if with_gate else ())
    torch.manual_seed(2)
    y, g = grads(ours, *inputs)
    torch.manual_seed(2)
    y_ref, g_ref = grads(general, *inputs)
    out = ours(*inputs)
    assert out.stride() == host.stride()  # the contract: host's layout
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("seed_layout", ["contiguous", "channels_last", "permuted"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_eager_fallbacks_are_the_ops_path(dtype, seed_layout):
    """Routes 4c (lerp) and 3b (multiply): the PyTorch path as a Function without the op
    boundary gives the bits of the same path through the registered ops (ops.BlendLerp,
    ops.BlendMultiply), values and every gradient, with learned per-sample coefficients, a
    float32 seed (the contract's cast) and mixed layouts; and the public call, where it takes
    them (lerp with a low-precision host; multiply with layouts that differ)."""
    host = layout(torch.randn(4, 3, 5, 2, dtype=dtype), "channels_last")
    seed = layout(torch.randn(4, 3, 5, 2), seed_layout)
    s_in = layout(torch.randn(4, 3, 5, 2, dtype=dtype), seed_layout)
    alpha = torch.tensor([-0.2, 0.0, 0.7, 1.0]).reshape(4, 1, 1, 1)
    gate = torch.tensor([0.5, 1.3, 0.25, math.nan]).reshape(4, 1, 1, 1)
    pairs = [
        (
            lambda h, s, a, g: BlendLerpEager.apply(h, s, a, g),
            lambda h, s, a, g: BlendLerp.apply(h, s, a, g, None),
            # float32 takes route 4b (native lerp) instead: its sums are ordered differently
            (lambda h, s, a, g: kernels.blend_gate(h, s, a, g)) if dtype != torch.float32 else None,
        ),
        (
            lambda h, s, a, g: BlendMultiplyEager.apply(h, s, a, s_in, False),
            lambda h, s, a, g: BlendMultiply.apply(h, s, a, s_in, False, None),
            None,
        ),  # the public call with same-layout inputs takes BlendMultiplyEagerCpu
        (
            lambda h, s, a, g: BlendMultiplyEager.apply(h, s, a, None, True),
            lambda h, s, a, g: BlendMultiply.apply(h, s, a, None, True, None),
            (lambda h, s, a, g: kernels.blend_multiply(h, s, a, h))
            if seed_layout != "channels_last"
            else None,
        ),
    ]
    for eager, ops, public in pairs:
        results = []
        for fn in (eager, ops, public):
            if fn is not None:
                torch.manual_seed(4)
                results.append(grads(fn, host, seed, alpha, gate))
        (y, g), *others = results
        assert y.stride() == host.stride()
        for y_other, g_other in others:
            torch.testing.assert_close(y, y_other, rtol=0, atol=0, equal_nan=True)
            for got, want in zip(g, g_other):
                if want is None:
                    assert got is None
                else:
                    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("numel", [NATIVE_BELOW // 2, NATIVE_BELOW * 2])
@pytest.mark.parametrize("variant", ["tied", "detached", "separate"])
def test_multiply_native_and_function_agree(numel, variant):
    """Below NATIVE_BELOW elements blend_multiply runs on native autograd, above it through
    BlendMultiplyEagerCpu: the same forward bits, gradients within float32 rounding, both
    against the float64 oracle."""
    host, seed, s_in = (torch.randn(4, numel // 4) for _ in range(3))
    a = torch.tensor(0.6)
    call = {
        "tied": lambda h, s, x: kernels.blend_multiply(h, s, a, h),
        "detached": lambda h, s, x: kernels.blend_multiply_detached(h, s, a),
        "separate": lambda h, s, x: kernels.blend_multiply(h, s, a, x),
    }[variant]
    function = {
        "tied": lambda h, s, x: BlendMultiplyEagerCpu.apply(h, s, a, None, True),
        "detached": lambda h, s, x: BlendMultiplyEagerCpu.apply(h, s, a, None, False),
        "separate": lambda h, s, x: BlendMultiplyEagerCpu.apply(h, s, a, x, False),
    }[variant]
    torch.manual_seed(3)
    y, g = grads(call, host, seed, s_in)
    torch.manual_seed(3)
    y_ref, g_ref = grads(function, host, seed, s_in)
    assert torch.equal(y, y_ref)
    for got, want in zip(g, g_ref):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_an_open_gradient_gate_is_its_input_eagerly_and_a_closed_one_zeroes():
    x = torch.randn(3, 4, requires_grad=True)
    assert gradient_gate(x, torch.tensor(False)) is x
    y = gradient_gate(x, torch.tensor(True))
    assert y is not x and y.grad_fn is not None
    (gx,) = torch.autograd.grad((y * 2).sum(), x)
    assert torch.equal(gx, torch.zeros_like(x))
    # Under torch.compile the gate stays the Function (its flag is read at run time).
    closed = torch.tensor(False)
    compiled = torch.compile(
        lambda t: GradientGate.apply(t, closed) * 3, fullgraph=True, backend="eager"
    )
    (gc,) = torch.autograd.grad(compiled(x).sum(), x)
    assert torch.equal(gc, torch.full_like(x, 3.0))
