"""blend_add and blend_gate: ``y = lerp(host, seed, e)`` with torch.lerp's numerics.

    blend_add:  e = clamp(alpha, 0, 1)
    blend_gate: e = clamp(clamp(alpha, 0, 1) * clamp(gate, 0, 1), 0, 1)

Both are one kernel (the gate is optional). Gradients, with g = dL/dy:
    dL/dhost = g (1 - e)    dL/dseed = g e    dL/de summed per sample: S_b = sum(g (seed - host))
then alpha/gate through the product and clamp rules (_coef_grad). When neither alpha nor gate needs
a gradient, backward reads only g (seed and host are not even kept alive for it).

Registered ops (one boundary per call): esper_slot::blend_lerp_fwd / blend_lerp_bwd.
"""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor

from ._backend import HAS_TRITON, INTERPRET, eager_cpu, tracing_formulas
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
        lerp,
        load_as,
        load_coef,
        load_seed,
        probe_seed,
        store,
        store_straight_through,
    )

    @triton.jit
    def _weight(alpha_ptr, gate_ptr, sample, ALPHA_PS, HAS_GATE, GATE_PS, C):
        w = load_coef(alpha_ptr, sample, ALPHA_PS, C)
        if HAS_GATE:
            w = tl.clamp(w * load_coef(gate_ptr, sample, GATE_PS, C), 0.0, 1.0,
                         propagate_nan=tl.PropagateNan.ALL)
        return w

    @triton.jit
    def _fwd_kernel(
        host_ptr, seed_ptr, alpha_ptr, gate_ptr, flag_ptr, probe_ptr, out_ptr,
        inner, blocks_per_sample,
        ALPHA_PS: tl.constexpr, HAS_GATE: tl.constexpr, GATE_PS: tl.constexpr,
        HAS_FLAG: tl.constexpr, HAS_PROBE: tl.constexpr,
        F64: tl.constexpr, BLOCK: tl.constexpr, USE_INT64: tl.constexpr,
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
    def _bwd_kernel(
        grad_ptr, host_ptr, seed_ptr, alpha_ptr, gate_ptr, flag_ptr,
        grad_host_ptr, grad_seed_ptr, partial_ptr,
        inner, blocks_per_sample,
        ALPHA_PS: tl.constexpr, HAS_GATE: tl.constexpr, GATE_PS: tl.constexpr,
        HAS_FLAG: tl.constexpr,
        NEED_HOST: tl.constexpr, NEED_SEED: tl.constexpr, NEED_COEF: tl.constexpr,
        F64: tl.constexpr, BLOCK: tl.constexpr, USE_INT64: tl.constexpr,
    ):
        C: tl.constexpr = tl.float64 if F64 else tl.float32
        offs, mask, sample = block_offsets(inner, blocks_per_sample, BLOCK, USE_INT64)
        T = grad_ptr.dtype.element_ty  # host's dtype (host_ptr is only read with NEED_COEF)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(C)
        if incubating(flag_ptr, HAS_FLAG):
            # Straight through; host and seed are not read.
            store_straight_through(g, offs, mask, grad_host_ptr, grad_seed_ptr, partial_ptr,
                                   NEED_HOST, NEED_SEED, NEED_COEF)
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

def _per_sample(alpha: Tensor, gate: Tensor | None) -> bool:
    return alpha.numel() > 1 or (gate is not None and gate.numel() > 1)


def _flat(alpha: Tensor, gate: Tensor | None) -> tuple[Tensor, Tensor]:
    alpha_flat = flat(alpha)
    return alpha_flat, flat(gate) if gate is not None else alpha_flat


def _fwd_triton(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None,
                incubate: Tensor | None, nonfinite: Tensor | None = None) -> Tensor:
    out = torch.empty_like(host)
    if out.numel() == 0:
        return out
    geo = geometry(out, _per_sample(alpha, gate))
    work = geo.work(out)
    _fwd_kernel[geo.grid](
        in_layout(host, geo.strides), in_layout(seed, geo.strides), *_flat(alpha, gate),
        flag_pointer(incubate, alpha), flag_pointer(nonfinite, alpha), work,
        geo.inner, geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1, HAS_GATE=gate is not None,
        GATE_PS=gate is not None and gate.numel() > 1, HAS_FLAG=incubate is not None,
        HAS_PROBE=nonfinite is not None,
        F64=host.dtype == torch.float64, BLOCK=geo.block, USE_INT64=geo.use_int64,
        num_warps=geo.num_warps, **EXACT,
    )
    if geo.staged:
        out.copy_(work)
    return out


def _alloc_grads(like, seed_dtype, need_host, need_seed):
    """Gradient outputs laid out like ``like``: host when it was kept for backward, else the
    incoming gradient (the output's dtype, shape and usually layout)."""
    grad_host = torch.empty_like(like) if need_host else like.new_empty((0,))
    grad_seed = (
        torch.empty_like(like, dtype=seed_dtype)
        if need_seed
        else like.new_empty((0,), dtype=seed_dtype)
    )
    return grad_host, grad_seed


def _bwd_triton(grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed,
                need_alpha, need_gate):
    like = grad if host is None else host
    grad_host, grad_seed = _alloc_grads(like, seed_dtype, need_host, need_seed)
    need_coef = need_alpha or need_gate  # then host and seed were kept
    if grad.numel() == 0 or not (need_host or need_seed or need_coef):
        return grad_host, grad_seed, *_zero_coef_grads(alpha, gate, need_alpha, need_gate)
    ref = grad_host if need_host else grad_seed if need_seed else like
    if not is_dense(ref):
        ref = torch.empty_like(like)
    geo = geometry(ref, _per_sample(alpha, gate))
    work_host = geo.work(grad_host) if need_host else grad_host
    work_seed = geo.work(grad_seed) if need_seed else grad_seed
    partials = grad.new_empty(geo.grid if need_coef else (0,), dtype=compute_dtype(grad.dtype))
    g = in_layout(grad, geo.strides)
    h = in_layout(host, geo.strides) if need_coef else g
    s = in_layout(seed, geo.strides) if need_coef else g
    _bwd_kernel[geo.grid](
        g, h, s, *_flat(alpha, gate), flag_pointer(incubate, alpha),
        work_host if need_host else h, work_seed if need_seed else h, partials if need_coef else h,
        geo.inner, geo.blocks_per_sample,
        ALPHA_PS=alpha.numel() > 1, HAS_GATE=gate is not None,
        GATE_PS=gate is not None and gate.numel() > 1, HAS_FLAG=incubate is not None,
        NEED_HOST=need_host, NEED_SEED=need_seed, NEED_COEF=need_coef,
        F64=grad.dtype == torch.float64, BLOCK=geo.block, USE_INT64=geo.use_int64,
        num_warps=geo.num_warps, **EXACT,
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


def _zero_coef_grads(alpha, gate, need_alpha, need_gate):
    grad_alpha = torch.zeros_like(alpha) if need_alpha else alpha.new_empty((0,))
    other = gate if gate is not None else alpha
    grad_gate = torch.zeros_like(gate) if need_gate and gate is not None else other.new_empty((0,))
    return grad_alpha, grad_gate


# ---- PyTorch path (CPU without the Triton interpreter, and devices without Triton) ----


def _weight_torch(host: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor:
    c = compute_dtype(host.dtype)
    w = broadcast_view(alpha, host.dim(), c).clamp(0, 1)
    if gate is not None:
        w = (w * broadcast_view(gate, host.dim(), c).clamp(0, 1)).clamp(0, 1)
    return w


def _fwd_torch(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None,
               incubate: Tensor | None, nonfinite: Tensor | None = None) -> Tensor:
    if nonfinite is not None:
        probe_torch(seed, nonfinite)
    return forward_torch(host, incubate, lambda: _blend_torch(host, seed, alpha, gate))


def _blend_torch(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor:
    c = compute_dtype(host.dtype)
    out = torch.empty_like(host)
    if host.device.type == "cpu" and gate is None and alpha.numel() == 1:
        # One pass: lerp with a Python-number weight computes in float32 (float64) internally.
        return torch.lerp(host, seed.to(host.dtype), unit_clamp(alpha), out=out)
    w = _weight_torch(host, alpha, gate)
    if host.dtype == c and seed.dtype == c:
        return torch.lerp(host, seed, w, out=out)
    return out.copy_(torch.lerp(host.to(c), seed.to(host.dtype).to(c), w))


def _bwd_torch(grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed,
               need_alpha, need_gate):
    state = incubate_state(incubate)
    grad_host, grad_seed = _alloc_grads(grad if host is None else host, seed_dtype, need_host,
                                        need_seed)
    if state:  # straight through: g to host and seed, zeros to alpha/gate
        return straight_through_grads(
            grad, (grad_host, grad_seed), _zero_coef_grads(alpha, gate, need_alpha, need_gate))
    grad_host, grad_seed, grad_alpha, grad_gate = _blend_bwd_torch(
        grad, host, seed, alpha, gate, grad_host, grad_seed, need_host, need_seed, need_alpha,
        need_gate)
    if state is None:
        return select_straight_through(incubate, grad, (grad_host, grad_seed),
                                       (grad_alpha, grad_gate))
    return grad_host, grad_seed, grad_alpha, grad_gate


def _blend_bwd_torch(grad, host, seed, alpha, gate, grad_host, grad_seed, need_host, need_seed,
                     need_alpha, need_gate):
    c = compute_dtype(grad.dtype)
    w = _weight_torch(grad, alpha, gate)
    g = grad.to(c)
    if need_host:
        if grad.dtype == c:
            torch.mul(g, 1 - w, out=grad_host)
        else:
            grad_host.copy_(g * (1 - w))
    if need_seed:
        if grad.dtype == c and grad_seed.dtype == c:
            torch.mul(g, w, out=grad_seed)
        else:
            grad_seed.copy_((g * w).to(grad.dtype))
    grad_alpha, grad_gate = _zero_coef_grads(alpha, gate, False, False)
    if need_alpha or need_gate:
        d = g * (seed.to(host.dtype).to(c) - host.to(c))
        sums = per_sample_sum(d, _per_sample(alpha, gate))
        grad_alpha, grad_gate = finish_torch(sums, alpha, gate, need_alpha, need_gate)
    return grad_host, grad_seed, grad_alpha, grad_gate


# ---- registration: fakes mirror the launchers' allocations exactly ----


def _fwd_fake(host, seed, alpha, gate, incubate, nonfinite=None):
    return torch.empty_like(host)


def _bwd_fake(grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed,
              need_alpha, need_gate):
    grad_host, grad_seed = _alloc_grads(grad if host is None else host, seed_dtype, need_host,
                                        need_seed)
    grad_alpha = alpha.new_empty(alpha.shape if need_alpha else (0,))
    other = gate if gate is not None else alpha
    grad_gate = other.new_empty(gate.shape if need_gate and gate is not None else (0,))
    return grad_host, grad_seed, grad_alpha, grad_gate


_FWD_SCHEMA = "(Tensor host, Tensor seed, Tensor alpha, Tensor? gate, Tensor? incubate) -> Tensor"
blend_lerp_fwd, blend_lerp_bwd = register_pair(
    "blend_lerp",
    fwd_schema=_FWD_SCHEMA,
    bwd_schema="(Tensor grad, Tensor? host, Tensor? seed, Tensor alpha, Tensor? gate, "
    "Tensor? incubate, ScalarType seed_dtype, bool need_host, bool need_seed, bool need_alpha, "
    "bool need_gate) "
    "-> (Tensor, Tensor, Tensor, Tensor)",
    torch_impls=(_fwd_torch, _bwd_torch),
    triton_impls=(_fwd_triton, _bwd_triton) if HAS_TRITON else None,
    fakes=(_fwd_fake, _bwd_fake),
)
# The forward with the nonfinite probe (eager calls only; see probed_schema).
blend_lerp_fwd_probed = register_op(
    "blend_lerp_fwd_probed", probed_schema(_FWD_SCHEMA), _fwd_torch,
    _fwd_triton if HAS_TRITON else None, _fwd_fake)


def _save_inputs(ctx, host, seed, alpha, gate, incubate) -> None:
    """Inputs only, never fresh tensors; host and seed only when dL/de needs them (else
    backward reads just the incoming gradient and keeps nothing input-sized alive)."""
    ctx.seed_dtype = seed.dtype
    ctx.has_gate = gate is not None
    need_coef = ctx.needs_input_grad[2] or (gate is not None and ctx.needs_input_grad[3])
    kept = (host, seed) if need_coef else (None, None)
    ctx.save_for_backward(*kept, alpha, gate, incubate)


def _restore(ctx):
    """_save_inputs' counterpart: the saved tensors and which of host, seed, alpha and gate
    need a gradient (gate only when there is one)."""
    need_host, need_seed, need_alpha, need_gate = ctx.needs_input_grad[:4]
    return (*ctx.saved_tensors, need_host, need_seed, need_alpha, need_gate and ctx.has_gate)


class BlendLerp(torch.autograd.Function):
    """Autograd boundary of blend_add / blend_gate (gate=None for blend_add)."""

    @staticmethod
    def forward(ctx, host, seed, alpha, gate, incubate, nonfinite=None):
        _save_inputs(ctx, host, seed, alpha, gate, incubate)
        if eager_cpu(host):  # no op boundary
            return _fwd_torch(host, seed, alpha, gate, incubate, nonfinite)
        if nonfinite is None:
            return blend_lerp_fwd(host, seed, alpha, gate, incubate)
        return blend_lerp_fwd_probed(host, seed, alpha, gate, incubate, nonfinite)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, gate, incubate, need_host, need_seed, need_alpha, need_gate = (
            _restore(ctx))
        bwd = _bwd_torch if eager_cpu(grad) else blend_lerp_bwd
        grad_host, grad_seed, grad_alpha, grad_gate = bwd(
            grad, host, seed, alpha, gate, incubate, ctx.seed_dtype,
            need_host, need_seed, need_alpha, need_gate,
        )
        return (
            grad_host if need_host else None,
            grad_seed if need_seed else None,
            grad_alpha if need_alpha else None,
            grad_gate if need_gate else None,
            None,
            None,
        )


class BlendLerpFormulas(torch.autograd.Function):
    """The compile path of blend_add / blend_gate: BlendLerp's math and saved tensors, written
    as tensor ops that torch.compile traces into the graph, so Inductor fuses them with the
    operators around the blend. lerp, the clamp rules, the casts and the incubate flag's
    selects are those of the kernels; backward recomputes the weight from the saved inputs."""

    @staticmethod
    def forward(ctx, host, seed, alpha, gate, incubate):
        _save_inputs(ctx, host, seed, alpha, gate, incubate)
        c = compute_dtype(host.dtype)
        y = torch.lerp(host.to(c), seed.to(host.dtype).to(c), _weight_torch(host, alpha, gate))
        return where_incubating(incubate, host, cast_output(y, host.dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, gate, incubate, need_host, need_seed, need_alpha, need_gate = (
            _restore(ctx))
        c = compute_dtype(grad.dtype)
        w = _weight_torch(grad, alpha, gate)
        g = grad.to(c)
        grad_host = (g * (1 - w)).to(grad.dtype) if need_host else None
        grad_seed = (g * w).to(grad.dtype).to(ctx.seed_dtype) if need_seed else None
        grad_alpha = grad_gate = None
        if need_alpha or need_gate:
            d = g * (seed.to(host.dtype).to(c) - host.to(c))
            grad_alpha, grad_gate = finish_torch(per_sample_sum(d, _per_sample(alpha, gate)),
                                                 alpha, gate, need_alpha, need_gate)
        grad_host, grad_seed, grad_alpha, grad_gate = straight_through_where(
            incubate, grad, (grad_host, grad_seed),
            (grad_alpha if need_alpha else None, grad_gate if need_gate else None))
        return grad_host, grad_seed, grad_alpha, grad_gate, None


# ---- eager CPU path: native PyTorch ops where they give the contract's bits ----


def _lerp_eager_cpu(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None,
                    incubate: Tensor | None) -> Tensor:
    """torch.lerp with native autograd wherever its numerics are the contract's: a Python-number
    weight (lerp then computes in float32, or float64, for every dtype), or a tensor weight in
    float32/float64. lerp's autograd saves nothing input-sized for a weight that needs no
    gradient, and only host and seed (inputs) for one that does. Everything else (a tensor weight
    with a bfloat16/float16 host, where torch.lerp would round the weight to that dtype; or a
    host or seed that is not dense) runs BlendLerp on the PyTorch path. Every tiny op costs
    microseconds here, as much as lerp itself at 64K elements, so the weight takes the fewest.
    Host and seed in different dense layouts (a batch_first attention output, a transposed view,
    next to a contiguous seed) run natively too; the result is then copied into host's layout
    only if lerp chose another (a differentiable copy: one pass, where BlendLerp's Python
    backward costs hundreds of microseconds at small sizes)."""
    if incubate is not None and incubate.item():  # a CPU flag: reading it is free
        return Incubating.apply(host, seed, alpha, gate)
    if seed.dtype != host.dtype:
        seed = seed.to(host.dtype)  # the contract's cast (its gradient casts back)
    if same_dense_layout(host, seed):
        out = _native_lerp(host, seed, alpha, gate)
    elif is_dense(host) and is_dense(seed):
        out = _native_lerp(host, seed, alpha, gate)
        if out is not None and out.stride() != host.stride():
            out = torch.empty_like(host).copy_(out)  # host's layout (the contract)
    else:
        out = None
    return _blend_lerp_function(host, seed, alpha, gate, incubate) if out is None else out


def _native_lerp(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor | None:
    """torch.lerp with the fewest weight ops, or None where its numerics are not the
    contract's (see _lerp_eager_cpu). seed is in host's dtype."""
    c = compute_dtype(host.dtype)
    if needs_grad(alpha) or alpha.numel() > 1:
        if host.dtype != c:
            return None
        return torch.lerp(host, seed, _weight_torch(host, alpha, gate))
    a = unit_clamp(alpha)
    if gate is None:
        return torch.lerp(host, seed, a)
    if gate.numel() == 1 and not needs_grad(gate):
        return torch.lerp(host, seed, _product_weight(a, unit_clamp(gate), c))
    if host.dtype != c or gate.dim() > host.dim():
        return None
    # gate broadcasts against host as it is (check_coefficient); clamp(g) * a stays in [0, 1],
    # so the contract's outer clamp changes neither the value nor the gradient.
    gate = gate if gate.dtype == c else gate.to(c)
    return torch.lerp(host, seed, torch.mul(gate.clamp(0, 1), a))


_FLOATING = frozenset({torch.float32, torch.float64, torch.bfloat16, torch.float16})


def _fast_cpu_lerp(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor | None:
    """The commonest eager CPU calls, checked and dispatched in ~3 us (the formulas spend ~4 us
    on their tiny weight ops): plain CPU tensors, seed of host's dtype, shape and strides, host
    contiguous, a one-element alpha that needs no gradient, and no gate (blend_add) or a
    per-sample [B, 1, ..., 1] gate of host's dtype in float32/float64 (blend_gate with the
    slot's gate network). The result is exactly what _native_lerp computes for the same call.
    None for anything else, which takes the full path (checks, then the general one). Types and
    dtypes are compared by identity: eager only, never traced."""
    tensor = Tensor
    if not (type(host) is tensor and type(seed) is tensor and type(alpha) is tensor
            and host.is_cpu and seed.is_cpu and alpha.is_cpu and host.dtype in _FLOATING
            and seed.dtype is host.dtype and alpha.dtype in _FLOATING
            and host is not seed and alpha is not host and alpha is not seed
            and alpha.numel() == 1 and (alpha.dim() <= host.dim() or alpha.dim() == 1)
            and host.shape == seed.shape and host.is_contiguous()
            and seed.stride() == host.stride() and not torch.compiler.is_compiling()):
        return None
    if alpha.requires_grad and torch.is_grad_enabled():
        return None
    a = unit_clamp(alpha)
    if gate is None:
        return torch.lerp(host, seed, a)
    if not (type(gate) is tensor and gate.is_cpu and gate.dtype is host.dtype
            and host.dtype in _WEIGHT_DTYPES and gate.dim() == host.dim()
            and 1 < gate.numel() == gate.shape[0] == host.shape[0]
            and gate is not host and gate is not seed and gate is not alpha):
        return None
    return torch.lerp(host, seed, torch.mul(gate.clamp(0, 1), a))


_WEIGHT_DTYPES = frozenset({torch.float32, torch.float64})  # where lerp's tensor weight is exact


def _product_weight(a: float, g: float, c: torch.dtype) -> float:
    """clamp(a * g, 0, 1) rounded as the kernels compute it in ``c`` (the product of two
    float32 values is exact in a Python float; rounding it to float32 is the float32 product)."""
    w = a * g
    if c == torch.float32:
        w = struct.unpack("f", struct.pack("f", w))[0]
    return w if math.isnan(w) else min(max(w, 0.0), 1.0)


def _blend_lerp_function(host, seed, alpha, gate, incubate):
    if needs_grad(host, seed, alpha, gate):
        return BlendLerp.apply(host, seed, alpha, gate, incubate)
    return _fwd_torch(host, seed, alpha, gate, incubate)


def _blend_lerp(host, seed, alpha, gate, incubate, nonfinite=None):
    nonfinite = probe_outside_op(host, seed, nonfinite)
    if eager_cpu(host):
        return _lerp_eager_cpu(host, seed, alpha, gate, incubate)
    if nonfinite is not None:  # the op probes (the Triton kernel from the values it loads)
        return BlendLerp.apply(host, seed, alpha, gate, incubate, nonfinite)
    function = BlendLerpFormulas if tracing_formulas() else BlendLerp
    return function.apply(host, seed, alpha, gate, incubate)


def blend_add(host: Tensor, seed: Tensor, alpha: Tensor, *,
              incubate: Tensor | None = None, nonfinite: Tensor | None = None) -> Tensor:
    """``host + a (seed - host)`` with ``a = clamp(alpha, 0, 1)``, computed like torch.lerp.

    Args:
        host: floating tensor, any shape and dense layout; sets the output's dtype/shape/layout.
        seed: same shape and device as host; cast to host's dtype.
        alpha: 0-d, [1], or per-sample [B, 1, ..., 1] floating tensor on host's device.
    Returns:
        y, exactly host where a = 0 and exactly seed (cast) where a = 1.
    Gradients reach host, seed and alpha (alpha's summed over its broadcast dims and passed
    through clamp as torch.clamp does).

    incubate: None, or a 0-d/[1] bool tensor on host's device read by the kernel at run time.
        While it holds True the call is the straight-through incubator, ``ste(host, seed,
        copy=True)``: y is host bit for bit (seed is not read, so a NaN/Inf seed cannot leak),
        dL/dhost = dL/dseed = g, and alpha (and gate) get zero gradients. Flipping it never
        recompiles a compiled graph (SeedSlot's TRAINING -> BLENDING switch).
    nonfinite: None, or a one-element int32 tensor on host's device, set to 1 when seed holds
        NaN or Inf, in either state of ``incubate`` (see kernels/_probe.py); never cleared.
    """
    if incubate is None and nonfinite is None and not INTERPRET:
        fast = _fast_cpu_lerp(host, seed, alpha, None)
        if fast is not None:
            return fast
    if not plainly_valid(host, seed, (alpha,), incubate):
        check_pair("blend_add", host, seed, "seed")
        check_coefficient("blend_add", host, alpha, "alpha")
        check_incubate("blend_add", host, incubate)
        host, seed, alpha = distinct(host, seed, alpha)
    check_nonfinite("blend_add", host, nonfinite)
    return _blend_lerp(host, seed, alpha, None, incubate, nonfinite)


def blend_gate(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor, *,
               incubate: Tensor | None = None, nonfinite: Tensor | None = None) -> Tensor:
    """``host + e (seed - host)`` with ``e = clamp(clamp(alpha, 0, 1) * clamp(gate, 0, 1), 0, 1)``.

    alpha and gate are each 0-d, [1] or per-sample [B, 1, ..., 1]; otherwise as blend_add.
    Gradients reach host, seed, alpha and gate; ``incubate`` and ``nonfinite`` as in blend_add."""
    if incubate is None and nonfinite is None and not INTERPRET:
        fast = _fast_cpu_lerp(host, seed, alpha, gate)
        if fast is not None:
            return fast
    if not plainly_valid(host, seed, (alpha, gate), incubate):
        check_pair("blend_gate", host, seed, "seed")
        check_coefficient("blend_gate", host, alpha, "alpha")
        check_coefficient("blend_gate", host, gate, "gate")
        check_incubate("blend_gate", host, incubate)
        host, seed, alpha, gate = distinct(host, seed, alpha, gate)
    check_nonfinite("blend_gate", host, nonfinite)
    return _blend_lerp(host, seed, alpha, gate, incubate, nonfinite)
