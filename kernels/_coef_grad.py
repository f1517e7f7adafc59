"""Gradients of the blend coefficients (alpha, gate) from per-program partial sums.

The backward kernels write one partial sum per program (no atomics, so results are bitwise
reproducible). ``finish`` turns the partials of each sample into

    S_b = sum over sample b of the operator's dL/d(coefficient product)
    d alpha = S_b * clamp(gate, 0, 1)   (S_b alone without a gate), then the clamp rule of alpha
    d gate  = S_b * clamp(alpha, 0, 1), then the clamp rule of gate

summed over samples for a scalar coefficient. The clamp rule is torch.clamp's: the gradient passes
where 0 <= x <= 1 (bounds included) and is zero elsewhere (NaN included). The product
clamp(a * g, 0, 1) of blend_gate never leaves [0, 1], so its outer clamp always passes.
On the Triton backend this is one extra single-program launch; on the PyTorch path a few tiny ops.
"""

from __future__ import annotations

from torch import Tensor

from ._backend import HAS_TRITON
from ._layout import flat

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._jit import EXACT, store

    @triton.jit
    def _clamp_rule(raw, grad):
        return tl.where((raw >= 0.0) & (raw <= 1.0), grad, 0.0)

    @triton.jit
    def _finish_kernel(
        partial_ptr,  # [outer * blocks_per_sample] partial sums, sample-major
        alpha_ptr,  # alpha, flattened: [outer] if ALPHA_PER_SAMPLE else [1]
        gate_ptr,  # gate likewise (alpha again when HAS_GATE is False: never read)
        grad_alpha_ptr,
        grad_gate_ptr,
        outer,
        blocks_per_sample,
        ALPHA_PER_SAMPLE: tl.constexpr,
        HAS_GATE: tl.constexpr,
        GATE_PER_SAMPLE: tl.constexpr,
        NEED_ALPHA: tl.constexpr,
        NEED_GATE: tl.constexpr,
        F64: tl.constexpr,
        RBLOCK: tl.constexpr,
    ):
        C: tl.constexpr = tl.float64 if F64 else tl.float32
        lanes = tl.arange(0, RBLOCK)
        acc_alpha = tl.sum(tl.zeros([RBLOCK], C), axis=0)
        acc_gate = tl.sum(tl.zeros([RBLOCK], C), axis=0)
        for b in range(0, outer):
            # Sum this sample's partials in a fixed order.
            vec = tl.zeros([RBLOCK], C)
            for start in range(0, blocks_per_sample, RBLOCK):
                idx = start + lanes
                vec += tl.load(
                    partial_ptr + b * blocks_per_sample + idx,
                    mask=idx < blocks_per_sample,
                    other=0.0,
                )
            s = tl.sum(vec, axis=0)
            alpha_raw = tl.load(alpha_ptr + (b if ALPHA_PER_SAMPLE else 0)).to(C)
            d_alpha = s
            if HAS_GATE:
                gate_raw = tl.load(gate_ptr + (b if GATE_PER_SAMPLE else 0)).to(C)
                d_alpha = s * tl.clamp(gate_raw, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
                d_gate = s * tl.clamp(alpha_raw, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
                if NEED_GATE:
                    if GATE_PER_SAMPLE:
                        store(grad_gate_ptr, b, _clamp_rule(gate_raw, d_gate), True)
                    else:
                        acc_gate += d_gate
            if NEED_ALPHA:
                if ALPHA_PER_SAMPLE:
                    store(grad_alpha_ptr, b, _clamp_rule(alpha_raw, d_alpha), True)
                else:
                    acc_alpha += d_alpha
        if NEED_ALPHA and not ALPHA_PER_SAMPLE:
            store(grad_alpha_ptr, 0, _clamp_rule(tl.load(alpha_ptr).to(C), acc_alpha), True)
        if HAS_GATE and NEED_GATE and not GATE_PER_SAMPLE:
            store(grad_gate_ptr, 0, _clamp_rule(tl.load(gate_ptr).to(C), acc_gate), True)


def finish_triton(
    partials: Tensor,
    outer: int,
    blocks_per_sample: int,
    alpha: Tensor,
    gate: Tensor | None,
    need_alpha: bool,
    need_gate: bool,
) -> tuple[Tensor, Tensor]:
    """Coefficient gradients from the kernel's partials; unneeded ones are empty tensors."""
    grad_alpha = alpha.new_empty(alpha.shape if need_alpha else (0,))
    grad_gate = (gate if gate is not None else alpha).new_empty(
        gate.shape if need_gate and gate is not None else (0,)
    )
    if not (need_alpha or need_gate):
        return grad_alpha, grad_gate
    alpha_flat = flat(alpha)
    gate_flat = flat(gate) if gate is not None else alpha_flat
    _finish_kernel[(1,)](
        partials,
        alpha_flat,
        gate_flat,
        grad_alpha.view(-1) if need_alpha else alpha_flat,
        grad_gate.view(-1) if need_gate else alpha_flat,
        outer,
        blocks_per_sample,
        ALPHA_PER_SAMPLE=alpha.numel() > 1,
        HAS_GATE=gate is not None,
        GATE_PER_SAMPLE=gate is not None and gate.numel() > 1,
        NEED_ALPHA=need_alpha,
        NEED_GATE=need_gate,
        F64=partials.dtype.is_floating_point and partials.element_size() == 8,
        RBLOCK=1024,
        num_warps=4,
        **EXACT,
    )
    return grad_alpha, grad_gate


def finish_torch(
    per_sample_sums: Tensor,
    alpha: Tensor,
    gate: Tensor | None,
    need_alpha: bool,
    need_gate: bool,
) -> tuple[Tensor, Tensor]:
    """The same rule in PyTorch, from S_b (shape [outer], compute dtype)."""
    s = per_sample_sums
    alpha_raw = alpha.reshape(-1).to(s.dtype)
    d_alpha = s
    grad_gate = (gate if gate is not None else alpha).new_empty((0,))
    if gate is not None:
        gate_raw = gate.reshape(-1).to(s.dtype)
        if need_alpha:
            d_alpha = s * gate_raw.clamp(0, 1)
        if need_gate:
            d_gate = s * alpha_raw.clamp(0, 1)
            if gate.numel() == 1:
                d_gate = d_gate.sum().reshape(1)
            inside = (gate_raw >= 0) & (gate_raw <= 1)
            grad_gate = (d_gate * inside).to(gate.dtype).reshape(gate.shape)
    grad_alpha = alpha.new_empty((0,))
    if need_alpha:
        if alpha.numel() == 1:
            d_alpha = d_alpha.sum().reshape(1)
        inside = (alpha_raw >= 0) & (alpha_raw <= 1)
        grad_alpha = (d_alpha * inside).to(alpha.dtype).reshape(alpha.shape)
    return grad_alpha, grad_gate
