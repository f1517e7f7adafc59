"""The blend operators' ``incubate`` flag (SeedSlot's TRAINING stage as tensor data).

While it holds True, every blend operator must be exactly ``ste(host, seed, copy=True)``: host's
bits out (even for a NaN/Inf seed), dL/dhost = dL/dseed = g, zero gradients for alpha, gate and
seed_input. While it holds False, the operator must be bit for bit the plain blend. Flipping it
must never recompile a compiled graph."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import kernels
from tests.support.cases import BLEND_OPS, make_case
from tests.support.checks import saved_during, storage

DTYPES = [torch.float32, torch.bfloat16, torch.float64]


def call(case, flag):
    return case.ours(*case.args, incubate=flag)


def grads_of(y, args, grad):
    wanted = [a for a in args if a.requires_grad]
    return torch.autograd.grad(y, wanted, grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("host_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("alpha", ["scalar", "per_sample"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_incubating_is_the_straight_through_estimator(op, alpha, host_layout, dtype, device):
    case = make_case(
        op,
        (3, 4, 5, 6),
        dtype,
        device,
        alpha=alpha,
        host_layout=host_layout,
        seed_dtype=torch.float32 if dtype == torch.bfloat16 else None,
    )
    host, seed = case.args[:2]
    y = call(case, torch.tensor(True, device=device))
    assert y.dtype == host.dtype and y.stride() == torch.empty_like(host).stride()
    assert torch.equal(y, host) and y.data_ptr() != host.data_ptr()  # a copy, host's bits
    grad = torch.randn_like(host)
    grads = grads_of(y, case.args, grad)
    assert torch.equal(grads[0], grad)
    assert grads[1].dtype == seed.dtype and torch.equal(grads[1], grad.to(seed.dtype))
    for arg, g in zip(case.args[2:], grads[2:]):  # alpha, gate, seed_input: zero, exactly
        assert g.shape == arg.shape and g.dtype == arg.dtype and not g.any()


@pytest.mark.parametrize("alpha", ["scalar", "per_sample", "wide"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_not_incubating_is_the_plain_blend_bit_for_bit(op, alpha, device):
    case = make_case(op, (3, 4, 5, 6), torch.bfloat16, device, alpha=alpha)
    grad = torch.randn(case.args[0].shape, dtype=torch.bfloat16, device=device)
    plain = case.ours(*case.args)
    flagged = call(case, torch.tensor([False], device=device))
    assert torch.equal(plain, flagged)
    for a, b in zip(grads_of(plain, case.args, grad), grads_of(flagged, case.args, grad)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("op", BLEND_OPS)
def test_gradcheck_while_blending(op, device):
    """float64 gradcheck of every input with the flag present and False (with the flag True
    the STE's gradient is by design not the forward's derivative)."""
    case = make_case(op, (2, 3, 4), torch.float64, device, alpha="per_sample")
    flag = torch.tensor(False, device=device)
    args = case.clone_args()
    if op == "multiply_detached":  # host's gradient omits the seed_input path by design
        host = args[0].detach()
        assert torch.autograd.gradcheck(lambda s, a: case.ours(host, s, a, incubate=flag), args[1:])
        return
    assert torch.autograd.gradcheck(lambda *a: case.ours(*a, incubate=flag), args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
@pytest.mark.parametrize("op", BLEND_OPS)
def test_non_finite_seed_is_hidden_while_incubating_and_propagated_when_blending(op, bad, device):
    case = make_case(op, (2, 3, 4, 5), torch.float32, device, alpha="scalar")
    host, seed = case.args[:2]
    with torch.no_grad():
        seed[0, 1] = bad
    y = call(case, torch.tensor(True, device=device))
    assert torch.equal(y, host)
    grad = torch.randn_like(host)
    assert all(g.isfinite().all() for g in grads_of(y, case.args, grad))
    # Blending: exactly what the formula (tests/support/reference.py) does with it, NaNs where
    # it has them.
    with warnings.catch_warnings():  # inf - inf under the interpreter: deliberate here
        warnings.simplefilter("ignore", RuntimeWarning)
        blended = call(case, torch.tensor(False, device=device))
    want = case.ref(*case.args)
    if bad != bad or not op.startswith("multiply"):  # tanh saturates: multiply absorbs +-inf
        assert not blended[0, 1].isfinite().all()
    torch.testing.assert_close(blended, want, equal_nan=True, rtol=1e-5, atol=1e-6)


def test_buffer_alpha_keeps_only_alpha_and_the_flag(device):
    """The slot's case (alpha a buffer, add mode): nothing input-sized is kept for backward."""
    host = torch.randn(4, 8, device=device, requires_grad=True)
    seed = torch.randn(4, 8, device=device, requires_grad=True)
    alpha, flag = torch.tensor(0.0, device=device), torch.tensor(True, device=device)
    _, saved = saved_during(lambda: kernels.blend_add(host, seed, alpha, incubate=flag))
    assert {storage(t) for t in saved if t is not None} <= {storage(alpha), storage(flag)}


@pytest.mark.parametrize(
    "bad,message",
    [
        (1.0, "incubate must be None or a bool tensor, got float"),
        (torch.tensor(1.0), "must be a 0-d or [1] torch.bool tensor, got dtype torch.float32"),
        (torch.tensor([True, False]), "shape [2]"),
        (torch.ones(1, 1, dtype=torch.bool), "shape [1, 1]"),
    ],
)
def test_bad_flags_are_refused(bad, message):
    h = torch.randn(2, 3)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        kernels.blend_add(h, h.clone(), torch.tensor(0.5), incubate=bad)
    with pytest.raises(ValueError, match="incubate"):
        kernels.blend_multiply_detached(h, h.clone(), torch.tensor(0.5), incubate=bad)


def test_flipping_the_flag_never_recompiles(device):
    torch._dynamo.reset()
    counters.clear()
    h = torch.randn(4, 3, 8, 8, device=device, requires_grad=True)
    s = torch.randn(4, 3, 8, 8, device=device, requires_grad=True)
    alpha = torch.tensor(0.3, device=device)
    flag = torch.tensor(True, device=device)

    def step(h, s, a, flag):
        y = kernels.blend_add(h, s, a, incubate=flag) + kernels.blend_multiply(
            h, s, a, h, incubate=flag
        )
        return y.sin().sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for incubating in (True, False, True, False):
        flag.fill_(incubating)
        got = torch.autograd.grad(compiled(h, s, alpha, flag), (h, s))
        want = torch.autograd.grad(step(h, s, alpha, flag), (h, s))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    assert counters["stats"]["unique_graphs"] == 1
    assert sum(counters["recompiles"].values()) == 0 and not counters["graph_break"]
