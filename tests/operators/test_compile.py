"""torch.compile(fullgraph=True): every operator, forward and backward, zero graph breaks, the
same values and gradients as eager, and no recompiles when alpha's value changes."""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

import kernels


def all_ops(h, s, a, gate, s_in):
    y = kernels.ste(h, s) * 2
    y = y + kernels.blend_add(h, s, a)
    y = y + kernels.blend_gate(h, s, a, gate)
    y = y + kernels.blend_multiply(h, s, a, s_in)
    y = y + kernels.blend_multiply(h, s, a, h)
    y = y + kernels.blend_multiply_detached(h, s, a)
    return y.sin()


def inputs(device):
    h = torch.randn(4, 3, 8, 8, device=device).to(memory_format=torch.channels_last)
    s = torch.randn(4, 3, 8, 8, device=device)
    return [
        h,
        s,
        torch.tensor(0.3, device=device),
        torch.rand(4, 1, 1, 1, device=device),
        torch.randn(4, 3, 8, 8, device=device),
    ]


def test_fullgraph_matches_eager_with_zero_graph_breaks(device):
    torch._dynamo.reset()
    counters.clear()
    args = [t.requires_grad_() for t in inputs(device)]
    ref_args = [t.detach().clone().requires_grad_() for t in args]
    compiled = torch.compile(all_ops, fullgraph=True)
    y = compiled(*args)
    y.sum().backward()
    y_ref = all_ops(*ref_args)
    y_ref.sum().backward()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(args, ref_args):
        # alpha sums six operators' contributions over 768 elements each
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4)


def test_alpha_changes_never_recompile(device):
    torch._dynamo.reset()
    counters.clear()
    h, s, alpha, gate, _ = inputs(device)
    h.requires_grad_()
    step = torch.compile(
        lambda h, s, a, g: kernels.blend_gate(h, s, a, g).square().sum(),
        fullgraph=True,
        backend="aot_eager",
    )
    for i in range(21):  # a 20-step ramp, alpha updated in place like a slot's buffer
        alpha.fill_(i / 20)
        gate.uniform_()
        loss = step(h, s, alpha, gate)
        loss.backward()
        want = kernels.blend_gate(h.detach(), s, alpha, gate).square().sum()
        torch.testing.assert_close(loss.detach(), want)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    assert sum(counters["recompiles"].values()) == 0
