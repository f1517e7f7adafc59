"""What every implementation of the multiply op pair allocates: the Triton launchers, the
PyTorch path and the fakes all call this, so the fakes mirror the real outputs by construction.

Gradient outputs are laid out like host (host's shape and layout), each in its input's dtype;
a gradient that is not needed (or seed_input's when seed_input is None, i.e. host's values) is
an empty tensor of its dtype: the ops' schemas return four tensors, never None.
"""

from __future__ import annotations

import torch
from torch import Tensor


def alloc_grads(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    need_host: bool,
    need_seed: bool,
    need_alpha: bool,
    need_seed_input: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(grad_host, grad_seed, grad_alpha, grad_seed_input), uninitialised."""

    def like_host(needed: bool, dtype: torch.dtype) -> Tensor:
        return torch.empty_like(host, dtype=dtype) if needed else host.new_empty((0,), dtype=dtype)

    seed_input_dtype = host.dtype if seed_input is None or not need_seed_input else seed_input.dtype
    return (
        like_host(need_host, host.dtype),
        like_host(need_seed, seed.dtype),
        alpha.new_empty(alpha.shape if need_alpha else (0,)),
        like_host(need_seed_input and seed_input is not None, seed_input_dtype),
    )
