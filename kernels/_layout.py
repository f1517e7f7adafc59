"""Memory layout and launch geometry for the elementwise kernels.

The kernels walk memory linearly, so every operand must share one dense layout: the output's.
Outputs are ``torch.empty_like(host)`` (host's dtype, shape and, for a dense host, strides, which
keeps channels_last and other dense permutations). Operands in another layout are copied into it
first: one extra pass, paid only when layouts differ.

A per-sample coefficient ([B, 1, ..., 1]) needs every sample to be one contiguous run of memory,
i.e. the batch dim outermost. When it is not (say a transposed [B, T] tensor), the kernels run on
contiguous temporaries that are then copied into the outputs ("staged").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_BLOCK = 1024
MIN_BLOCK = 16
INT32_MAX = 2**31 - 1


def is_dense(t: Tensor) -> bool:
    """True when t's elements fill one gap-free, non-overlapping span of memory."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def in_layout(t: Tensor, strides: tuple[int, ...]) -> Tensor:
    """``t`` itself when it is dense with these strides, else a copy laid out with them.

    The dtype is kept: the kernels cast on load, which reads fewer bytes than a cast copy."""
    same = all(sz == 1 or a == b for sz, a, b in zip(t.shape, t.stride(), strides))
    if same and is_dense(t):
        return t
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


@dataclass(frozen=True)
class Geometry:
    """The flat work range as ``outer`` samples of ``inner`` contiguous elements each.

    Program ``p`` handles ``block`` elements of sample ``p // blocks_per_sample``, so a per-sample
    coefficient costs one scalar load per program and no per-element division."""

    outer: int
    inner: int
    block: int
    strides: tuple[int, ...]  # the layout every operand is put in
    staged: bool  # strides differ from the outputs': run on temporaries, then copy

    @property
    def blocks_per_sample(self) -> int:
        return -(-self.inner // self.block)

    @property
    def grid(self) -> tuple[int]:
        return (self.outer * self.blocks_per_sample,)

    @property
    def use_int64(self) -> bool:
        # Masked lanes of a sample's last block reach at most numel + block - 1.
        return self.outer * self.inner + self.block > INT32_MAX

    @property
    def num_warps(self) -> int:
        return max(1, min(8, self.block // 256))

    def work(self, out: Tensor) -> Tensor:
        """Where a kernel writes ``out``: itself, or a temporary in the work layout."""
        if not self.staged:
            return out
        return torch.empty_strided(out.shape, self.strides, dtype=out.dtype, device=out.device)


def geometry(ref: Tensor, per_sample: bool) -> Geometry:
    """Geometry for outputs laid out like ``ref`` (a dense tensor)."""
    numel = ref.numel()
    outer = ref.shape[0] if per_sample and ref.dim() >= 1 and numel > 0 else 1
    staged = outer > 1 and ref.stride(0) * outer != numel  # batch dim not outermost
    strides = contiguous_strides(ref.shape) if staged else tuple(ref.stride())
    inner = numel // outer
    block = min(MAX_BLOCK, max(MIN_BLOCK, 1 << max(inner - 1, 0).bit_length()))
    return Geometry(outer=outer, inner=inner, block=block, strides=strides, staged=staged)


def flat(coef: Tensor) -> Tensor:
    """alpha/gate as a contiguous 1-D tensor: the kernels read element ``sample`` at stride 1
    (a sliced or expanded coefficient is copied; it is tiny)."""
    return coef.reshape(-1).contiguous()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Kernels compute in float64 for float64 data and in float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def cast_output(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype``; ``t`` itself, not a no-op ``t.to(dtype)``, when it already has it.
    For the output of an autograd.Function's forward traced by torch.compile: on torch 2.11 a
    forward returning a no-op ``.to()`` of its own intermediate gave every input an all-zero
    gradient, silently (seen with aot_eager and Inductor; torch 2.13 is right either way)."""
    return t.to(dtype) if t.dtype != dtype else t


def broadcast_view(coef: Tensor, ndim: int, dtype: torch.dtype) -> Tensor:
    """alpha/gate as a [1 or B, 1, ..., 1] tensor of ``ndim`` dims (0-d for a 0-d host)."""
    shape = (coef.numel(),) + (1,) * (ndim - 1) if ndim else ()
    return coef.to(dtype).reshape(shape)


def unit_clamp(coef: Tensor) -> float:
    """clamp(coef, 0, 1) of a one-element CPU tensor as a Python float (no device sync on a
    CPU), NaN kept as torch.clamp keeps it. Exact: every float16/bfloat16/float32 value is."""
    v = coef.item()
    return v if math.isnan(v) else min(max(v, 0.0), 1.0)


def needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd will record an op on any of ``tensors``."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def same_dense_layout(host: Tensor, other: Tensor) -> bool:
    """Both dense with the same strides: native elementwise ops then give host's layout."""
    return other.stride() == host.stride() and (host.is_contiguous() or is_dense(host))


def per_sample_sum(d: Tensor, per_sample: bool) -> Tensor:
    """Sum of ``d`` per sample ([B]) or over everything ([1])."""
    if per_sample:
        return d.sum(dim=tuple(range(1, d.dim()))) if d.dim() > 1 else d
    return d.sum().reshape(1)
