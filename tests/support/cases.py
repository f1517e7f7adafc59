"""Test inputs: one ``Case`` per operator variant, with our call and the reference call over
the same argument tuple."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import kernels
from tests.support import reference

OPS = ("ste", "add", "multiply", "multiply_tied", "multiply_detached", "gate")
BLEND_OPS = OPS[1:]


@dataclass
class Case:
    op: str
    args: tuple[Tensor, ...]
    ours: Callable[..., Tensor]
    ref: Callable[..., Tensor]

    def clone_args(self) -> tuple[Tensor, ...]:
        return tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in self.args)


def coef(kind: str, batch: int, ndim: int, dtype, device, low=0.05, high=0.95) -> Tensor:
    """alpha/gate: 'scalar' (0-d), 'one' ([1]), 'per_sample' ([B, 1, ..., 1]), or 'wide'
    (per-sample with values outside [0, 1], to exercise the clamp's zero gradient)."""
    if kind == "scalar":
        shape = ()
    elif kind == "one":
        shape = (1,)
    else:
        shape = (batch,) + (1,) * (ndim - 1)
    lo, hi = (-0.5, 1.5) if kind == "wide" else (low, high)
    t = torch.empty(shape, dtype=torch.float64).uniform_(lo, hi)
    if kind == "wide":  # keep values off the clamp's kinks so finite differences are valid
        t = torch.where((t - 0).abs() < 0.05, t + 0.1, t)
        t = torch.where((t - 1).abs() < 0.05, t + 0.1, t)
    return t.to(dtype=dtype, device=device)


def layout(t: Tensor, kind: str) -> Tensor:
    """'contiguous', 'channels_last' (4-D), or 'permuted' (a dense non-contiguous layout)."""
    if kind == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if kind == "permuted" and t.dim() >= 2:
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    return t.contiguous()


def make_case(
    op: str,
    shape=(2, 3, 4, 5),
    dtype=torch.float32,
    device="cpu",
    alpha="scalar",
    gate="per_sample",
    host_layout="contiguous",
    seed_layout=None,
    seed_dtype=None,
    requires_grad=True,
) -> Case:
    batch, ndim = (shape[0] if shape else 1), len(shape)

    def tensor(kind, dt=dtype):
        return layout(torch.randn(shape, dtype=torch.float64).to(dt), kind).to(device)

    host = tensor(host_layout)
    seed = tensor(seed_layout or host_layout, seed_dtype or dtype)
    a = coef(alpha, batch, ndim, dtype, device)
    tensors = [host, seed, a]
    if op == "ste":
        tensors = [host, seed]
    elif op == "gate":
        tensors.append(coef(gate, batch, ndim, dtype, device))
    elif op == "multiply":
        tensors.append(tensor(host_layout, seed_dtype or dtype) * 0.5)
    args = tuple(t.requires_grad_(requires_grad) for t in tensors)
    ours, ref = {
        "ste": (kernels.ste, reference.ste),
        "add": (kernels.blend_add, reference.blend_add),
        "gate": (kernels.blend_gate, reference.blend_gate),
        "multiply": (kernels.blend_multiply, reference.blend_multiply),
        "multiply_tied": (
            lambda h, s, a, **kw: kernels.blend_multiply(h, s, a, h, **kw),
            lambda h, s, a: reference.blend_multiply(h, s, a, h),
        ),
        "multiply_detached": (
            kernels.blend_multiply_detached,
            lambda h, s, a: reference.blend_multiply(h, s, a, h.detach()),
        ),
    }[op]
    return Case(op, args, ours, ref)
