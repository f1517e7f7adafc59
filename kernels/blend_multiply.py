"""blend_multiply: ``y = host (1 + a tanh(seed - seed_input))`` with ``a = clamp(alpha, 0, 1)``.

seed and seed_input are cast to host's dtype. With t = tanh(seed - seed_input) and g = dL/dy:
    dL/dhost = g (1 + a t)     dL/dseed = g host a (1 - t^2)     dL/dseed_input = -dL/dseed
    dL/da summed per sample: S_b = sum(g host t), then alpha's clamp rule (_coef_grad).
When seed_input is host itself (no gradient isolation), autograd adds the two host terms.
Backward recomputes t from the inputs: nothing input-sized is saved beyond the inputs.

Registered ops (one boundary per call): esper_slot::blend_multiply_fwd / blend_multiply_bwd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._backend import HAS_TRITON, eager_cpu, tracing_formulas
from ._checks import check_coefficient, check_incubate, check_pair, distinct, plainly_valid
from ._coef_grad import finish_torch, finish_triton
from ._incubate import (
    Incubating,
    flag_pointer,
    forward_torch,
    incubate_state,
    select_straight_through,
    straight_through_grads,
    straight_through_where,
    where_incubating,
)
from ._layout import (
    broadcast_view,
    cast_output,
    compute_dtype,
    flat,
    geometry,
    in_layout,
    is_dense,
    needs_grad,
    per_sample_sum,
    same_dense_layout,
    unit_clamp,
)
from ._library import probed_schema, register_op, register_pair
from ._probe import check_nonfinite, probe_outside_op, probe_torch

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._jit import (
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

    @triton.jit
    def _fwd_kernel(
        host_ptr, seed_ptr, seed_input_ptr, alpha_ptr, flag_ptr, probe_ptr, out_ptr,
        inner, blocks_per_sample,
        ALPHA_PS: tl.constexpr, TIED: tl.constexpr, HAS_FLAG: tl.constexpr,
        HAS_PROBE: tl.constexpr,
        F64: tl.constexpr, BLOCK: tl.constexpr, USE_INT64: tl.constexpr,
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
    def _bwd_kernel(
        grad_ptr, host_ptr, seed_ptr, seed_input_ptr, alpha_ptr, flag_ptr,
        grad_host_ptr, grad_seed_ptr, grad_seed_input_ptr, partial_ptr,
        inner, blocks_per_sample,
        ALPHA_PS: tl.constexpr, TIED: tl.constexpr, TIED_GRAD: tl.constexpr,
        HAS_FLAG: tl.constexpr,
        NEED_HOST: tl.constexpr, NEED_SEED: tl.constexpr,
        NEED_SEED_INPUT: tl.constexpr, NEED_ALPHA: tl.constexpr,
        F64: tl.constexpr, BLOCK: tl.constexpr, USE_INT64: tl.constexpr,
    ):
        C: tl.constexpr = tl.float64 if F64 else tl.float32
        T = host_ptr.dtype.element_ty
        offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(C)
        if incubating(flag_ptr, HAS_FLAG):
            # Straight through, and zeros to seed_input; host, seed and seed_input are not read.
            store_straight_through(g, offs, mask, grad_host_ptr, grad_seed_ptr, partial_ptr,
                                   NEED_HOST, NEED_SEED, NEED_ALPHA)
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


def _fwd_triton(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None,
                incubate: Tensor | None, nonfinite: Tensor | None = None) -> Tensor:
    out = torch.empty_like(host)
    if out.numel() == 0:
        return out
    geo = geometry(out, alpha.numel() > 1)
    work = geo.work(out)
    h = in_layout(host, geo.strides)
    _fwd_kernel[geo.grid](
        h, in_layout(seed, geo.strides),
        h if seed_input is None else in_layout(seed_input, geo.strides), flat(alpha),
        flag_pointer(incubate, alpha), flag_pointer(nonfinite, alpha), work,
        geo.inner, geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1, TIED=seed_input is None, HAS_FLAG=incubate is not None,
        HAS_PROBE=nonfinite is not None,
        F64=host.dtype == torch.float64,
        BLOCK=geo.block, USE_INT64=geo.use_int64, num_warps=geo.num_warps, **EXACT,
    )
    if geo.staged:
        out.copy_(work)
    return out


def _alloc_grads(host, seed, alpha, seed_input, need_host, need_seed, need_alpha, need_seed_input):
    def like_host(needed: bool, dtype: torch.dtype) -> Tensor:
        return torch.empty_like(host, dtype=dtype) if needed else host.new_empty((0,), dtype=dtype)

    need_seed_input = need_seed_input and seed_input is not None
    return (
        like_host(need_host, host.dtype),
        like_host(need_seed, seed.dtype),
        alpha.new_empty(alpha.shape if need_alpha else (0,)),
        like_host(need_seed_input, (seed_input if need_seed_input else host).dtype),
    )


def _bwd_triton(grad, host, seed, alpha, seed_input, incubate, tied_grad, need_host, need_seed,
                need_alpha, need_seed_input):
    grads = _alloc_grads(host, seed, alpha, seed_input, need_host, need_seed, need_alpha,
                         need_seed_input)
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
        for t, needed in ((grad_host, need_host), (grad_seed, need_seed),
                          (grad_seed_input, need_seed_input))
    )
    partials = host.new_empty(geo.grid if need_alpha else (0,), dtype=compute_dtype(host.dtype))
    h = in_layout(host, geo.strides)
    _bwd_kernel[geo.grid](
        in_layout(grad, geo.strides), h, in_layout(seed, geo.strides),
        h if seed_input is None else in_layout(seed_input, geo.strides), flat(alpha),
        flag_pointer(incubate, alpha),
        work_host if need_host else h, work_seed if need_seed else h,
        work_seed_input if need_seed_input else h, partials if need_alpha else h,
        geo.inner, geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1, TIED=seed_input is None, TIED_GRAD=tied_grad,
        HAS_FLAG=incubate is not None, NEED_HOST=need_host, NEED_SEED=need_seed,
        NEED_SEED_INPUT=need_seed_input, NEED_ALPHA=need_alpha,
        F64=host.dtype == torch.float64, BLOCK=geo.block, USE_INT64=geo.use_int64,
        num_warps=geo.num_warps, **EXACT,
    )
    if geo.staged:
        for final, work, needed in ((grad_host, work_host, need_host),
                                    (grad_seed, work_seed, need_seed),
                                    (grad_seed_input, work_seed_input, need_seed_input)):
            if needed:
                final.copy_(work)
    if need_alpha:
        grad_alpha, _ = finish_triton(partials, geo.outer, geo.blocks_per_sample, alpha, None,
                                      True, False)
    return grad_host, grad_seed, grad_alpha, grad_seed_input


# ---- PyTorch path (CPU without the Triton interpreter, and devices without Triton) ----


def _tanh_torch(host: Tensor, seed: Tensor, seed_input: Tensor | None) -> Tensor:
    c = compute_dtype(host.dtype)
    s_in = host if seed_input is None else seed_input
    return torch.tanh(seed.to(host.dtype).to(c) - s_in.to(host.dtype).to(c))


def _fwd_torch(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None,
               incubate: Tensor | None, nonfinite: Tensor | None = None) -> Tensor:
    if nonfinite is not None:
        probe_torch(seed, nonfinite)
    return forward_torch(host, incubate, lambda: _blend_torch(host, seed, alpha, seed_input))


def _blend_torch(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None) -> Tensor:
    a = broadcast_view(alpha, host.dim(), compute_dtype(host.dtype)).clamp(0, 1)
    t = _tanh_torch(host, seed, seed_input)
    out = torch.empty_like(host)
    if host.dtype == t.dtype:
        return torch.mul(host, t.mul_(a).add_(1), out=out)
    return out.copy_(host.to(t.dtype) * t.mul_(a).add_(1))


def _bwd_torch(grad, host, seed, alpha, seed_input, incubate, tied_grad, need_host, need_seed,
               need_alpha, need_seed_input):
    state = incubate_state(incubate)
    grad_host, grad_seed, grad_alpha, grad_seed_input = _alloc_grads(
        host, seed, alpha, seed_input, need_host, need_seed, need_alpha, need_seed_input)
    if state:  # straight through: g to host and seed, zeros to alpha and seed_input
        grad_host, grad_seed, grad_alpha, grad_seed_input = straight_through_grads(
            grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input))
        return grad_host, grad_seed, grad_alpha, grad_seed_input
    grad_host, grad_seed, grad_alpha, grad_seed_input = _blend_bwd_torch(
        grad, host, seed, alpha, seed_input, tied_grad, grad_host, grad_seed, grad_alpha,
        grad_seed_input, need_alpha)
    if state is None:
        grad_host, grad_seed, grad_alpha, grad_seed_input = select_straight_through(
            incubate, grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input))
    return grad_host, grad_seed, grad_alpha, grad_seed_input


def _multiply_grads(grad, host, seed, alpha, seed_input, tied_grad, need_host, need_seed,
                    need_alpha, need_seed_input):
    """The blend's gradients as tensor ops (None where not needed): host's, seed's and
    seed_input's in the compute dtype, alpha's in alpha's dtype. Shared by the PyTorch path and
    the compile path."""
    t = _tanh_torch(host, seed, seed_input)
    a = broadcast_view(alpha, host.dim(), t.dtype).clamp(0, 1)
    g, h = grad.to(t.dtype), host.to(t.dtype)
    d_seed = g * h * a * (1 - t * t)
    grad_host = None
    if need_host:
        grad_host = g * (1 + a * t) - d_seed if tied_grad else g * (1 + a * t)
    grad_alpha = None
    if need_alpha:
        sums = per_sample_sum(g * h * t, alpha.numel() > 1)
        grad_alpha, _ = finish_torch(sums, alpha, None, True, False)
    return (grad_host, d_seed if need_seed else None, grad_alpha,
            -d_seed if need_seed_input else None)


def _blend_bwd_torch(grad, host, seed, alpha, seed_input, tied_grad, grad_host, grad_seed,
                     grad_alpha, grad_seed_input, need_alpha):
    computed = _multiply_grads(grad, host, seed, alpha, seed_input, tied_grad,
                               grad_host.numel() > 0, grad_seed.numel() > 0, need_alpha,
                               grad_seed_input.numel() > 0)
    for out, value in zip((grad_host, grad_seed, grad_seed_input),
                          (computed[0], computed[1], computed[3])):
        if value is not None:  # rounded to host's dtype (the cast's gradient), then out's
            out.copy_(value.to(host.dtype))
    return grad_host, grad_seed, computed[2] if need_alpha else grad_alpha, grad_seed_input


# ---- registration: fakes mirror the launchers' allocations exactly ----
# seed_input=None means "host's values" (read once); tied_grad adds seed_input's gradient to
# host's, for the case where seed_input is host itself.


def _fwd_fake(host, seed, alpha, seed_input, incubate, nonfinite=None):
    return torch.empty_like(host)


def _bwd_fake(grad, host, seed, alpha, seed_input, incubate, tied_grad, need_host, need_seed,
              need_alpha, need_seed_input):
    return _alloc_grads(host, seed, alpha, seed_input, need_host, need_seed, need_alpha,
                        need_seed_input)


_FWD_SCHEMA = ("(Tensor host, Tensor seed, Tensor alpha, Tensor? seed_input, Tensor? incubate) "
               "-> Tensor")
blend_multiply_fwd, blend_multiply_bwd = register_pair(
    "blend_multiply",
    fwd_schema=_FWD_SCHEMA,
    bwd_schema="(Tensor grad, Tensor host, Tensor seed, Tensor alpha, Tensor? seed_input, "
    "Tensor? incubate, bool tied_grad, bool need_host, bool need_seed, bool need_alpha, "
    "bool need_seed_input) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
    torch_impls=(_fwd_torch, _bwd_torch),
    triton_impls=(_fwd_triton, _bwd_triton) if HAS_TRITON else None,
    fakes=(_fwd_fake, _bwd_fake),
)
# The forward with the nonfinite probe (eager calls only; see probed_schema).
blend_multiply_fwd_probed = register_op(
    "blend_multiply_fwd_probed", probed_schema(_FWD_SCHEMA), _fwd_torch,
    _fwd_triton if HAS_TRITON else None, _fwd_fake)


class BlendMultiply(torch.autograd.Function):
    """Autograd boundary of blend_multiply; saves its inputs and nothing else.

    seed_input=None: seed_input holds host's values, read once; ``tied_grad`` says whether its
    gradient flows into host (seed_input is host itself) or nowhere (host.detach())."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad, incubate, nonfinite=None):
        ctx.tied_grad = tied_grad
        ctx.save_for_backward(host, seed, alpha, seed_input, incubate)
        if eager_cpu(host):  # no op boundary
            return _fwd_torch(host, seed, alpha, seed_input, incubate, nonfinite)
        if nonfinite is None:
            return blend_multiply_fwd(host, seed, alpha, seed_input, incubate)
        return blend_multiply_fwd_probed(host, seed, alpha, seed_input, incubate, nonfinite)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, seed_input, incubate = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input = ctx.needs_input_grad[:4]
        bwd = _bwd_torch if eager_cpu(grad) else blend_multiply_bwd
        grads = bwd(grad, host, seed, alpha, seed_input, incubate, ctx.tied_grad,
                    need_host, need_seed, need_alpha, need_seed_input)
        needs = (need_host, need_seed, need_alpha, need_seed_input)
        return (*(g if needed else None for g, needed in zip(grads, needs)), None, None, None)


class BlendMultiplyFormulas(torch.autograd.Function):
    """The compile path of blend_multiply: BlendMultiply's math and saved tensors as tensor ops
    that torch.compile traces into the graph (so Inductor fuses them with the neighbouring
    operators); backward recomputes tanh from the saved inputs, as the kernels do."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad, incubate):
        ctx.tied_grad = tied_grad
        ctx.seed_dtype = seed.dtype
        ctx.save_for_backward(host, seed, alpha, seed_input, incubate)
        t = _tanh_torch(host, seed, seed_input)
        a = broadcast_view(alpha, host.dim(), t.dtype).clamp(0, 1)
        y = cast_output(host.to(t.dtype) * (1 + a * t), host.dtype)
        return where_incubating(incubate, host, y)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, seed_input, incubate = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input, _, _ = ctx.needs_input_grad
        need_seed_input = need_seed_input and seed_input is not None
        grad_host, grad_seed, grad_alpha, grad_seed_input = _multiply_grads(
            grad, host, seed, alpha, seed_input, ctx.tied_grad, need_host, need_seed,
            need_alpha, need_seed_input)
        grad_host = None if grad_host is None else grad_host.to(host.dtype)
        grad_seed = None if grad_seed is None else grad_seed.to(host.dtype).to(ctx.seed_dtype)
        if grad_seed_input is not None:
            grad_seed_input = grad_seed_input.to(host.dtype).to(seed_input.dtype)
        grad_host, grad_seed, grad_alpha, grad_seed_input = straight_through_where(
            incubate, grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input))
        return grad_host, grad_seed, grad_alpha, grad_seed_input, None, None


# ---- eager CPU path: native ops, and tanh kept for backward ----


def _coef_eager(alpha: Tensor, ndim: int, c: torch.dtype) -> float | Tensor:
    """clamp(alpha, 0, 1): a number for a scalar alpha, else a [B, 1, ..., 1] tensor in c."""
    if alpha.numel() == 1:
        return unit_clamp(alpha)
    return broadcast_view(alpha.detach(), ndim, c).clamp(0, 1)


def _tanh_eager(host: Tensor, seed: Tensor, seed_input: Tensor | None) -> Tensor:
    """tanh(seed - seed_input) in the compute dtype, both cast to host's dtype first."""
    c = compute_dtype(host.dtype)
    s_in = host if seed_input is None else seed_input
    seed, s_in = seed.to(host.dtype), s_in.to(host.dtype)
    x = torch.sub(seed, s_in) if host.dtype == c else seed.to(c).sub_(s_in)
    return x.tanh_()


def _multiply_eager_values(host, seed, alpha, seed_input):
    """(y, t): y = host (1 + a t) in host's dtype and layout, t = tanh(seed - seed_input)."""
    t = _tanh_eager(host, seed, seed_input)
    a = _coef_eager(alpha, host.dim(), t.dtype)
    if isinstance(a, float):  # host + a host t: one pass (the kernels round host (1 + a t))
        y = torch.addcmul(host, host, t, value=a)
    else:
        y = torch.addcmul(host, host, t * a)
    y = y.to(host.dtype)
    if y.stride() != host.stride():
        y = torch.empty_like(host).copy_(y)
    return y, t


class BlendMultiplyEagerCpu(torch.autograd.Function):
    """blend_multiply on the eager CPU path. Unlike the kernels and the compile path it keeps
    t = tanh(seed - seed_input) (compute dtype) for backward, beside host and alpha: on a CPU tanh
    is compute-bound (about 9x a multiply per element here), and recomputing it would make
    forward+backward slower than the eager formula, which keeps t and one more input-sized
    tensor. A trade of memory for speed, on the CPU only."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad):
        y, t = _multiply_eager_values(host, seed, alpha, seed_input)
        ctx.tied_grad = tied_grad
        ctx.dtypes = seed.dtype, None if seed_input is None else seed_input.dtype
        ctx.save_for_backward(host, alpha, t)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, alpha, t = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input, _ = ctx.needs_input_grad
        a = _coef_eager(alpha, host.dim(), t.dtype)
        g = grad.to(t.dtype)
        gh = torch.mul(g, host)
        grad_alpha = None
        if need_alpha:
            sums = per_sample_sum(gh * t, alpha.numel() > 1)
            grad_alpha, _ = finish_torch(sums, alpha, None, True, False)
        d_seed = None
        if need_seed or need_seed_input or (need_host and ctx.tied_grad):
            d_seed = torch.ops.aten.tanh_backward(gh.mul_(a), t)  # g host a (1 - t^2)
        grad_host = None
        if need_host:
            if isinstance(a, float):
                grad_host = torch.addcmul(g, g, t, value=a)  # g (1 + a t)
            else:
                grad_host = torch.mul(t, a).add_(1).mul_(g)
            if ctx.tied_grad:
                grad_host.sub_(d_seed)
            grad_host = grad_host.to(host.dtype)
        seed_dtype, seed_input_dtype = ctx.dtypes
        grad_seed = d_seed.to(host.dtype).to(seed_dtype) if need_seed else None
        grad_seed_input = None
        if need_seed_input:
            grad_seed_input = torch.neg(d_seed).to(host.dtype).to(seed_input_dtype)
        return grad_host, grad_seed, grad_alpha, grad_seed_input, None


def _multiply_eager_cpu(host, seed, alpha, seed_input, tied_grad, incubate):
    if incubate is not None and incubate.item():  # a CPU flag: reading it is free
        return Incubating.apply(host, seed, alpha, seed_input)
    if not same_dense_layout(host, seed) or not (
            seed_input is None or same_dense_layout(host, seed_input)):
        return BlendMultiply.apply(host, seed, alpha, seed_input, tied_grad, incubate)
    if needs_grad(host, seed, alpha, seed_input):
        if (host.numel() < _NATIVE_BELOW and host.dtype in _NATIVE_DTYPES
                and seed.dtype is host.dtype and alpha.numel() == 1 and not needs_grad(alpha)
                and (seed_input is None or seed_input.dtype is host.dtype)):
            # Native autograd: the same forward ops as BlendMultiplyEagerCpu and the same saved
            # tensors (host, t), without an autograd.Function's Python per call (~50 us: at 8K
            # elements the whole blend costs ~200). Its backward makes more passes (addcmul's
            # and tanh's generic formulas), ~1 ns per element more here: the two cross near
            # 45K elements (measured, bench/NOTES.md).
            s_in = seed_input if seed_input is not None else host if tied_grad else host.detach()
            return torch.addcmul(host, host, torch.tanh(seed - s_in), value=unit_clamp(alpha))
        return BlendMultiplyEagerCpu.apply(host, seed, alpha, seed_input, tied_grad)
    return _multiply_eager_values(host, seed, alpha, seed_input)[0]


_NATIVE_DTYPES = (torch.float32, torch.float64)  # native ops give one rounding per op there
_NATIVE_BELOW = 2**15  # elements; see _multiply_eager_cpu


def _blend_multiply(host, seed, alpha, seed_input, tied_grad, incubate, nonfinite=None):
    nonfinite = probe_outside_op(host, seed, nonfinite)
    if eager_cpu(host):
        return _multiply_eager_cpu(host, seed, alpha, seed_input, tied_grad, incubate)
    if nonfinite is not None:  # the op probes (the Triton kernel from the values it loads)
        return BlendMultiply.apply(host, seed, alpha, seed_input, tied_grad, incubate, nonfinite)
    function = BlendMultiplyFormulas if tracing_formulas() else BlendMultiply
    return function.apply(host, seed, alpha, seed_input, tied_grad, incubate)


def _check(op, host, seed, alpha, incubate):
    if plainly_valid(host, seed, (alpha,), incubate):
        return host, seed, alpha
    check_pair(op, host, seed, "seed")
    check_coefficient(op, host, alpha, "alpha")
    check_incubate(op, host, incubate)
    return distinct(host, seed, alpha)


def blend_multiply(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor, *,
                   incubate: Tensor | None = None, nonfinite: Tensor | None = None) -> Tensor:
    """``host (1 + a tanh(seed - seed_input))`` with ``a = clamp(alpha, 0, 1)``.

    Args:
        host: floating tensor, any shape and dense layout; sets the output's dtype/shape/layout.
        seed: the seed's output, host's shape and device; cast to host's dtype.
        alpha: 0-d, [1], or per-sample [B, 1, ..., 1] floating tensor on host's device.
        seed_input: what the seed was fed, host's shape and device; cast to host's dtype.
            At seed == seed_input, y == host. Passing host itself reads it once.
    Gradients reach host, seed, alpha and seed_input (into host when it is host).
    incubate: as in blend_add (while True: ste(host, seed, copy=True), and seed_input gets a
        zero gradient). nonfinite: as in blend_add (the seed is probed, not seed_input).
    """
    if seed_input is host:
        host, seed, alpha = _check("blend_multiply", host, seed, alpha, incubate)
        check_nonfinite("blend_multiply", host, nonfinite)
        return _blend_multiply(host, seed, alpha, None, True, incubate, nonfinite)
    if not plainly_valid(host, seed, (alpha,), incubate, seed_input):
        check_pair("blend_multiply", host, seed_input, "seed_input")
        host, seed, alpha = _check("blend_multiply", host, seed, alpha, incubate)
        seed_input = distinct(host, seed, alpha, seed_input)[3]
        assert seed_input is not None
    check_nonfinite("blend_multiply", host, nonfinite)
    return _blend_multiply(host, seed, alpha, seed_input, False, incubate, nonfinite)


def blend_multiply_detached(host: Tensor, seed: Tensor, alpha: Tensor, *,
                            incubate: Tensor | None = None,
                            nonfinite: Tensor | None = None) -> Tensor:
    """``blend_multiply(host, seed, alpha, host.detach(), incubate=incubate)``, reading host once.

    For gradient isolation: the seed was fed host.detach(), so seed_input's gradient goes nowhere.
    """
    host, seed, alpha = _check("blend_multiply", host, seed, alpha, incubate)
    check_nonfinite("blend_multiply", host, nonfinite)
    return _blend_multiply(host, seed, alpha, None, False, incubate, nonfinite)
