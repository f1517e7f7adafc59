"""The operators written as plain differentiable PyTorch, straight from the semantics table
(docs/semantics.md). Inputs are promoted to the compute dtype (float64 for float64
hosts, float32 otherwise) after seed/seed_input are cast to host's dtype; the result is rounded
to host's dtype. autograd supplies every gradient, including alpha's and gate's clamp rule."""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(host: Tensor) -> torch.dtype:
    return torch.float64 if host.dtype == torch.float64 else torch.float32


def _coef(coef: Tensor, host: Tensor) -> Tensor:
    shape = (coef.numel(),) + (1,) * (host.dim() - 1) if host.dim() else ()
    return coef.to(compute_dtype(host)).reshape(shape).clamp(0, 1)


def _cast(t: Tensor, host: Tensor) -> Tensor:
    return t.to(host.dtype).to(compute_dtype(host))


def ste(host: Tensor, seed: Tensor) -> Tensor:
    return host + (seed.to(host.dtype) - seed.to(host.dtype).detach())


def blend_add(host: Tensor, seed: Tensor, alpha: Tensor) -> Tensor:
    a = _coef(alpha, host)
    return torch.lerp(_cast(host, host), _cast(seed, host), a.expand_as(host)).to(host.dtype)


def blend_gate(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor) -> Tensor:
    e = (_coef(alpha, host) * _coef(gate, host)).clamp(0, 1)
    return torch.lerp(_cast(host, host), _cast(seed, host), e.expand_as(host)).to(host.dtype)


def blend_multiply(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor) -> Tensor:
    a = _coef(alpha, host)
    t = torch.tanh(_cast(seed, host) - _cast(seed_input, host))
    return (_cast(host, host) * (1 + a * t)).to(host.dtype)
