"""Checks shared by the operator tests: the float64 oracle comparison with dtype-fitted
tolerances, layout equality, and what autograd saves."""

from __future__ import annotations

import torch


def tolerance(dtype: torch.dtype, terms: int = 1) -> dict:
    """Against a float64 oracle: ours rounds a float32 (or float64) computation once to ``dtype``,
    so one unit of ``dtype``'s precision bounds the relative error. A coefficient gradient is a
    sum of ``terms`` float32 values: its rounding error grows like sqrt(terms)."""
    eps = torch.finfo(dtype).eps
    if dtype == torch.float32:
        eps = 4 * eps  # a few float32 operations before the single rounding
    return {"rtol": eps, "atol": 1e-5 * terms**0.5}


def forward_backward(fn, args, grad):
    y = fn(*args)
    grads = torch.autograd.grad(y, [a for a in args if a.requires_grad], grad)
    return y, grads


def oracle(case, grad):
    """The reference in float64 on the same values (seed and seed_input first cast to host's
    dtype, as the contract says)."""
    host_dtype = case.args[0].dtype
    args = tuple(
        (a if i in (0, 2, 3) and not (i == 3 and case.op == "multiply") else a.to(host_dtype))
        .detach()
        .double()
        .requires_grad_(a.requires_grad)
        for i, a in enumerate(case.args)
    )
    return forward_backward(case.ref, args, grad.double())


def assert_matches_oracle(case, grad):
    y, grads = forward_backward(case.ours, case.args, grad)
    y_ref, grads_ref = oracle(case, grad)
    host = case.args[0]
    assert y.dtype == host.dtype and y.shape == host.shape
    torch.testing.assert_close(y.double(), y_ref, **tolerance(host.dtype))
    for arg, g, g_ref in zip(case.args, grads, grads_ref):
        assert g.dtype == arg.dtype and g.shape == arg.shape
        terms = y.numel() // arg.numel()  # > 1 for alpha/gate: a sum over broadcast dims
        # A gradient is rounded to host's dtype, then (seed) to its own.
        worst = max((host.dtype, arg.dtype), key=lambda d: torch.finfo(d).eps)
        torch.testing.assert_close(g.double(), g_ref, **tolerance(worst, terms))


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal strides on every dim that has more than one element."""
    return a.shape == b.shape and all(
        n == 1 or x == y for n, x, y in zip(a.shape, a.stride(), b.stride())
    )


def saved_during(fn, *args):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(*args)
    return y, saved


def storage(t):
    return t.untyped_storage().data_ptr()
