"""The lerp family's eager-CPU shortcuts: torch.lerp with native autograd wherever its numerics
are the contract's, so a CPU call pays neither an autograd.Function's Python nor a registered
op's dispatch (on a CPU the per-call overhead, not memory traffic, decides the speed: every tiny
op costs microseconds, as much as lerp itself at 64K elements).

torch.lerp gives the contract's bits for a Python-number weight (lerp then computes in float32,
or float64, for every dtype) and for a tensor weight in float32/float64. It does not for a tensor
weight with a bfloat16/float16 host (lerp would round the weight to that dtype): those calls get
None here and run the PyTorch path (torch_path.BlendLerpEager). lerp's autograd saves nothing
input-sized for a weight that needs no gradient, and only host and seed (inputs) for one that
does.
"""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor

from .._layout import compute_dtype, is_dense, needs_grad, same_dense_layout, unit_clamp
from .torch_path import weight

_FLOATING = frozenset({torch.float32, torch.float64, torch.bfloat16, torch.float16})
_WEIGHT_DTYPES = frozenset({torch.float32, torch.float64})  # where lerp's tensor weight is exact


def fast_cpu_lerp(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor | None:
    """The commonest eager CPU calls, checked and dispatched in ~3 us (the formulas spend ~4 us
    on their tiny weight ops): plain CPU tensors, seed of host's dtype, shape and strides, host
    contiguous, a one-element alpha that needs no gradient, and no gate (blend_add) or a
    per-sample [B, 1, ..., 1] gate of host's dtype in float32/float64 (blend_gate with the
    slot's gate network). The result is exactly what native_lerp computes for the same call.
    None for anything else, which takes the full route (validation first). Types and dtypes are
    compared by identity: eager only, never traced."""
    tensor = Tensor
    if not (
        type(host) is tensor
        and type(seed) is tensor
        and type(alpha) is tensor
        and host.is_cpu
        and seed.is_cpu
        and alpha.is_cpu
        and host.dtype in _FLOATING
        and seed.dtype is host.dtype
        and alpha.dtype in _FLOATING
        and host is not seed
        and alpha is not host
        and alpha is not seed
        and alpha.numel() == 1
        and (alpha.dim() <= host.dim() or alpha.dim() == 1)
        and host.shape == seed.shape
        and host.is_contiguous()
        and seed.stride() == host.stride()
        and not torch.compiler.is_compiling()
    ):
        return None
    if alpha.requires_grad and torch.is_grad_enabled():
        return None
    if gate is None:
        return torch.lerp(host, seed, unit_clamp(alpha))
    if not (
        type(gate) is tensor
        and gate.is_cpu
        and gate.dtype is host.dtype
        and host.dtype in _WEIGHT_DTYPES
        and gate.dim() == host.dim()
        and 1 < gate.numel() == gate.shape[0] == host.shape[0]
        and gate is not host
        and gate is not seed
        and gate is not alpha
    ):
        return None
    return torch.lerp(host, seed, torch.mul(gate.clamp(0, 1), unit_clamp(alpha)))


def eager_lerp(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor | None:
    """native_lerp for validated eager CPU tensors, seed already in host's dtype, or None where
    it does not apply: a host or seed that is not dense, or numerics that are not the
    contract's. Host and seed in different dense layouts (a batch_first attention output, a
    transposed view, next to a contiguous seed) run natively too; the result is then copied
    into host's layout only if lerp chose another (a differentiable copy: one pass, where
    BlendLerp's Python backward costs hundreds of microseconds at small sizes)."""
    if same_dense_layout(host, seed):
        return native_lerp(host, seed, alpha, gate)
    if not (is_dense(host) and is_dense(seed)):
        return None
    out = native_lerp(host, seed, alpha, gate)
    if out is not None and out.stride() != host.stride():
        out = torch.empty_like(host).copy_(out)  # host's layout (the contract)
    return out


def native_lerp(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor | None:
    """torch.lerp with the fewest weight ops, or None where its numerics are not the
    contract's (see the module docstring). seed is in host's dtype."""
    c = compute_dtype(host.dtype)
    if needs_grad(alpha) or alpha.numel() > 1:
        if host.dtype != c:
            return None
        return torch.lerp(host, seed, weight(host, alpha, gate))
    if gate is None:
        return torch.lerp(host, seed, unit_clamp(alpha))
    if gate.numel() == 1 and not needs_grad(gate):
        return torch.lerp(host, seed, product_weight(unit_clamp(alpha), unit_clamp(gate), c))
    if host.dtype != c or gate.dim() > host.dim():
        return None
    # gate broadcasts against host as it is (check_coefficient); clamp(g) * a stays in [0, 1],
    # so the contract's outer clamp changes neither the value nor the gradient.
    gate = gate if gate.dtype == c else gate.to(c)
    return torch.lerp(host, seed, torch.mul(gate.clamp(0, 1), unit_clamp(alpha)))


def product_weight(a: float, g: float, c: torch.dtype) -> float:
    """clamp(a * g, 0, 1) rounded as the kernels compute it in ``c`` (the product of two
    float32 values is exact in a Python float; rounding it to float32 is the float32 product)."""
    w = a * g
    if c == torch.float32:
        w = struct.unpack("f", struct.pack("f", w))[0]
    return w if math.isnan(w) else min(max(w, 0.0), 1.0)
