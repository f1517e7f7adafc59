"""blend_add and blend_gate: ``y = lerp(host, seed, e)`` with torch.lerp's numerics.

    blend_add:  e = clamp(alpha, 0, 1)
    blend_gate: e = clamp(clamp(alpha, 0, 1) * clamp(gate, 0, 1), 0, 1)

Both are one kernel (the gate is optional). Gradients, with g = dL/dy:
    dL/dhost = g (1 - e)    dL/dseed = g e    dL/de summed per sample: S_b = sum(g (seed - host))
then alpha/gate through the product and clamp rules (_coef_grad). When neither alpha nor gate needs
a gradient, backward reads only g (seed and host are not even kept alive for it).

The arguments are validated by the router's step 2 (_checks.check_lerp); every route a call can
take is listed in router.route_lerp.
"""

from __future__ import annotations

from torch import Tensor

from .router import route_lerp


def blend_add(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    *,
    incubate: Tensor | None = None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """``host + a (seed - host)`` with ``a = clamp(alpha, 0, 1)``, computed like torch.lerp.

    Args:
        host: floating tensor, any shape and dense layout; sets the output's dtype/shape/layout.
        seed: same shape and device as host; cast to host's dtype.
        alpha: 0-d, [1], or per-sample [B, 1, ..., 1] floating tensor on host's device.
    Returns:
        y, exactly host where a = 0 and exactly seed (cast) where a = 1. Computed in float32
        (float64 for float64 host) and rounded once to host's dtype.
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
    return route_lerp("blend_add", host, seed, alpha, None, incubate, nonfinite)


def blend_gate(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    gate: Tensor,
    *,
    incubate: Tensor | None = None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """``host + e (seed - host)`` with ``e = clamp(clamp(alpha, 0, 1) * clamp(gate, 0, 1), 0, 1)``.

    alpha and gate are each 0-d, [1] or per-sample [B, 1, ..., 1]; otherwise as blend_add.
    Gradients reach host, seed, alpha and gate; ``incubate`` and ``nonfinite`` as in blend_add."""
    return route_lerp("blend_gate", host, seed, alpha, gate, incubate, nonfinite)
