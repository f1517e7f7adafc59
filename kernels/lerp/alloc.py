"""What every implementation of the lerp op pair allocates: the Triton launchers, the PyTorch
path and the fakes all call these, so the fakes mirror the real outputs by construction.

Gradient outputs are laid out like ``like``: host when it was kept for backward (a coefficient
needs a gradient), else the incoming gradient (the output's dtype, shape and usually layout).
A gradient that is not needed is an empty tensor of its dtype: the ops' schemas return four
tensors, never None.
"""

from __future__ import annotations

import torch
from torch import Tensor


def per_sample(alpha: Tensor, gate: Tensor | None) -> bool:
    """Whether the weight varies per sample ([B, 1, ..., 1] alpha or gate with B > 1)."""
    return alpha.numel() > 1 or (gate is not None and gate.numel() > 1)


def alloc_grads(
    like: Tensor, seed_dtype: torch.dtype, need_host: bool, need_seed: bool
) -> tuple[Tensor, Tensor]:
    """(grad_host, grad_seed): like's dtype/shape/layout, grad_seed in the seed's own dtype."""
    grad_host = torch.empty_like(like) if need_host else like.new_empty((0,))
    grad_seed = (
        torch.empty_like(like, dtype=seed_dtype)
        if need_seed
        else like.new_empty((0,), dtype=seed_dtype)
    )
    return grad_host, grad_seed


def coef_grads_like(
    alpha: Tensor, gate: Tensor | None, need_alpha: bool, need_gate: bool
) -> tuple[Tensor, Tensor]:
    """(grad_alpha, grad_gate) as allocated (uninitialised): each coefficient's shape and dtype
    when needed, else empty (grad_gate in alpha's dtype without a gate)."""
    grad_alpha = alpha.new_empty(alpha.shape if need_alpha else (0,))
    other = gate if gate is not None else alpha
    grad_gate = other.new_empty(gate.shape if need_gate and gate is not None else (0,))
    return grad_alpha, grad_gate


def zero_coef_grads(
    alpha: Tensor, gate: Tensor | None, need_alpha: bool, need_gate: bool
) -> tuple[Tensor, Tensor]:
    """coef_grads_like, zero-filled: the coefficients' gradients when there is nothing to sum
    (no elements, or the incubator's straight-through backward)."""
    grad_alpha = torch.zeros_like(alpha) if need_alpha else alpha.new_empty((0,))
    other = gate if gate is not None else alpha
    grad_gate = torch.zeros_like(gate) if need_gate and gate is not None else other.new_empty((0,))
    return grad_alpha, grad_gate
