"""blend_multiply: ``y = host (1 + a tanh(seed - seed_input))`` with ``a = clamp(alpha, 0, 1)``.

seed and seed_input are cast to host's dtype. With t = tanh(seed - seed_input) and g = dL/dy:
    dL/dhost = g (1 + a t)     dL/dseed = g host a (1 - t^2)     dL/dseed_input = -dL/dseed
    dL/da summed per sample: S_b = sum(g host t), then alpha's clamp rule (_coef_grad).
When seed_input is host itself (no gradient isolation), autograd adds the two host terms.
The kernels and the compile path recompute t in backward: nothing input-sized is saved beyond
the inputs (the eager CPU path keeps t: see cpu_fast.py).

The arguments are validated by the router's step 1 (_checks.check_multiply); every route a call
can take is listed in router.route_multiply.
"""

from __future__ import annotations

from torch import Tensor

from .router import route_multiply


def blend_multiply(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor,
    *,
    incubate: Tensor | None = None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """``host (1 + a tanh(seed - seed_input))`` with ``a = clamp(alpha, 0, 1)``.

    Args:
        host: floating tensor, any shape and dense layout; sets the output's dtype/shape/layout.
        seed: the seed's output, host's shape and device; cast to host's dtype.
        alpha: 0-d, [1], or per-sample [B, 1, ..., 1] floating tensor on host's device.
        seed_input: what the seed was fed, host's shape and device; cast to host's dtype.
            At seed == seed_input, y == host. Passing host itself reads it once.
    Returns:
        y, computed in float32 (float64 for float64 host) and rounded once to host's dtype.
    Gradients reach host, seed, alpha and seed_input (into host when it is host).
    incubate: as in blend_add (while True: ste(host, seed, copy=True), and seed_input gets a
        zero gradient). nonfinite: as in blend_add (the seed is probed, not seed_input).
    """
    if seed_input is host:
        return route_multiply("blend_multiply", host, seed, alpha, None, True, incubate, nonfinite)
    return route_multiply(
        "blend_multiply", host, seed, alpha, seed_input, False, incubate, nonfinite
    )


def blend_multiply_detached(
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    *,
    incubate: Tensor | None = None,
    nonfinite: Tensor | None = None,
) -> Tensor:
    """``blend_multiply(host, seed, alpha, host.detach(), incubate=incubate)``, reading host once.

    For gradient isolation: the seed was fed host.detach(), so seed_input's gradient goes nowhere.
    """
    return route_multiply("blend_multiply", host, seed, alpha, None, False, incubate, nonfinite)
