"""The multiply family's registered ops and the autograd boundary over them.

    esper_slot::blend_multiply_fwd(host, seed, alpha, seed_input?, incubate?) -> y
    esper_slot::blend_multiply_fwd_probed(..., nonfinite!) -> y   eager calls with a probe only
    esper_slot::blend_multiply_bwd(grad, host, seed, alpha, seed_input?, incubate?, tied_grad,
                                   need_host, need_seed, need_alpha, need_seed_input)
        -> (grad_host, grad_seed, grad_alpha, grad_seed_input)   empty where not needed

seed_input=None means "host's values" (read once); tied_grad adds seed_input's gradient to
host's, for the case where seed_input is host itself. Each op has the PyTorch path as its
CompositeExplicitAutograd kernel, the Triton launcher for CUDA (and CPU under
TRITON_INTERPRET=1), and a fake that allocates exactly what the launchers do (alloc.py). The
names and schemas are part of saved compiled graphs and of the opcheck tests: do not change
them. The ops have no autograd kernel: BlendMultiply owns autograd, one op boundary per call.
"""

from __future__ import annotations

import torch

from .._backend import HAS_TRITON
from .._library import probed_schema, register_op, register_pair
from .alloc import alloc_grads
from .torch_path import bwd_torch, fwd_torch

if HAS_TRITON:
    from .triton import bwd_triton, fwd_triton


def fwd_fake(host, seed, alpha, seed_input, incubate, nonfinite=None):
    return torch.empty_like(host)


def bwd_fake(
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
    return alloc_grads(
        host, seed, alpha, seed_input, need_host, need_seed, need_alpha, need_seed_input
    )


FWD_SCHEMA = (
    "(Tensor host, Tensor seed, Tensor alpha, Tensor? seed_input, Tensor? incubate) -> Tensor"
)
BWD_SCHEMA = (
    "(Tensor grad, Tensor host, Tensor seed, Tensor alpha, Tensor? seed_input, "
    "Tensor? incubate, bool tied_grad, bool need_host, bool need_seed, bool need_alpha, "
    "bool need_seed_input) "
    "-> (Tensor, Tensor, Tensor, Tensor)"
)
blend_multiply_fwd, blend_multiply_bwd = register_pair(
    "blend_multiply",
    fwd_schema=FWD_SCHEMA,
    bwd_schema=BWD_SCHEMA,
    torch_impls=(fwd_torch, bwd_torch),
    triton_impls=(fwd_triton, bwd_triton) if HAS_TRITON else None,
    fakes=(fwd_fake, bwd_fake),
)
# The forward with the nonfinite probe (eager calls only; see probed_schema).
blend_multiply_fwd_probed = register_op(
    "blend_multiply_fwd_probed",
    probed_schema(FWD_SCHEMA),
    fwd_torch,
    fwd_triton if HAS_TRITON else None,
    fwd_fake,
)


class BlendMultiply(torch.autograd.Function):
    """Autograd boundary of blend_multiply over the ops: one registered op forward, one
    backward; saves its inputs and nothing else. (Eager CPU calls never come here: the router
    runs cpu_fast's shortcuts or torch_path.BlendMultiplyEager.)

    seed_input=None: seed_input holds host's values, read once; ``tied_grad`` says whether its
    gradient flows into host (seed_input is host itself) or nowhere (host.detach())."""

    @staticmethod
    def forward(ctx, host, seed, alpha, seed_input, tied_grad, incubate, nonfinite=None):
        ctx.tied_grad = tied_grad
        ctx.save_for_backward(host, seed, alpha, seed_input, incubate)
        if nonfinite is None:
            return blend_multiply_fwd(host, seed, alpha, seed_input, incubate)
        return blend_multiply_fwd_probed(host, seed, alpha, seed_input, incubate, nonfinite)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        host, seed, alpha, seed_input, incubate = ctx.saved_tensors
        need_host, need_seed, need_alpha, need_seed_input = ctx.needs_input_grad[:4]
        grads = blend_multiply_bwd(
            grad,
            host,
            seed,
            alpha,
            seed_input,
            incubate,
            ctx.tied_grad,
            need_host,
            need_seed,
            need_alpha,
            need_seed_input,
        )
        needs = (need_host, need_seed, need_alpha, need_seed_input)
        return (*(g if needed else None for g, needed in zip(grads, needs)), None, None, None)
