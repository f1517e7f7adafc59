"""ste: the straight-through estimator. Forward returns host's values; backward passes the
incoming gradient unchanged to host and to seed.

No kernel either way. The forward returns a zero-copy alias of host (as a slot with no seed
returns host itself), so it moves no bytes; backward hands the same gradient to both inputs
(autograd casts seed's copy to seed's dtype). Because the output aliases host, PyTorch refuses
in-place ops on it (an error, never a wrong gradient): use an out-of-place op after it, e.g.
``relu`` instead of ``relu_`` / ``ReLU(inplace=True)``, or ``.clone()`` it first.

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
    def forward(ctx, host, seed):
        return host.view_as(host)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def ste(host: Tensor, seed: Tensor) -> Tensor:
    """Return host's values with gradients flowing straight through to host and seed.

    Args:
        host: floating tensor of any shape and layout.
        seed: floating tensor of host's shape on host's device (any floating dtype).
    Returns:
        A zero-copy alias of host (same dtype, shape, strides and storage).
    Gradients: dL/dhost = dL/dseed = dL/dy (cast to seed's dtype for seed).
    """
    check_pair("ste", host, seed, "seed")
    return StraightThrough.apply(*distinct(host, seed))
