"""The lerp family's registered ops and the autograd boundary over them.

    esper_slot::blend_lerp_fwd(host, seed, alpha, gate?, incubate?) -> y
    esper_slot::blend_lerp_fwd_probed(..., nonfinite!) -> y      eager calls with a probe only
    esper_slot::blend_lerp_bwd(grad, host?, seed?, alpha, gate?, incubate?, seed_dtype,
                               need_host, need_seed, need_alpha, need_gate)
        -> (grad_host, grad_seed, grad_alpha, grad_gate)        empty where not needed

Each op has the PyTorch path as its CompositeExplicitAutograd kernel, the Triton launcher for
CUDA (and CPU under TRITON_INTERPRET=1), and a fake that allocates exactly what the launchers
do (alloc.py). The names and schemas are part of saved compiled graphs and of the opcheck
tests: do not change them. The ops have no autograd kernel: BlendLerp owns autograd, one op
boundary per call.
"""

from __future__ import annotations

import torch

from .._backend import HAS_TRITON
from .._library import probed_schema, register_op, register_pair
from .alloc import alloc_grads, coef_grads_like
from .torch_path import bwd_torch, fwd_torch, restore, save_inputs

if HAS_TRITON:
    from .triton import bwd_triton, fwd_triton


def fwd_fake(host, seed, alpha, gate, incubate, nonfinite=None):
    return torch.empty_like(host)


def bwd_fake(
    grad, host, seed, alpha, gate, incubate, seed_dtype, need_host, need_seed, need_alpha, need_gate
):
    like = grad if host is None else host
    return (
        *alloc_grads(like, seed_dtype, need_host, need_seed),
        *coef_grads_like(alpha, gate, need_alpha, need_gate),
    )


FWD_SCHEMA = "(Tensor host, Tensor seed, Tensor alpha, Tensor? gate, Tensor? incubate) -> Tensor"
BWD_SCHEMA = (
    "(Tensor grad, Tensor? host, Tensor? seed, Tensor alpha, Tensor? gate, "
    "Tensor? incubate, ScalarType seed_dtype, bool need_host, bool need_seed, bool need_alpha, "
    "bool need_gate) "
    "-> (Tensor, Tensor, Tensor, Tensor)"
)
blend_lerp_fwd, blend_lerp_bwd = register_pair(
    "blend_lerp",
    fwd_schema=FWD_SCHEMA,
    bwd_schema=BWD_SCHEMA,
    torch_impls=(fwd_torch, bwd_torch),
    triton_impls=(fwd_triton, bwd_triton) if HAS_TRITON else None,
    fakes=(fwd_fake, bwd_fake),
)
# The forward with the nonfinite probe (eager calls only; see probed_schema).
blend_lerp_fwd_probed = register_op(
    "blend_lerp_fwd_probed",
    probed_schema(FWD_SCHEMA),
    fwd_torch,
    fwd_triton if HAS_TRITON else None,
    fwd_fake,
)


class BlendLerp(torch.autograd.Function):
    """Autograd boundary of blend_add / blend_gate (gate=None for blend_add) over the ops: one
    registered op forward, one backward. (Eager CPU calls never come here: the router runs
    torch_path.BlendLerpEager, the same PyTorch path without the op boundary.)

    Saves its inputs only (torch_path.save_inputs): host and seed only when a coefficient needs
    a gradient. ``nonfinite`` (eager only) selects the probed forward op."""

    @staticmethod
    def forward(ctx, host, seed, alpha, gate, incubate, nonfinite=None):
        save_inputs(ctx, host, seed, alpha, gate, incubate)
        if nonfinite is None:
            return blend_lerp_fwd(host, seed, alpha, gate, incubate)
        return blend_lerp_fwd_probed(host, seed, alpha, gate, incubate, nonfinite)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, gate, incubate, need_host, need_seed, need_alpha, need_gate = restore(
            ctx
        )
        grad_host, grad_seed, grad_alpha, grad_gate = blend_lerp_bwd(
            grad,
            host,
            seed,
            alpha,
            gate,
            incubate,
            ctx.seed_dtype,
            need_host,
            need_seed,
            need_alpha,
            need_gate,
        )
        return (
            grad_host if need_host else None,
            grad_seed if need_seed else None,
            grad_alpha if need_alpha else None,
            grad_gate if need_gate else None,
            None,
            None,
        )
