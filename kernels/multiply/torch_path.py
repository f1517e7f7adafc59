"""The multiply family in PyTorch: the PyTorch path (the registered ops'
CompositeExplicitAutograd kernels: devices without Triton, torch.compile's opaque path on a
CPU; and BlendMultiplyEager, the eager CPU fallback for mixed layouts, without an op boundary)
and the compile path (BlendMultiplyFormulas, traced by torch.compile so Inductor fuses it).

Every backward here calls one gradient function, ``grads``; the forwards compute the same
host (1 + a t) in the compute dtype (float32; float64 for float64 data) and round once to host's
dtype. With t = tanh(seed_cast - seed_input_cast), a = clamp(alpha, 0, 1) and g = dL/dy:
    dL/dhost       = g (1 + a t), minus dL/dseed when seed_input is host itself (tied_grad)
    dL/dseed       = g host a (1 - t^2)    rounded to host's dtype (the cast), then seed's
    dL/dseed_input = -dL/dseed             likewise, in seed_input's dtype
    dL/dalpha      from S_b = sum over sample b of g host t, through alpha's clamp rule
seed_input None stands for host's values (read once): host itself (tied_grad=True, its gradient
joins host's) or host.detach() (tied_grad=False, its gradient goes nowhere).
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
from .._layout import broadcast_view, cast_output, compute_dtype, is_dense, per_sample_sum
from .._probe import probe_torch
from .alloc import alloc_grads


def tanh_torch(host: Tensor, seed: Tensor, seed_input: Tensor | None) -> Tensor:
    """t = tanh(seed - seed_input) in the compute dtype, both cast to host's dtype first."""
    c = compute_dtype(host.dtype)
    s_in = host if seed_input is None else seed_input
    return torch.tanh(seed.to(host.dtype).to(c) - s_in.to(host.dtype).to(c))


# ---- the PyTorch path ----


def fwd_torch(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    incubate: Tensor | None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """esper_slot::blend_multiply_fwd(_probed) in PyTorch: y in host's dtype, shape and layout
    (a fresh tensor); host's copy while the flag holds True; the probe set from the seed."""
    if nonfinite is not None:
        probe_torch(seed, nonfinite)
    return forward_torch(host, incubate, lambda: blend(host, seed, alpha, seed_input))


def blend(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None) -> Tensor:
    """host (1 + a t) into a fresh tensor in host's layout."""
    a = broadcast_view(alpha, host.dim(), compute_dtype(host.dtype)).clamp(0, 1)
    t = tanh_torch(host, seed, seed_input)
    out = torch.empty_like(host)
    if host.dtype == t.dtype:
        return torch.mul(host, t.mul_(a).add_(1), out=out)
    return out.copy_(host.to(t.dtype) * t.mul_(a).add_(1))


def bwd_torch(
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
    """esper_slot::blend_multiply_bwd in PyTorch: ``grads`` in host's layout and the dtypes
    alloc.py gives (empty where not needed), or ste's gradients (zeros to alpha and seed_input)
    while the flag holds True (read on the host when it is a CPU tensor, selected on the device
    otherwise)."""
    state = incubate_state(incubate)
    empty = alloc_grads(host, seed, alpha, seed_input, False, False, False, False)
    if state:  # straight through: g to host and seed, zeros to alpha and seed_input
        grad_host, grad_seed, grad_alpha, grad_seed_input = alloc_grads(
            host, seed, alpha, seed_input, need_host, need_seed, need_alpha, need_seed_input
        )
        return straight_through_grads(grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input))
    values = grads(
        grad,
        host,
        seed,
        alpha,
        seed_input,
        tied_grad,
        need_host,
        need_seed,
        need_alpha,
        need_seed_input,
    )
    grad_host, grad_seed, grad_seed_input = (_placed(values[i], host, empty[i]) for i in (0, 1, 3))
    grad_alpha = empty[2] if values[2] is None else values[2]
    if state is None:  # a flag on another device: select there
        return select_straight_through(
            incubate, grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input)
        )
    return grad_host, grad_seed, grad_alpha, grad_seed_input


def _placed(value: Tensor | None, like: Tensor, empty: Tensor) -> Tensor:
    """A gradient laid out like host (alloc_grads' layout, hence the fakes'): ``value`` itself
    when it already is, else a copy; ``empty`` when it is not needed."""
    if value is None:
        return empty
    if value.stride() == like.stride() and is_dense(like):
        return value
    return torch.empty_like(like, dtype=value.dtype).copy_(value)


def grads(
    grad: Tensor,
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    tied_grad: bool,
    need_host: bool,
    need_seed: bool,
    need_alpha: bool,
    need_seed_input: bool,
):
    """The blend's gradients as tensor ops: (grad_host, grad_seed, grad_alpha,
    grad_seed_input), each rounded once to host's dtype and then to its input's (alpha's in
    alpha's dtype), None where not needed (seed_input's also when seed_input is None). t is
    recomputed from the inputs. The one gradient function of the PyTorch path and the compile
    path."""
    need_seed_input = need_seed_input and seed_input is not None
    t = tanh_torch(host, seed, seed_input)
    a = broadcast_view(alpha, host.dim(), t.dtype).clamp(0, 1)
    g, h = grad.to(t.dtype), host.to(t.dtype)
    d_seed = g * h * a * (1 - t * t)
    grad_host = grad_seed = grad_alpha = grad_seed_input = None
    if need_host:
        grad_host = (g * (1 + a * t) - d_seed if tied_grad else g * (1 + a * t)).to(host.dtype)
    if need_seed:
        grad_seed = d_seed.to(host.dtype).to(seed.dtype)
    if need_alpha:
        sums = per_sample_sum(g * h * t, alpha.numel() > 1)
        grad_alpha, _ = finish_torch(sums, alpha, None, True, False)
    if need_seed_input:
        assert seed_input is not None
        grad_seed_input = (-d_seed).to(host.dtype).to(seed_input.dtype)
    return grad_host, grad_seed, grad_alpha, grad_seed_input


class BlendMultiplyEager(torch.autograd.Function):
    """The PyTorch path as an autograd.Function for eager CPU calls (router route 3b): blend
    forward, ``grads`` backward, no registered-op boundary. The router has run the incubator
    already (a CPU flag, read once at forward), so there is no flag here. Saves its inputs
    only."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad):
        ctx.tied_grad = tied_grad
        ctx.save_for_backward(host, seed, alpha, seed_input)
        return blend(host, seed, alpha, seed_input)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, seed_input = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input, _ = ctx.needs_input_grad
        return (
            *grads(
                grad,
                host,
                seed,
                alpha,
                seed_input,
                ctx.tied_grad,
                need_host,
                need_seed,
                need_alpha,
                need_seed_input,
            ),
            None,
        )


# ---- the compile path ----


class BlendMultiplyFormulas(torch.autograd.Function):
    """The compile path of blend_multiply: ops.BlendMultiply's math and saved tensors (its
    inputs) as tensor ops that torch.compile traces into the graph (so Inductor fuses them with
    the neighbouring operators); backward recomputes tanh from the saved inputs, as the kernels
    do."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad, incubate):
        ctx.tied_grad = tied_grad
        ctx.save_for_backward(host, seed, alpha, seed_input, incubate)
        t = tanh_torch(host, seed, seed_input)
        a = broadcast_view(alpha, host.dim(), t.dtype).clamp(0, 1)
        y = cast_output(host.to(t.dtype) * (1 + a * t), host.dtype)
        return where_incubating(incubate, host, y)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, seed_input, incubate = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input, _, _ = ctx.needs_input_grad
        grad_host, grad_seed, grad_alpha, grad_seed_input = grads(
            grad,
            host,
            seed,
            alpha,
            seed_input,
            ctx.tied_grad,
            need_host,
            need_seed,
            need_alpha,
            need_seed_input,
        )
        grad_host, grad_seed, grad_alpha, grad_seed_input = straight_through_where(
            incubate, grad, (grad_host, grad_seed), (grad_alpha, grad_seed_input)
        )
        return grad_host, grad_seed, grad_alpha, grad_seed_input, None, None
