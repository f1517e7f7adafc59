"""ste: the straight-through estimator. Forward returns host's values; backward passes the
incoming gradient unchanged to host and to seed.

No kernel of ours either way. By default the forward returns a zero-copy alias of host (as a
slot with no seed returns host itself), so it moves no bytes; backward hands the same gradient to
both inputs (autograd casts seed's copy to seed's dtype). Because the output aliases host, PyTorch
refuses in-place ops on it (``ReLU(inplace=True)`` after it raises; an error, never a wrong
gradient). ``copy=True`` returns a fresh tensor instead (one read and one write of host), which
in-place consumers accept; SeedSlot uses it, since a host that worked with an empty slot must keep
working when a seed is germinated.

Nothing here is opaque to torch.compile (a view and a custom backward), so there is no registered
op to pay a dispatch boundary for.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_pair, distinct


class StraightThrough(torch.autograd.Function):
    """Autograd boundary of ste; saves nothing."""

    @staticmethod
    def forward(ctx, host, seed, copy):
        return host.clone() if copy else host.view_as(host)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad, None


def ste(host: Tensor, seed: Tensor, *, copy: bool = False) -> Tensor:
    """Return host's values with gradients flowing straight through to host and seed.

    Args:
        host: floating tensor of any shape and layout.
        seed: floating tensor of host's shape on host's device (any floating dtype).
        copy: False (default): return a zero-copy alias of host (no in-place ops on it).
            True: return a copy in host's layout, safe for in-place consumers.
    Returns:
        host's values, dtype, shape and strides.
    Gradients: dL/dhost = dL/dseed = dL/dy (cast to seed's dtype for seed).
    """
    check_pair("ste", host, seed, "seed")
    if not isinstance(copy, bool):
        raise ValueError(f"ste: copy must be a bool, got {copy!r}")
    return StraightThrough.apply(*distinct(host, seed), copy)
