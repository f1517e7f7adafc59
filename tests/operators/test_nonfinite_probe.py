"""The operators' ``nonfinite`` probe, on both backends (under TRITON_INTERPRET=1 the Triton
kernels set it from the seed values they load; the PyTorch path takes a min/max): set exactly
when the seed holds NaN or Inf, in the blend and in the incubator, never cleared, results
unchanged; and the slot's count of non-finite seed outputs through it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kernels
from esper_slot import BlendMode, SeedSlot, check_grad_flow
from tests.support.cases import layout

OPS = {
    "add": lambda h, s, a, **kw: kernels.blend_add(h, s, a, **kw),
    "gate": lambda h, s, a, **kw: kernels.blend_gate(
        h, s, a, torch.rand(h.shape[0], 1, 1, 1, device=h.device), **kw
    ),
    "multiply": lambda h, s, a, **kw: kernels.blend_multiply(h, s, a, h, **kw),
    "multiply_detached": lambda h, s, a, **kw: kernels.blend_multiply_detached(h, s, a, **kw),
}
FLAGS = {"none": None, "incubating": True, "blending": False}


def probe(device, value=0):
    return torch.full((1,), value, dtype=torch.int32, device=device)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_probe_is_set_exactly_when_the_seed_is_not_finite(op, flag, dtype, device):
    torch.manual_seed(0)
    shape = (3, 4, 7, 13)  # 1092 elements: a partial last block
    host = layout(torch.randn(shape, dtype=dtype), "channels_last").to(device)
    seed = torch.randn(shape, dtype=dtype, device=device)
    alpha = torch.tensor(0.4, device=device)
    incubate = None if FLAGS[flag] is None else torch.tensor(FLAGS[flag], device=device)
    plain = OPS[op](host, seed, alpha, incubate=incubate)
    clean = probe(device)
    torch.manual_seed(1)  # the gate's random values again
    with_probe = OPS[op](host, seed, alpha, incubate=incubate, nonfinite=clean)
    torch.manual_seed(1)
    if op != "gate":
        assert torch.equal(with_probe, plain)  # probing changes no result
    assert clean.item() == 0
    for index, value in [
        ((0, 0, 0, 0), math.nan),
        ((2, 3, 6, 12), math.inf),
        ((1, 2, 3, 4), -math.inf),
    ]:
        bad = seed.clone()
        bad[index] = value
        found = probe(device)
        OPS[op](host, bad, alpha, incubate=incubate, nonfinite=found)
        assert found.item() == 1, (index, value)
    kept = probe(device, 1)
    OPS[op](host, seed, alpha, incubate=incubate, nonfinite=kept)
    assert kept.item() == 1  # never cleared by the operator


def test_probe_with_gradients_and_under_compile(device):
    host = torch.randn(2, 8, device=device, requires_grad=True)
    seed = torch.randn(2, 8, device=device, requires_grad=True)
    seed_nan = seed.detach().clone()
    seed_nan[1, 7] = math.nan
    alpha = torch.tensor(0.5, device=device)
    found = probe(device)
    kernels.blend_add(host, seed_nan.requires_grad_(), alpha, nonfinite=found).sum().backward()
    assert found.item() == 1 and host.grad is not None

    compiled = torch.compile(
        lambda h, s, p: kernels.blend_add(h, s, alpha, nonfinite=p),
        fullgraph=True,
        backend="aot_eager",
    )
    clean, dirty = probe(device), probe(device)
    compiled(host.detach(), seed.detach(), clean)
    compiled(host.detach(), seed_nan.detach(), dirty)
    assert (clean.item(), dirty.item()) == (0, 1)


def test_bad_probe_arguments(device):
    h, s, a = (
        torch.randn(2, 3, device=device),
        torch.randn(2, 3, device=device),
        torch.tensor(0.5, device=device),
    )
    for bad in (
        torch.zeros(1, device=device),
        torch.zeros(2, dtype=torch.int32, device=device),
        torch.zeros(1, dtype=torch.int64, device=device),
        0,
    ):
        with pytest.raises(ValueError, match="nonfinite must be a one-element int32"):
            kernels.blend_add(h, s, a, nonfinite=bad)
        with pytest.raises(ValueError, match="nonfinite"):
            kernels.blend_multiply(h, s, a, h, nonfinite=bad)


class NanAfter(nn.Module):
    """A seed whose output is non-finite on the calls listed in ``bad``."""

    def __init__(self, channels, bad):
        super().__init__()
        self.linear = nn.Linear(channels, channels)
        self.bad, self.calls = set(bad), 0

    def forward(self, x):
        self.calls += 1
        y = self.linear(x)
        return y * math.inf if self.calls in self.bad else y


@pytest.mark.parametrize("mode", list(BlendMode))
def test_the_slot_counts_non_finite_seed_outputs_in_every_stage(mode, device):
    """Through whichever path the backend takes: the kernels' probe on the Triton backend,
    the min/max on the PyTorch path. Passes 2 and 4 (TRAINING) and 6 (BLENDING) are bad."""
    slot = SeedSlot(6, "transformer").to(device)
    slot.germinate(NanAfter(6, bad={2, 4, 6}), blend=mode)
    x = torch.randn(2, 5, 6, device=device)
    for call in range(1, 7):
        if call == 5:
            slot.start_blending(3)
        slot(x)
    slot.eval()
    slot(x)  # eval passes are not recorded (call 7 is clean anyway)
    assert check_grad_flow(slot)["<root>"].seed_output_non_finite == 3
