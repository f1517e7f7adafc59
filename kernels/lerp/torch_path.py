"""The lerp family in PyTorch: the PyTorch path (the registered ops' CompositeExplicitAutograd
kernels: devices without Triton, torch.compile's opaque path on a CPU; and BlendLerpEager, the
eager CPU fallback without an op boundary) and the compile path (BlendLerpFormulas, traced by
torch.compile so Inductor fuses it).

Every backward here calls one gradient function, ``grads``; the forwards compute the same
lerp(host, seed_cast, e) in the compute dtype (float32; float64 for float64 data) and round once
to host's dtype. With g = dL/dy and e the clamped weight (see weight):
    dL/dhost = g (1 - e)        rounded to host's dtype
    dL/dseed = g e              rounded to host's dtype (the cast's gradient), then seed's
    dL/dalpha, dL/dgate         from S_b = sum over sample b of g (seed_cast - host), through
                                the product and clamp rules (_coef_grad.finish_torch)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._coef_grad import finish_torch
from .._incubate import (
    forward_torch,
    incubate_state,
    select_straight_through,
    straight_through_grads,
    straight_through_where,
    where_incubating,
)
from .._layout import (
    broadcast_view,
    cast_output,
    compute_dtype,
    is_dense,
    per_sample_sum,
    unit_clamp,
)
from .._probe import probe_torch
from .alloc import alloc_grads, coef_grads_like, per_sample, zero_coef_grads


def weight(like: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor:
    """e = clamp(alpha, 0, 1) (times clamp(gate, 0, 1), clamped again) in the compute dtype of
    ``like``, shaped [1 or B, 1, ..., 1] to broadcast against it."""
    c = compute_dtype(like.dtype)
    w = broadcast_view(alpha, like.dim(), c).clamp(0, 1)
    if gate is not None:
        w = (w * broadcast_view(gate, like.dim(), c).clamp(0, 1)).clamp(0, 1)
    return w


# ---- the PyTorch path ----


def fwd_torch(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    gate: Tensor | None,
    incubate: Tensor | None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """esper_slot::blend_lerp_fwd(_probed) in PyTorch: y in host's dtype, shape and layout (a
    fresh tensor); host's copy while the flag holds True; the probe set from the seed."""
    if nonfinite is not None:
        probe_torch(seed, nonfinite)
    return forward_torch(host, incubate, lambda: blend(host, seed, alpha, gate))


def blend(host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None) -> Tensor:
    """lerp(host, seed_cast, e) into a fresh tensor in host's layout, with the fewest passes."""
    c = compute_dtype(host.dtype)
    out = torch.empty_like(host)
    if host.device.type == "cpu" and gate is None and alpha.numel() == 1:
        # One pass: lerp with a Python-number weight computes in float32 (float64) internally.
        return torch.lerp(host, seed.to(host.dtype), unit_clamp(alpha), out=out)
    w = weight(host, alpha, gate)
    if host.dtype == c and seed.dtype == c:
        return torch.lerp(host, seed, w, out=out)
    s = seed.to(host.dtype).to(c)
    if host.dtype == c:
        return torch.lerp(host, s, w, out=out)
    # A bfloat16/float16 host: lerp in place on its float32 copy, one temporary fewer (each is
    # a fresh allocation, often page faults on a CPU: docs/operators.md, "bfloat16 on a CPU").
    return out.copy_(host.to(c).lerp_(s, w))


def bwd_torch(
    grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed, need_alpha, need_gate
):
    """esper_slot::blend_lerp_bwd in PyTorch: ``grads`` in the layout and dtypes alloc.py gives
    (empty where not needed), or ste's gradients while the flag holds True (read on the host
    when it is a CPU tensor, selected on the device otherwise)."""
    state = incubate_state(incubate)
    like = grad if host is None else host
    if state:  # straight through: g to host and seed, zeros to alpha/gate
        return straight_through_grads(
            grad,
            alloc_grads(like, seed_dtype, need_host, need_seed),
            zero_coef_grads(alpha, gate, need_alpha, need_gate),
        )
    d_host, d_seed, d_alpha, d_gate = grads(
        grad, host, seed, alpha, gate, seed_dtype, need_host, need_seed, need_alpha, need_gate
    )
    empty_host, empty_seed = alloc_grads(like, seed_dtype, False, False)
    empty_alpha, empty_gate = coef_grads_like(alpha, gate, False, False)
    out = (
        _placed(d_host, like, empty_host),
        _placed(d_seed, like, empty_seed),
        empty_alpha if d_alpha is None else d_alpha,
        empty_gate if d_gate is None else d_gate,
    )
    if state is None:  # a flag on another device: select there
        return select_straight_through(incubate, grad, out[:2], out[2:])
    return out


def _placed(value: Tensor | None, like: Tensor, empty: Tensor) -> Tensor:
    """A gradient laid out like ``like`` (alloc_grads' layout, hence the fakes'): ``value``
    itself when it already is, else a copy; ``empty`` when it is not needed."""
    if value is None:
        return empty
    if value.stride() == like.stride() and is_dense(like):
        return value
    return torch.empty_like(like, dtype=value.dtype).copy_(value)


def grads(
    grad: Tensor,
    host: Tensor | None,
    seed: Tensor | None,
    alpha: Tensor,
    gate: Tensor | None,
    seed_dtype: torch.dtype,
    need_host: bool,
    need_seed: bool,
    need_alpha: bool,
    need_gate: bool,
):
    """The blend's gradients as tensor ops: (grad_host, grad_seed, grad_alpha, grad_gate), each
    rounded once to its dtype (host's; seed_dtype through host's; the coefficients' own), None
    where not needed. host and seed are read only for the coefficients' gradients (they are
    None otherwise). The one gradient function of the PyTorch path and the compile path."""
    c = compute_dtype(grad.dtype)
    w = weight(grad, alpha, gate)
    g = grad.to(c)  # a fresh copy, unless grad is in the compute dtype already
    # Every float32 temporary of a bfloat16 blend is a fresh allocation, which on a CPU is often
    # paid in page faults (docs/operators.md): the in-place ops below work on fresh copies only,
    # one temporary fewer each, and give the bits of their out-of-place forms.
    grad_alpha = grad_gate = None
    if need_alpha or need_gate:
        assert host is not None and seed is not None
        s = seed.to(host.dtype).to(c)  # fresh when host's dtype is not c
        d = (s.sub_(host) if host.dtype != c else torch.sub(s, host)).mul_(g)
        grad_alpha, grad_gate = finish_torch(
            per_sample_sum(d, per_sample(alpha, gate)), alpha, gate, need_alpha, need_gate
        )
        del s, d
    grad_host = (g * (1 - w)).to(grad.dtype) if need_host else None
    grad_seed = None
    if need_seed:  # g's last use: multiplied in place when it is a copy
        grad_seed = (g.mul_(w) if grad.dtype != c else g * w).to(grad.dtype).to(seed_dtype)
    return (
        grad_host,
        grad_seed,
        grad_alpha if need_alpha else None,
        grad_gate if need_gate else None,
    )


# ---- what the autograd Functions save (BlendLerpEager, BlendLerpFormulas, ops.BlendLerp) ----


def save_inputs(ctx, host, seed, alpha, gate, incubate) -> None:
    """Inputs only, never fresh tensors; host and seed only when dL/de needs them (else
    backward reads just the incoming gradient and keeps nothing input-sized alive)."""
    ctx.seed_dtype = seed.dtype
    ctx.has_gate = gate is not None
    need_coef = ctx.needs_input_grad[2] or (gate is not None and ctx.needs_input_grad[3])
    kept = (host, seed) if need_coef else (None, None)
    ctx.save_for_backward(*kept, alpha, gate, incubate)


def restore(ctx):
    """save_inputs' counterpart: the saved tensors and which of host, seed, alpha and gate
    need a gradient (gate only when there is one)."""
    need_host, need_seed, need_alpha, need_gate = ctx.needs_input_grad[:4]
    return (*ctx.saved_tensors, need_host, need_seed, need_alpha, need_gate and ctx.has_gate)


class BlendLerpEager(torch.autograd.Function):
    """The PyTorch path as an autograd.Function for eager CPU calls (router route 4c): blend
    forward, ``grads`` backward, no registered-op boundary. The router has run the incubator
    already (a CPU flag, read once at forward), so there is no flag here, and autograd takes
    the gradients in whatever layout ``grads`` gives them. Saves its inputs only."""

    @staticmethod
    def forward(ctx, host, seed, alpha, gate):
        save_inputs(ctx, host, seed, alpha, gate, None)
        return blend(host, seed, alpha, gate)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, gate, _, need_host, need_seed, need_alpha, need_gate = restore(ctx)
        return (
            *grads(
                grad,
                host,
                seed,
                alpha,
                gate,
                ctx.seed_dtype,
                need_host,
                need_seed,
                need_alpha,
                need_gate,
            ),
            None,
        )


# ---- the compile path ----


class BlendLerpFormulas(torch.autograd.Function):
    """The compile path of blend_add / blend_gate: ops.BlendLerp's math and saved tensors,
    written as tensor ops that torch.compile traces into the graph, so Inductor fuses them with
    the operators around the blend. lerp, the clamp rules, the casts and the incubate flag's
    selects are those of the kernels; backward recomputes the weight from the saved inputs."""

    @staticmethod
    def forward(ctx, host, seed, alpha, gate, incubate):
        save_inputs(ctx, host, seed, alpha, gate, incubate)
        c = compute_dtype(host.dtype)
        y = torch.lerp(host.to(c), seed.to(host.dtype).to(c), weight(host, alpha, gate))
        return where_incubating(incubate, host, cast_output(y, host.dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, gate, incubate, need_host, need_seed, need_alpha, need_gate = restore(
            ctx
        )
        grad_host, grad_seed, grad_alpha, grad_gate = grads(
            grad,
            host,
            seed,
            alpha,
            gate,
            ctx.seed_dtype,
            need_host,
            need_seed,
            need_alpha,
            need_gate,
        )
        grad_host, grad_seed, grad_alpha, grad_gate = straight_through_where(
            incubate, grad, (grad_host, grad_seed), (grad_alpha, grad_gate)
        )
        return grad_host, grad_seed, grad_alpha, grad_gate, None
