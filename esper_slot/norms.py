"""Gradient norms without overflow, underflow or copies, for the gradient telemetry.

A float32 sum of squares overflows for norms above ~1.8e19 and loses everything below ~1e-19.
Each gradient's norm is therefore taken as BLAS nrm2 does, with a scale: m = max|g| (one min/max
reduction, no squares), s = 1 / m, and norm = ||g s|| / s (each g s rounds once: ~1e-7 relative
in the norm). Compiled, ``g * s`` fuses into the reduction: two reads of each gradient, nothing
written. Eagerly on a GPU, the telemetry runs the same function through an internal
torch.compile (one compile per set of gradient shapes). Eagerly on a CPU (where that compile
costs seconds per model structure, and reading a number is free) it keeps plain float32
``_foreach_norm`` results where they are exact and recomputes the rest scaled, over chunks of at
most 64K elements, so no gradient is ever copied whole. Across steps each group keeps a
BLAS-style pair (scale, sum of squares / scale^2) in float32 (``norm_pair``, ``combine_pairs``).
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = torch.finfo(torch.float32).tiny


def tensor_norms(grads: list[Tensor], device: torch.device | None = None) -> Tensor:
    """[k] float32: each gradient's L2 norm without overflow or underflow of its squares (a
    max-abs scale per tensor), NaN or Inf for a gradient holding them. While torch.compile
    traces, the fused form (``g * s`` inside the reduction: nothing gradient-sized is written);
    eagerly, the same math over bounded chunks (no full copy of any gradient)."""
    if not grads:
        return torch.zeros(0, device=device)
    if torch.compiler.is_compiling():
        return _traced_norms(grads)
    if all(g.is_cpu for g in grads):
        return _cpu_norms(grads)
    return _chunked_norms(grads)


def _scales(lows: Tensor, highs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """From per-tensor min and max: (max|g|, usable, inv). ``usable``: finite and non-zero.
    inv = 1 / max|g| (at most 1 / the smallest normal float32), so |g| * inv <= 1: no square
    overflows and the largest cannot underflow. Not a power of two, so each g * inv rounds once
    (2^-24 relative per element, ~1e-7 in the norm); frexp's exact power of two made Inductor's
    CPU code 2x slower (bench/NOTES.md)."""
    peak = torch.maximum(-lows, highs).float()  # NaN propagates
    usable = torch.isfinite(peak) & (peak > 0)
    return peak, usable, 1.0 / torch.where(usable, peak, 1.0).clamp_min(_TINY)


def _traced_norms(grads: list[Tensor]) -> Tensor:
    norms = []
    for g in grads:
        if g.numel() == 0:
            norms.append(g.new_zeros((), dtype=torch.float32))
        elif g.dtype == torch.float64:
            norms.append(torch.linalg.vector_norm(g).float())
        else:
            low, high = torch.aminmax(g)
            peak, usable, inv = _scales(low, high)
            scaled = torch.linalg.vector_norm(g.float() * inv) / inv
            norms.append(torch.where(usable, scaled, peak))  # 0, NaN or Inf as max|g| says
    return torch.stack(norms)


# A float32 norm computed plainly is exact to ~1e-7 inside this range: no partial sum of
# squares overflows below 1e18, and above 1e-10 the squares that underflow (elements under
# ~1e-19) add less than 2^31 * 1e-38 to a sum of at least 1e-20.
PLAIN_RANGE = (1e-10, 1e18)


def _cpu_norms(grads: list[Tensor]) -> Tensor:
    """Eager on a CPU, where reading a value is free: float32 gradients' plain norms in one
    torch._foreach_norm (no copy), kept where they lie in PLAIN_RANGE; float64 gradients' own
    norms; everything else (outside the range, non-finite, zero, bfloat16/float16, whose norm
    in their own dtype would round) through the chunked scaled form."""
    plain_idx = [i for i, g in enumerate(grads) if g.dtype == torch.float32 and g.numel()]
    values = [0.0] * len(grads)
    redo = [
        i
        for i, g in enumerate(grads)
        if g.dtype not in (torch.float32, torch.float64) and g.numel()
    ]
    if plain_idx:
        plain = torch.stack(torch._foreach_norm([grads[i] for i in plain_idx])).tolist()
        low, high = PLAIN_RANGE
        for i, value in zip(plain_idx, plain):
            if low <= value <= high:
                values[i] = value
            elif value == 0.0 and not grads[i].any():  # exactly zero (a TRAINING gate's)
                values[i] = 0.0
            else:
                redo.append(i)
    for i, g in enumerate(grads):
        if g.dtype == torch.float64 and g.numel():
            values[i] = torch.linalg.vector_norm(g).item()
    if redo:
        for i, value in zip(redo, _chunked_norms([grads[i] for i in redo]).tolist()):
            values[i] = value
    return torch.tensor(values, dtype=torch.float32)


CHUNK = 1 << 16  # elements per eager chunk: a 256 KB float32 scratch at most


def _chunked_norms(grads: list[Tensor]) -> Tensor:
    """Eager form of _traced_norms: one min/max per gradient, the scales for all of them in a
    few vector ops, then ||chunk * inv|| over chunks of at most CHUNK elements (views of the
    gradient's memory; only a non-dense gradient is flattened by a copy). No host sync."""
    device = grads[0].device
    lows, highs = [], []
    for g in grads:
        if g.numel() == 0:
            lows.append(g.new_zeros((), dtype=torch.float32))
            highs.append(lows[-1])
        else:
            low, high = torch.aminmax(g)
            lows.append(low.float())
            highs.append(high.float())
    peak, usable, inv = _scales(torch.stack(lows).to(device), torch.stack(highs).to(device))
    sums = []
    for g, scale in zip(grads, inv.unbind()):
        flat = _flat_view(g)
        parts = [
            torch.linalg.vector_norm(flat[i : i + CHUNK].float() * scale.to(g.device))
            for i in range(0, flat.numel(), CHUNK)
        ]
        sums.append(
            torch.linalg.vector_norm(torch.stack(parts)).to(device) if parts else peak.new_zeros(())
        )
    scaled = torch.stack(sums) / inv
    result = torch.where(usable, scaled, peak)
    for i, g in enumerate(grads):  # float64 gradients: their own norm, no scaling needed
        if g.dtype == torch.float64 and g.numel():
            result[i] = torch.linalg.vector_norm(g).float().to(device)
    return result


def _flat_view(g: Tensor) -> Tensor:
    """g's elements as one flat tensor: a view when g is dense in any layout (the norm does not
    care about the order)."""
    if g.is_contiguous():
        return g.view(-1)
    order = sorted(range(g.dim()), key=lambda d: g.stride(d))
    expected = 1
    for d in order:
        if g.size(d) != 1 and g.stride(d) != expected:
            return g.reshape(-1)  # not dense: a copy (rare: gradients are dense)
        expected *= g.size(d)
    return g.as_strided((g.numel(),), (1,))


def norm_pair(values: Tensor) -> tuple[Tensor, Tensor]:
    """sum(values^2) as (peak, sum((values / peak)^2)); ``values`` finite and non-negative."""
    if values.numel() == 0:
        zero = values.new_zeros(())
        return zero, zero
    peak = values.max()
    return peak, ((values / torch.where(peak > 0, peak, 1.0)) ** 2).sum()


def combine_pairs(s1: Tensor, q1: Tensor, s2: Tensor, q2: Tensor) -> tuple[Tensor, Tensor]:
    """The sum of two pairs (scale, ssq), each standing for scale^2 * ssq, rescaled to the
    larger scale so that nothing overflows or underflows."""
    top = torch.maximum(s1, s2)
    safe = torch.where(top > 0, top, 1.0)
    return top, q1 * (s1 / safe) ** 2 + q2 * (s2 / safe) ** 2
