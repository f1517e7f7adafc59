"""The lerp family's Triton kernels and their launchers (CUDA, and CPU under TRITON_INTERPRET=1).
Imported only when triton is (see ops.py); the launchers are the registered ops' CUDA kernels.

    forward   y = lerp(host, seed_cast, e)   one read of host and seed, one write of y
    backward  g (1 - e) to host, g e to seed (rounded to host's dtype, stored in seed's), and one
              partial sum of g (seed - host) per program when a coefficient needs a gradient,
              finished by _coef_grad's single-program kernel

with e = clamp(alpha, 0, 1), times clamp(gate, 0, 1) and clamped again with a gate. Compute is
float32 (float64 for float64 data) with one rounding to host's dtype; lerp is torch.lerp's own
formula (_jit.lerp), so e = 0 gives host's bits and e = 1 the cast seed's. While the incubate
flag holds True the kernels are ste's: host's bits forward, g to host and seed backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._coef_grad import finish_triton
from .._incubate import flag_pointer
from .._jit import (
    EXACT,
    block_offsets,
    cast,
    incubating,
    lerp,
    load_as,
    load_coef,
    load_seed,
    probe_seed,
    store,
    store_straight_through,
)
from .._layout import compute_dtype, flat, geometry, in_layout, is_dense
from .alloc import alloc_grads, per_sample, zero_coef_grads


@triton.jit
def _weight(alpha_ptr, gate_ptr, sample, ALPHA_PS, HAS_GATE, GATE_PS, C):
    w = load_coef(alpha_ptr, sample, ALPHA_PS, C)
    if HAS_GATE:
        w = tl.clamp(
            w * load_coef(gate_ptr, sample, GATE_PS, C), 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL
        )
    return w


@triton.jit
def fwd_kernel(
    host_ptr,
    seed_ptr,
    alpha_ptr,
    gate_ptr,
    flag_ptr,
    probe_ptr,
    out_ptr,
    inner,
    blocks_per_sample,
    ALPHA_PS: tl.constexpr,
    HAS_GATE: tl.constexpr,
    GATE_PS: tl.constexpr,
    HAS_FLAG: tl.constexpr,
    HAS_PROBE: tl.constexpr,
    F64: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_INT64: tl.constexpr,
):
    C: tl.constexpr = tl.float64 if F64 else tl.float32
    offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
    T = out_ptr.dtype.element_ty
    if incubating(flag_ptr, HAS_FLAG):
        # The straight-through incubator: y is host's bits; the seed is read only to probe
        # it for NaN/Inf (HAS_PROBE), never blended.
        tl.store(out_ptr + offs, tl.load(host_ptr + offs, mask=mask), mask=mask)
        probe_seed(seed_ptr, offs, mask, probe_ptr, HAS_PROBE)
    else:
        w = _weight(alpha_ptr, gate_ptr, sample, ALPHA_PS, HAS_GATE, GATE_PS, C)
        # Reads host and seed once (seed rounded to host's dtype, as the contract casts it
        # first; probed as read), writes y once.
        h = tl.load(host_ptr + offs, mask=mask).to(C)
        s = load_seed(seed_ptr, offs, mask, T, C, probe_ptr, HAS_PROBE)
        store(out_ptr, offs, lerp(h, s, w), mask)


@triton.jit
def bwd_kernel(
    grad_ptr,
    host_ptr,
    seed_ptr,
    alpha_ptr,
    gate_ptr,
    flag_ptr,
    grad_host_ptr,
    grad_seed_ptr,
    partial_ptr,
    inner,
    blocks_per_sample,
    ALPHA_PS: tl.constexpr,
    HAS_GATE: tl.constexpr,
    GATE_PS: tl.constexpr,
    HAS_FLAG: tl.constexpr,
    NEED_HOST: tl.constexpr,
    NEED_SEED: tl.constexpr,
    NEED_COEF: tl.constexpr,
    F64: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_INT64: tl.constexpr,
):
    C: tl.constexpr = tl.float64 if F64 else tl.float32
    offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
    T = grad_ptr.dtype.element_ty  # host's dtype (host_ptr is only read with NEED_COEF)
    g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(C)
    if incubating(flag_ptr, HAS_FLAG):
        # Straight through; host and seed are not read.
        store_straight_through(
            g,
            offs,
            mask,
            grad_host_ptr,
            grad_seed_ptr,
            partial_ptr,
            NEED_HOST,
            NEED_SEED,
            NEED_COEF,
        )
    else:
        w = _weight(alpha_ptr, gate_ptr, sample, ALPHA_PS, HAS_GATE, GATE_PS, C)
        if NEED_HOST:
            store(grad_host_ptr, offs, g * (1.0 - w), mask)
        if NEED_SEED:  # rounded to host's dtype (the cast's gradient), stored in seed's
            store(grad_seed_ptr, offs, cast(g * w, T), mask)
        if NEED_COEF:  # host and seed are read only for dL/de; one partial sum per program
            h = tl.load(host_ptr + offs, mask=mask, other=0.0).to(C)
            s = load_as(seed_ptr, offs, mask, T, C)
            tl.store(partial_ptr + tl.program_id(0), tl.sum(g * (s - h), axis=0))


def _flat(alpha: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor]:
    alpha_flat = flat(alpha)
    return alpha_flat, flat(gate) if gate is not None else alpha_flat


def fwd_triton(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    gate: Tensor | None,
    incubate: Tensor | None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """esper_slot::blend_lerp_fwd(_probed) on CUDA: y in host's dtype, shape and layout."""
    out = torch.empty_like(host)
    if out.numel() == 0:
        return out
    geo = geometry(out, per_sample(alpha, gate))
    work = geo.work(out)
    fwd_kernel[geo.grid](
        in_layout(host, geo.strides),
        in_layout(seed, geo.strides),
        *_flat(alpha, gate),
        flag_pointer(incubate, alpha),
        flag_pointer(nonfinite, alpha),
        work,
        geo.inner,
        geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1,
        HAS_GATE=gate is not None,
        GATE_PS=gate is not None and gate.numel() > 1,
        HAS_FLAG=incubate is not None,
        HAS_PROBE=nonfinite is not None,
        F64=host.dtype == torch.float64,
        BLOCK=geo.block,
        USE_INT64=geo.use_int64,
        num_warps=geo.num_warps,
        **EXACT,
    )
    if geo.staged:
        out.copy_(work)
    return out


def bwd_triton(
    grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed, need_alpha, need_gate
):
    """esper_slot::blend_lerp_bwd on CUDA: (grad_host, grad_seed, grad_alpha, grad_gate),
    allocated as alloc.py says (empty where not needed). host and seed are None unless a
    coefficient needs a gradient."""
    like = grad if host is None else host
    grad_host, grad_seed = alloc_grads(like, seed_dtype, need_host, need_seed)
    need_coef = need_alpha or need_gate  # then host and seed were kept
    if grad.numel() == 0 or not (need_host or need_seed or need_coef):
        return grad_host, grad_seed, *zero_coef_grads(alpha, gate, need_alpha, need_gate)
    ref = grad_host if need_host else grad_seed if need_seed else like
    if not is_dense(ref):
        ref = torch.empty_like(like)
    geo = geometry(ref, per_sample(alpha, gate))
    work_host = geo.work(grad_host) if need_host else grad_host
    work_seed = geo.work(grad_seed) if need_seed else grad_seed
    partials = grad.new_empty(geo.grid if need_coef else (0,), dtype=compute_dtype(grad.dtype))
    g = in_layout(grad, geo.strides)
    h = in_layout(host, geo.strides) if need_coef else g
    s = in_layout(seed, geo.strides) if need_coef else g
    bwd_kernel[geo.grid](
        g,
        h,
        s,
        *_flat(alpha, gate),
        flag_pointer(incubate, alpha),
        work_host if need_host else h,
        work_seed if need_seed else h,
        partials if need_coef else h,
        geo.inner,
        geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1,
        HAS_GATE=gate is not None,
        GATE_PS=gate is not None and gate.numel() > 1,
        HAS_FLAG=incubate is not None,
        NEED_HOST=need_host,
        NEED_SEED=need_seed,
        NEED_COEF=need_coef,
        F64=grad.dtype == torch.float64,
        BLOCK=geo.block,
        USE_INT64=geo.use_int64,
        num_warps=geo.num_warps,
        **EXACT,
    )
    if geo.staged:
        if need_host:
            grad_host.copy_(work_host)
        if need_seed:
            grad_seed.copy_(work_seed)
    grad_alpha, grad_gate = finish_triton(
        partials, geo.outer, geo.blocks_per_sample, alpha, gate, need_alpha, need_gate
    )
    return grad_host, grad_seed, grad_alpha, grad_gate
