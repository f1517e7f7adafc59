"""The multiply family's eager-CPU shortcuts: native ops, and tanh kept for backward.

On a CPU tanh is compute-bound (about 9x a multiply per element here), so these shortcuts keep
t = tanh(seed - seed_input) for backward instead of recomputing it as the kernels and the
compile path do: a trade of memory (one compute-dtype tensor of host's size) for speed, on the
CPU only. Host, seed and seed_input share one dense layout here (the router checks it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._coef_grad import finish_torch
from .._layout import broadcast_view, compute_dtype, needs_grad, per_sample_sum, unit_clamp

NATIVE_DTYPES = (torch.float32, torch.float64)  # native ops give one rounding per op there
NATIVE_BELOW = 2**15  # elements; see native_applies


def native_applies(host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None) -> bool:
    """Whether native_multiply gives the contract and beats BlendMultiplyEagerCpu: a
    float32/float64 blend below NATIVE_BELOW elements with a one-element alpha that needs no
    gradient. Native autograd makes the same forward ops and saves the same tensors (host, t)
    without an autograd.Function's Python per call (~50 us: at 8K elements the whole blend
    costs ~200); its backward makes more passes (addcmul's and tanh's generic formulas), ~1 ns
    per element more here: the two cross near 45K elements (measured, bench/NOTES.md)."""
    return (
        host.numel() < NATIVE_BELOW
        and host.dtype in NATIVE_DTYPES
        and seed.dtype is host.dtype
        and alpha.numel() == 1
        and not needs_grad(alpha)
        and (seed_input is None or seed_input.dtype is host.dtype)
    )


def native_multiply(
    host: Tensor, seed: Tensor, alpha: Tensor, seed_input: Tensor | None, tied_grad: bool
) -> Tensor:
    """host + a host tanh(seed - seed_input) with native autograd (see native_applies)."""
    s_in = seed_input if seed_input is not None else host if tied_grad else host.detach()
    return torch.addcmul(host, host, torch.tanh(seed - s_in), value=unit_clamp(alpha))


def coef_eager(alpha: Tensor, ndim: int, c: torch.dtype) -> float | Tensor:
    """clamp(alpha, 0, 1): a number for a scalar alpha, else a [B, 1, ..., 1] tensor in c."""
    if alpha.numel() == 1:
        return unit_clamp(alpha)
    return broadcast_view(alpha.detach(), ndim, c).clamp(0, 1)


def eager_values(host, seed, alpha, seed_input):
    """(y, t): y = host (1 + a t) in host's dtype and layout, t = tanh(seed - seed_input) in the
    compute dtype (seed and seed_input cast to host's dtype first).

    A bfloat16/float16 host is upcast once and that copy used for every operand: a native op
    given tensors of two dtypes makes its own float32 copy of each low-precision operand (host
    twice in addcmul), and each is a fresh allocation (docs/operators.md, "bfloat16 on a
    CPU")."""
    c = compute_dtype(host.dtype)
    h = host.to(c)  # host itself in float32/float64
    s_in = h if seed_input is None else seed_input.to(host.dtype).to(c)
    s = seed.to(host.dtype).to(c)
    t = (torch.sub(s, s_in) if host.dtype == c else s.sub_(s_in)).tanh_()  # s is fresh there
    a = coef_eager(alpha, host.dim(), c)
    if isinstance(a, float):  # host + a host t: one pass (the kernels round host (1 + a t))
        y = torch.addcmul(h, h, t, value=a)
    else:
        y = torch.addcmul(h, h, t * a)
    y = y.to(host.dtype)
    if y.stride() != host.stride():
        y = torch.empty_like(host).copy_(y)
    return y, t


class BlendMultiplyEagerCpu(torch.autograd.Function):
    """blend_multiply on the eager CPU path. Unlike the kernels and the compile path it keeps
    t = tanh(seed - seed_input) (compute dtype) for backward, beside host and alpha: recomputing
    it would make forward+backward slower than the eager formula, which keeps t and one more
    input-sized tensor (see the module docstring)."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad):
        y, t = eager_values(host, seed, alpha, seed_input)
        ctx.tied_grad = tied_grad
        ctx.dtypes = seed.dtype, None if seed_input is None else seed_input.dtype
        ctx.save_for_backward(host, alpha, t)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, alpha, t = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input, _ = ctx.needs_input_grad
        a = coef_eager(alpha, host.dim(), t.dtype)
        g = grad.to(t.dtype)
        # g host: a bfloat16/float16 host is upcast into a fresh tensor and multiplied there
        gh = torch.mul(g, host) if host.dtype == t.dtype else host.to(t.dtype).mul_(g)
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
