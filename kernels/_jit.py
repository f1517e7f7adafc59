"""Triton helpers shared by the operator kernels."""

from __future__ import annotations

import triton
import triton.language as tl

from ._backend import INTERPRET


@triton.jit
def block_offsets(inner, blocks_per_sample, BLOCK: tl.constexpr, USE_INT64: tl.constexpr):
    """This program's element offsets, their mask, and its sample index (see Geometry)."""
    pid = tl.program_id(0)
    if USE_INT64:
        pid = pid.to(tl.int64)
    sample = pid // blocks_per_sample
    local = (pid - sample * blocks_per_sample) * BLOCK + tl.arange(0, BLOCK)
    return sample * inner + local, local < inner, sample


@triton.jit
def load_coef(ptr, sample, PER_SAMPLE: tl.constexpr, C: tl.constexpr):
    """clamp(coef, 0, 1) for this program's sample, NaN kept as torch.clamp keeps it."""
    raw = tl.load(ptr + sample) if PER_SAMPLE else tl.load(ptr)
    return tl.clamp(raw.to(C), 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def incubating(flag_ptr, HAS_FLAG: tl.constexpr):
    """The operator's incubate flag (a one-element bool tensor), False when it has none. Read once
    per program; kernels branch on it as a whole (a scalar branch: no lane reads the seed)."""
    if HAS_FLAG:
        return tl.load(flag_ptr) != 0
    else:
        return False


@triton.jit
def store_straight_through(
    g,
    offs,
    mask,
    grad_host_ptr,
    grad_seed_ptr,
    partial_ptr,
    NEED_HOST: tl.constexpr,
    NEED_SEED: tl.constexpr,
    NEED_COEF: tl.constexpr,
):
    """ste's backward inside a blend kernel: g to host and to seed (each rounded to its dtype),
    this program's partial sum for the coefficient gradient zero. Reads nothing."""
    if NEED_HOST:
        store(grad_host_ptr, offs, g, mask)
    if NEED_SEED:
        store(grad_seed_ptr, offs, g, mask)
    if NEED_COEF:
        tl.store(partial_ptr + tl.program_id(0), tl.sum(tl.zeros_like(g), axis=0))


# Launch option for every kernel: no floating-point contraction except the explicit tl.fma
# calls. Triton 3.9 contracts a * b + c by default and 3.10 will not; pinning it keeps the bits
# the same across versions, and equal to the interpreter's (which never contracts).
EXACT = {"enable_fp_fusion": False}


@triton.jit
def lerp(h, s, w):
    """torch.lerp bit for bit (CUDA's and the CPU's): fma(w, s - h, h) for w < 0.5, else
    fma(w - 1, s - h, s); exact h at w = 0 and exact s at w = 1."""
    d = s - h
    return tl.where(w < 0.5, tl.fma(w, d, h), tl.fma(w - 1.0, d, s))


@triton.jit
def tanh(x):
    """tanh to a few ulps, overflow-free, from one exp (libdevice's tanh has no interpreter
    implementation). With e = exp(-2|x|): tanh|x| = (1 - e) / (1 + e), which cancels for small
    |x|; there it is -m / (2 + m) with m = expm1(-2|x|) by Kahan's trick, (e - 1) * y / log(e)."""
    ax = tl.abs(x)
    y = -2.0 * ax
    e = tl.exp(y)
    small = ax < 0.5
    use_kahan = small & (e != 1.0)  # e == 1: |x| so small that expm1(y) == y exactly enough
    # Unselected lanes get harmless operands (0.5, 0.0), so no branch divides by zero.
    m = tl.where(
        use_kahan, (e - 1.0) * y / tl.log(tl.where(use_kahan, e, 0.5)), tl.where(small, y, 0.0)
    )
    t = tl.where(small, -m / (2.0 + m), (1.0 - e) / (1.0 + e))
    return tl.where(x < 0.0, -t, t)


# Triton's interpreter turns float32 into bfloat16 by truncation (and float64 into bfloat16 not at
# all correctly), while CUDA rounds to nearest even. Under the interpreter, round explicitly so
# CPU CI sees the same bits as the GPU.
_EXACT_BF16 = tl.constexpr(INTERPRET)


@triton.jit
def cast(x, DTYPE: tl.constexpr):
    """x.to(DTYPE), rounding to nearest even on every backend."""
    if _EXACT_BF16 and tl.bfloat16 == DTYPE:
        x32 = x.to(tl.float32)
        bits = x32.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        rounded = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return tl.where(x32 != x32, x32.to(tl.bfloat16), rounded)
    else:
        return x.to(DTYPE)


@triton.jit
def load_as(ptr, offs, mask, T: tl.constexpr, C: tl.constexpr):
    """Load, round to T (host's dtype: the contract casts seed/seed_input first), widen to C."""
    return cast(tl.load(ptr + offs, mask=mask, other=0.0), T).to(C)


@triton.jit
def flag_non_finite(x, probe_ptr):
    """Set the one-element int32 at probe_ptr to 1 when any lane of x is NaN or Inf (masked-off
    lanes were loaded as 0). One reduction over values already in registers, and a scalar store
    only in a program that found one; the probe is never cleared here."""
    if x.dtype.is_bf16() or x.dtype.is_fp16():  # compare in float32 (the interpreter's bf16
        x = x.to(tl.float32)  # emulation does not see NaN != NaN); exact
    bad = ((x != x) | (tl.abs(x) == float("inf"))).to(tl.int32)
    if tl.max(bad, axis=0) > 0:
        tl.store(probe_ptr, 1)


@triton.jit
def load_seed(
    ptr, offs, mask, T: tl.constexpr, C: tl.constexpr, probe_ptr, HAS_PROBE: tl.constexpr
):
    """load_as for the seed, probing its values as read (before the cast to host's dtype, as
    the slot's own probe sees them) for NaN/Inf when HAS_PROBE."""
    raw = tl.load(ptr + offs, mask=mask, other=0.0)
    if HAS_PROBE:
        flag_non_finite(raw, probe_ptr)
    return cast(raw, T).to(C)


@triton.jit
def probe_seed(ptr, offs, mask, probe_ptr, HAS_PROBE: tl.constexpr):
    """The incubator's probe: one read of the seed it otherwise never reads."""
    if HAS_PROBE:
        flag_non_finite(tl.load(ptr + offs, mask=mask, other=0.0), probe_ptr)


@triton.jit
def store(ptr, offs, value, mask):
    """Store value rounded to the pointer's element type."""
    tl.store(ptr + offs, cast(value, ptr.dtype.element_ty), mask=mask)
