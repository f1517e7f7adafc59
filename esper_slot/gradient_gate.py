"""A gradient gate: identity forward, and a backward that passes or zeroes the gradient as a
one-element bool tensor says at run time.

SeedSlot feeds its seed ``gradient_gate(host, isolating)`` (isolation per stage) and gates the
seed's output with ``seed_frozen`` (a scheduled prune's ramp-down). Because the switch is tensor
data, flipping it never recompiles a compiled graph, where a Python ``host.detach()`` branch
would. Exactness: a closed gate adds exact zeros, so the host's gradient equals that of the model
without the seed (a NaN or Inf from the seed's backward is replaced, not multiplied, by zero).
"""

from __future__ import annotations

import torch
from torch import Tensor


class GradientGate(torch.autograd.Function):
    """Saves only a copy of the one-element flag; returns a view of x (no copy of x)."""

    @staticmethod
    def forward(ctx, x, closed):
        # A snapshot, not the live buffer: a lifecycle call between forward and backward fills
        # the buffer in place, and backward must use the flag this forward ran with.
        ctx.save_for_backward(closed.clone())
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        (closed,) = ctx.saved_tensors
        return grad.masked_fill(closed, 0), None


def gradient_gate(x: Tensor, closed: Tensor) -> Tensor:
    """x's values; dL/dx = 0 while ``closed`` (a 0-d bool tensor on x's device) holds True,
    else dL/dy unchanged. Eager on a CPU, an open gate is x itself: the flag is read for free
    there, and backward would have used this same snapshot of it (about 60 us of autograd
    Function per call saved, five gates per step in a two-slot transformer)."""
    if not torch.compiler.is_compiling() and closed.is_cpu and not closed.item():
        return x
    return GradientGate.apply(x, closed)
