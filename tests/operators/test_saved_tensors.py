"""What each operator keeps for backward: its inputs only (never a fresh input-sized tensor),
and nothing it does not need."""

from __future__ import annotations

import pytest
import torch

import kernels
from tests.support.cases import make_case
from tests.support.checks import saved_during, storage

# (op, input-sized tensors saved, coefficient tensors saved), all coefficients requiring grad
EXPECTED = [
    ("ste", 0, 0),
    ("add", 2, 1),
    ("gate", 2, 2),
    ("multiply", 3, 1),
    ("multiply_tied", 2, 1),
    ("multiply_detached", 2, 1),
]


def keeps_tanh(op, device):
    """blend_multiply on the eager CPU path keeps host, alpha and tanh(seed - seed_input)
    (float32 here), a documented trade of memory for speed (BlendMultiplyEagerCpu)."""
    return (
        op.startswith("multiply")
        and torch.device(device).type == "cpu"
        and kernels.active_backend(device) == "torch"
    )


@pytest.mark.parametrize("op,large,small", EXPECTED)
def test_saves_only_inputs(op, large, small, device):
    case = make_case(op, (4, 8, 6, 6), torch.bfloat16, device, alpha="per_sample")
    y, saved = saved_during(case.ours, *case.args)
    saved = [t for t in saved if t is not None]
    inputs = {storage(a) for a in case.args}
    fresh = [t for t in saved if storage(t) not in inputs]
    if keeps_tanh(op, device):
        assert [(t.shape, t.dtype) for t in fresh] == [(y.shape, torch.float32)]
        saved = [t for t in saved if storage(t) in inputs]
        large, small = 1, 1  # host and alpha
    else:
        assert not fresh, "a fresh tensor was saved for backward"
    assert sum(t.numel() == y.numel() for t in saved) == large
    assert sum(t.numel() < y.numel() for t in saved) == small


def test_add_with_buffer_alpha_keeps_nothing_input_sized(device):
    """The slot's alpha is a buffer: backward needs only g and alpha, so neither host nor the
    seed's output is kept alive for it (at most alpha; the eager CPU path's torch.lerp with a
    number weight keeps nothing)."""
    host = torch.randn(4, 8, device=device, requires_grad=True)
    seed = torch.randn(4, 8, device=device, requires_grad=True)
    alpha = torch.tensor(0.4, device=device)
    _, saved = saved_during(kernels.blend_add, host, seed, alpha)
    kept = {storage(t) for t in saved if t is not None}
    assert kept <= {storage(alpha)}


def test_eager_formula_keeps_more(device):
    """For contrast: esper-lite's multiply formula keeps extra input-sized tensors."""
    case = make_case("multiply", (4, 8, 6, 6), torch.float32, device, alpha="per_sample")
    h, s, a, s_in = case.args
    _, saved = saved_during(lambda: h * (1 + a.clamp(0, 1) * torch.tanh(s - s_in)))
    inputs = {storage(x) for x in case.args}
    fresh = [t for t in saved if t.numel() == h.numel() and storage(t) not in inputs]
    assert len(fresh) >= 2
