"""The blend operators' ``incubate`` flag: SeedSlot's TRAINING stage as tensor data.

While the one-element bool tensor holds True, a blend operator is the straight-through incubator
(``ste(host, seed, copy=True)``): the output is host's bits, dL/dhost = dL/dseed = g, and every
other input (alpha, gate, seed_input) gets a zero gradient. Because the flag is read at run time
(one scalar load per Triton program), a compiled graph serves both stages without recompiling.

The Triton kernels branch on it per program (``_jit.incubating``). The PyTorch path reads it on
the host when it lives on the CPU (free: no device sync), and otherwise selects with torch.where
on the device; both give the same bits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def flag_pointer(incubate: Tensor | None, placeholder: Tensor) -> Tensor:
    """What a launcher passes for the flag: the flag, or any tensor when there is none (the
    kernel is compiled with HAS_FLAG=False then and never reads it)."""
    return placeholder if incubate is None else incubate


def incubate_state(incubate: Tensor | None) -> bool | None:
    """False without a flag; the flag's value when it is on the CPU; None when it is on another
    device (the PyTorch path then selects on the device with select_straight_through)."""
    if incubate is None:
        return False
    if incubate.device.type == "cpu":
        return bool(incubate.item())
    return None


def forward_torch(host: Tensor, incubate: Tensor | None, blend: Callable[[], Tensor]) -> Tensor:
    """The PyTorch path's forward: a copy of host while the flag is set (``blend`` not even run
    when the flag is on the CPU), else ``blend()`` (host's layout, a fresh tensor)."""
    state = incubate_state(incubate)
    if state:
        return torch.empty_like(host).copy_(host)
    out = blend()
    if state is None and incubate is not None:  # the flag lives on a device: select there
        out.copy_(torch.where(incubate.reshape(()), host, out))
    return out


def straight_through_grads(
    grad: Tensor, passed: tuple[Tensor, ...], zeroed: tuple[Tensor, ...] = ()
) -> tuple[Tensor, ...]:
    """Fill the allocated gradients as ste's backward does: ``grad`` into each of ``passed``
    (cast to its dtype), zeros into each of ``zeroed``. Unneeded gradients are empty and stay
    so."""
    for out in passed:
        if out.numel():
            out.copy_(grad)
    for out in zeroed:
        if out.numel():
            out.zero_()
    return passed + zeroed


def select_straight_through(
    incubate: Tensor, grad: Tensor, passed: tuple[Tensor, ...], zeroed: tuple[Tensor, ...] = ()
) -> tuple[Tensor, ...]:
    """The blend's gradients, replaced on the device by ste's where the flag is True."""
    flag = incubate.reshape(())
    for out in passed:
        if out.numel():
            out.copy_(torch.where(flag, grad.to(out.dtype), out))
    for out in zeroed:
        if out.numel():
            out.masked_fill_(flag, 0)
    return passed + zeroed


class Incubating(torch.autograd.Function):
    """The eager CPU path of a blend operator while its flag holds True: ``ste(host, seed,
    copy=True)``, with zero gradients for the operator's other tensor inputs (coefficients,
    seed_input), as the kernels give them. Saves nothing."""

    @staticmethod
    def forward(ctx, host, seed, *others):
        ctx.others = tuple(None if o is None else (o.shape, o.dtype) for o in others)
        return host.clone()  # host's layout (clone preserves a dense tensor's strides)

    @staticmethod
    def backward(ctx, grad):
        zeros = tuple(
            None if meta is None or not needed else grad.new_zeros(meta[0], dtype=meta[1])
            for meta, needed in zip(ctx.others, ctx.needs_input_grad[2:])
        )
        return (grad, grad, *zeros)  # autograd casts seed's copy to seed's dtype


# ---- the compile path (functional, traced into the graph) ----


def where_incubating(incubate: Tensor | None, host: Tensor, out: Tensor) -> Tensor:
    """``out``, or host's values where the flag is True (a select: NaN/Inf in ``out`` cannot
    leak)."""
    return out if incubate is None else torch.where(incubate.reshape(()), host, out)


def straight_through_where(
    incubate: Tensor | None,
    grad: Tensor,
    passed: tuple[Tensor | None, ...],
    zeroed: tuple[Tensor | None, ...] = (),
) -> tuple[Tensor | None, ...]:
    """The blend's gradients (None where not needed), replaced by ste's where the flag is True:
    ``grad`` (in each gradient's dtype) for ``passed``, zeros for ``zeroed``."""
    if incubate is None:
        return passed + zeroed
    flag = incubate.reshape(())
    return tuple(
        None if t is None else torch.where(flag, grad.to(t.dtype), t) for t in passed
    ) + tuple(None if t is None else t.masked_fill(flag, 0) for t in zeroed)
