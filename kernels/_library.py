"""Registering an operator's forward/backward op pair with torch.library, in one place.

Each pair gets: a schema; the PyTorch path as the CompositeExplicitAutograd kernel (every device);
the Triton launcher for CUDA (and for CPU under TRITON_INTERPRET=1); and a fake that mirrors the
launchers' allocations, for torch.compile and opcheck. The ops have no autograd kernel: the
operator's torch.autograd.Function owns autograd (one registered-op boundary per call)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._backend import HAS_TRITON, INTERPRET

NAMESPACE = "esper_slot"


def register_op(
    name: str, schema: str, torch_impl: Callable, triton_impl: Callable | None, fake: Callable
):
    """Define ``esper_slot::{name}``; return its OpOverload."""
    qualname = f"{NAMESPACE}::{name}"
    torch.library.define(qualname, schema)
    torch.library.impl(qualname, "CompositeExplicitAutograd", torch_impl)
    if HAS_TRITON and triton_impl is not None:
        for key in ("CUDA", "CPU") if INTERPRET else ("CUDA",):
            torch.library.impl(qualname, key, triton_impl)
    torch.library.register_fake(qualname)(fake)
    return getattr(getattr(torch.ops, NAMESPACE), name).default


def register_pair(
    name: str,
    *,
    fwd_schema: str,
    bwd_schema: str,
    torch_impls: tuple[Callable, Callable],
    triton_impls: tuple[Callable, Callable] | None,
    fakes: tuple[Callable, Callable],
):
    """Define ``esper_slot::{name}_fwd`` and ``_bwd``; return their OpOverloads."""
    return tuple(
        register_op(f"{name}_{suffix}", schema, torch_impl, triton_impl, fake)
        for suffix, schema, torch_impl, triton_impl, fake in zip(
            ("fwd", "bwd"),
            (fwd_schema, bwd_schema),
            torch_impls,
            triton_impls or (None, None),
            fakes,
        )
    )


def probed_schema(fwd_schema: str) -> str:
    """A forward's schema with the nonfinite probe appended, mutated in place. A separate op,
    called only eagerly: a mutable argument in the plain forward's schema would make the op
    mutable to torch.compile (auto_functionalized), which the opaque compile path cannot lower."""
    args, ret = fwd_schema.rsplit(") ->", 1)
    return f"{args}, Tensor(a!) nonfinite) ->{ret}"
