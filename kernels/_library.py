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


def register_pair(name: str, *, fwd_schema: str, bwd_schema: str,
                  torch_impls: tuple[Callable, Callable],
                  triton_impls: tuple[Callable, Callable] | None,
                  fakes: tuple[Callable, Callable]):
    """Define ``esper_slot::{name}_fwd`` and ``_bwd``; return their OpOverloads."""
    ops = []
    for suffix, schema, torch_impl, triton_impl, fake in zip(
            ("fwd", "bwd"), (fwd_schema, bwd_schema), torch_impls,
            triton_impls or (None, None), fakes):
        qualname = f"{NAMESPACE}::{name}_{suffix}"
        torch.library.define(qualname, schema)
        torch.library.impl(qualname, "CompositeExplicitAutograd", torch_impl)
        if HAS_TRITON and triton_impl is not None:
            for key in ("CUDA", "CPU") if INTERPRET else ("CUDA",):
                torch.library.impl(qualname, key, triton_impl)
        torch.library.register_fake(qualname)(fake)
        ops.append(getattr(getattr(torch.ops, NAMESPACE), f"{name}_{suffix}").default)
    return tuple(ops)
