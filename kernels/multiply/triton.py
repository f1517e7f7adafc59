"""The multiply family's Triton kernels and their launchers (CUDA, and CPU under
TRITON_INTERPRET=1). Imported only when triton is (see ops.py); the launchers are the registered
ops' CUDA kernels.

    forward   y = host (1 + a tanh(seed - seed_input))   one read of host, seed and (unless
              TIED: seed_input holds host's values) seed_input, one write of y
    backward  with t = tanh(seed - seed_input), recomputed from the inputs:
              dL/dhost = g (1 + a t) (minus dL/dseed when seed_input is host itself: TIED_GRAD),
              dL/dseed = g host a (1 - t^2), dL/dseed_input = -dL/dseed, and one partial sum
              of g host t per program for alpha, finished by _coef_grad's kernel

with a = clamp(alpha, 0, 1); seed and seed_input rounded to host's dtype first. Compute is
float32 (float64 for float64 data) with one rounding to host's dtype. While the incubate flag
holds True the kernels are ste's (and seed_input's gradient is zero).
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
    load_as,
    load_coef,
    load_seed,
    probe_seed,
    store,
    store_straight_through,
    tanh,
)
from .._layout import compute_dtype, flat, geometry, in_layout, is_dense
from .alloc import alloc_grads


@triton.jit
def fwd_kernel(
    host_ptr,
    seed_ptr,
    seed_input_ptr,
    alpha_ptr,
    flag_ptr,
    probe_ptr,
    out_ptr,
    inner,
    blocks_per_sample,
    ALPHA_PS: tl.constexpr,
    TIED: tl.constexpr,
    HAS_FLAG: tl.constexpr,
    HAS_PROBE: tl.constexpr,
    F64: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_INT64: tl.constexpr,
):
    C: tl.constexpr = tl.float64 if F64 else tl.float32
    T = out_ptr.dtype.element_ty
    offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
    if incubating(flag_ptr, HAS_FLAG):
        # The straight-through incubator: y is host's bits; the seed is read only to probe
        # it for NaN/Inf (HAS_PROBE), never blended.
        tl.store(out_ptr + offs, tl.load(host_ptr + offs, mask=mask), mask=mask)
        probe_seed(seed_ptr, offs, mask, probe_ptr, HAS_PROBE)
    else:
        a = load_coef(alpha_ptr, sample, ALPHA_PS, C)
        # Reads host, seed (probed as read) and (unless TIED: it holds host's values)
        # seed_input once each, cast to host's dtype; writes y once.
        h = tl.load(host_ptr + offs, mask=mask).to(C)
        s = load_seed(seed_ptr, offs, mask, T, C, probe_ptr, HAS_PROBE)
        s_in = h if TIED else load_as(seed_input_ptr, offs, mask, T, C)
        store(out_ptr, offs, h * (1.0 + a * tanh(s - s_in)), mask)


@triton.jit
def bwd_kernel(
    grad_ptr,
    host_ptr,
    seed_ptr,
    seed_input_ptr,
    alpha_ptr,
    flag_ptr,
    grad_host_ptr,
    grad_seed_ptr,
    grad_seed_input_ptr,
    partial_ptr,
    inner,
    blocks_per_sample,
    ALPHA_PS: tl.constexpr,
    TIED: tl.constexpr,
    TIED_GRAD: tl.constexpr,
    HAS_FLAG: tl.constexpr,
    NEED_HOST: tl.constexpr,
    NEED_SEED: tl.constexpr,
    NEED_SEED_INPUT: tl.constexpr,
    NEED_ALPHA: tl.constexpr,
    F64: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_INT64: tl.constexpr,
):
    C: tl.constexpr = tl.float64 if F64 else tl.float32
    T = host_ptr.dtype.element_ty
    offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
    g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(C)
    if incubating(flag_ptr, HAS_FLAG):
        # Straight through, and zeros to seed_input; host, seed and seed_input are not read.
        store_straight_through(
            g,
            offs,
            mask,
            grad_host_ptr,
            grad_seed_ptr,
            partial_ptr,
            NEED_HOST,
            NEED_SEED,
            NEED_ALPHA,
        )
        if NEED_SEED_INPUT:
            store(grad_seed_input_ptr, offs, tl.zeros_like(g), mask)
    else:
        a = load_coef(alpha_ptr, sample, ALPHA_PS, C)
        # Reads g, host, seed, seed_input (host's values when TIED) once; writes only the
        # gradients asked for.
        h = tl.load(host_ptr + offs, mask=mask, other=0.0).to(C)
        s = load_as(seed_ptr, offs, mask, T, C)
        s_in = h if TIED else load_as(seed_input_ptr, offs, mask, T, C)
        t = tanh(s - s_in)
        d_seed = g * h * a * (1.0 - t * t)
        if NEED_HOST:  # TIED_GRAD: seed_input is host itself, so its -d_seed joins host's
            d_host = g * (1.0 + a * t)
            if TIED_GRAD:
                d_host = d_host - d_seed
            store(grad_host_ptr, offs, d_host, mask)
        if NEED_SEED:  # rounded to host's dtype (the cast's gradient), stored in seed's
            store(grad_seed_ptr, offs, cast(d_seed, T), mask)
        if NEED_SEED_INPUT:
            store(grad_seed_input_ptr, offs, cast(-d_seed, T), mask)
        if NEED_ALPHA:
            tl.store(partial_ptr + tl.program_id(0), tl.sum(g * h * t, axis=0))


def fwd_triton(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    incubate: Tensor | None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """esper_slot::blend_multiply_fwd(_probed) on CUDA: y in host's dtype, shape and layout."""
    out = torch.empty_like(host)
    if out.numel() == 0:
        return out
    geo = geometry(out, alpha.numel() > 1)
    work = geo.work(out)
    h = in_layout(host, geo.strides)
    fwd_kernel[geo.grid](
        h,
        in_layout(seed, geo.strides),
        h if seed_input is None else in_layout(seed_input, geo.strides),
        flat(alpha),
        flag_pointer(incubate, alpha),
        flag_pointer(nonfinite, alpha),
        work,
        geo.inner,
        geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1,
        TIED=seed_input is None,
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
    grad,
    host,
    seed,
    alpha,
    seed_input,
    incubate,
    tied_grad,
    need_host,
    need_seed,
    need_alpha,
    need_seed_input,
):
    """esper_slot::blend_multiply_bwd on CUDA: (grad_host, grad_seed, grad_alpha,
    grad_seed_input), allocated as alloc.py says (empty where not needed)."""
    grads = alloc_grads(
        host, seed, alpha, seed_input, need_host, need_seed, need_alpha, need_seed_input
    )
    grad_host, grad_seed, grad_alpha, grad_seed_input = grads
    need_seed_input = need_seed_input and seed_input is not None
    if host.numel() == 0:
        if need_alpha:
            grad_alpha.zero_()
        return grads
    ref = host if is_dense(host) else torch.empty_like(host)
    geo = geometry(ref, alpha.numel() > 1)
    work_host, work_seed, work_seed_input = (
        geo.work(t) if needed else t
        for t, needed in (
            (grad_host, need_host),
            (grad_seed, need_seed),
            (grad_seed_input, need_seed_input),
        )
    )
    partials = host.new_empty(geo.grid if need_alpha else (0,), dtype=compute_dtype(host.dtype))
    h = in_layout(host, geo.strides)
    bwd_kernel[geo.grid](
        in_layout(grad, geo.strides),
        h,
        in_layout(seed, geo.strides),
        h if seed_input is None else in_layout(seed_input, geo.strides),
        flat(alpha),
        flag_pointer(incubate, alpha),
        work_host if need_host else h,
        work_seed if need_seed else h,
        work_seed_input if need_seed_input else h,
        partials if need_alpha else h,
        geo.inner,
        geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1,
        TIED=seed_input is None,
        TIED_GRAD=tied_grad,
        HAS_FLAG=incubate is not None,
        NEED_HOST=need_host,
        NEED_SEED=need_seed,
        NEED_SEED_INPUT=need_seed_input,
        NEED_ALPHA=need_alpha,
        F64=host.dtype == torch.float64,
        BLOCK=geo.block,
        USE_INT64=geo.use_int64,
        num_warps=geo.num_warps,
        **EXACT,
    )
    if geo.staged:
        for final, work, needed in (
            (grad_host, work_host, need_host),
            (grad_seed, work_seed, need_seed),
            (grad_seed_input, work_seed_input, need_seed_input),
        ):
            if needed:
                final.copy_(work)
    if need_alpha:
        grad_alpha, _ = finish_triton(
            partials, geo.outer, geo.blocks_per_sample, alpha, None, True, False
        )
    return grad_host, grad_seed, grad_alpha, grad_seed_input
