"""The operators' ``nonfinite`` probe: a one-element int32 tensor set to 1 when the seed an
operator reads holds NaN or Inf (never cleared by the operator).

The Triton kernels set it from the seed values they load anyway (a blend) or read for it (the
incubator, which otherwise never reads the seed): no extra launch. The PyTorch path and the
compile path take one min/max reduction of the seed (under Inductor it fuses into the loop that
reads the seed). SeedSlot uses it to count forward passes with a non-finite seed output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._backend import eager_cpu


def check_nonfinite(op: str, host: Tensor, nonfinite: Tensor | None) -> None:
    if nonfinite is None:
        return
    if (
        not isinstance(nonfinite, Tensor)
        or nonfinite.dtype != torch.int32
        or nonfinite.numel() != 1
        or nonfinite.device != host.device
    ):
        got = (
            f"dtype {nonfinite.dtype}, shape {list(nonfinite.shape)} on {nonfinite.device}"
            if isinstance(nonfinite, Tensor)
            else type(nonfinite).__name__
        )
        raise ValueError(
            f"{op}: nonfinite must be a one-element int32 tensor on {host.device} "
            f"(e.g. torch.zeros(1, dtype=torch.int32, device=...)), got {got}"
        )


def probe_outside_op(host: Tensor, seed: Tensor, nonfinite: Tensor | None) -> Tensor | None:
    """Where no registered op will run (eager CPU: native ops; torch.compile: the formulas, and
    the plain ops, whose schema has no probe), probe here and return None; else return the
    probe for the op (the Triton kernel sets it from the values it loads)."""
    if nonfinite is not None and (eager_cpu(host) or torch.compiler.is_compiling()):
        probe_torch(seed, nonfinite)
        return None
    return nonfinite


def probe_torch(seed: Tensor, nonfinite: Tensor) -> None:
    """Set ``nonfinite`` to 1 when ``seed`` holds NaN or Inf (min and max propagate NaN and
    hold any Inf): no host sync."""
    if seed.numel() == 0:
        return
    low, high = torch.aminmax(seed.detach())
    with torch.no_grad():
        nonfinite.masked_fill_(~(torch.isfinite(low) & torch.isfinite(high)), 1)
