"""Argument validation shared by the public operators: every bad input is a ValueError that says
what is wrong and what to pass instead. Runs before any kernel and before autograd records anything,
so a rejected call changes nothing."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor

_T = TypeVar("_T", Tensor, Tensor | None)


def all_distinct(tensors: list[Tensor]) -> bool:
    """No tensor object appears twice. Pairwise ``is`` rather than a set of ``id()``s: Dynamo
    traces ``is`` between tensors on every supported torch, while ``id()`` of a tensor made
    inside the compiled region is a graph break before torch 2.13 (seen on 2.11: 'call_id()
    not supported for sourceless TensorVariable'), which fullgraph=True turns into an error."""
    for i, t in enumerate(tensors):
        for u in tensors[:i]:
            if t is u:
                return False
    return True


def plainly_valid(
    host: Tensor,
    seed: Tensor,
    coefs: tuple[Tensor, ...],
    incubate: Tensor | None,
    seed_input: Tensor | None = None,
) -> bool:
    """A cheap yes for the common call: all floating tensors on host's device, seed (and
    seed_input) of host's shape, each coefficient a scalar or per-sample [B, 1, ..., 1], incubate
    None or a one-element bool, and no tensor passed twice. False means "run the full checks"
    (which raise with a precise message, or accept the call and make repeated tensors distinct).
    At 64K elements a blend costs tens of microseconds on a CPU, so these checks must cost ~1."""
    try:
        device, shape, ndim = host.device, host.shape, host.dim()
        if not (
            seed.shape == shape
            and host.is_floating_point()
            and seed.is_floating_point()
            and seed.device == device
        ):
            return False
        seen = [host, seed]
        if seed_input is not None:
            if not (
                seed_input.is_floating_point()
                and seed_input.shape == shape
                and seed_input.device == device
            ):
                return False
            seen.append(seed_input)
        for coef in coefs:
            if not (coef.is_floating_point() and coef.device == device):
                return False
            numel, cdim = coef.numel(), coef.dim()
            if not (
                (numel == 1 and (cdim <= ndim or cdim == 1))
                or (cdim == ndim >= 1 and 0 < numel == coef.shape[0] == shape[0])
            ):
                return False
            seen.append(coef)
        if incubate is not None and not (
            incubate.dtype == torch.bool
            and incubate.numel() == 1
            and incubate.dim() <= 1
            and incubate.device == device
        ):
            return False
        return all_distinct(seen)
    except (AttributeError, TypeError):  # not a tensor: the full checks say what it is
        return False


def check_pair(op: str, host: Tensor, other: Tensor, name: str) -> None:
    """``other`` (seed or seed_input) must be a floating tensor of host's shape on host's device."""
    for tensor, label in ((host, "host"), (other, name)):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{op}: {label} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise ValueError(
                f"{op}: {label} has dtype {tensor.dtype}; it must be a floating dtype "
                "(float16, bfloat16, float32 or float64)"
            )
    if other.shape != host.shape:
        raise ValueError(
            f"{op}: {name} has shape {tuple(other.shape)} but host has shape {tuple(host.shape)}; "
            f"they must match exactly (no broadcasting)"
        )
    if other.device != host.device:
        raise ValueError(
            f"{op}: {name} is on {other.device} but host is on {host.device}; "
            "move them to the same device"
        )


def check_coefficient(op: str, host: Tensor, coef: Tensor, name: str) -> bool:
    """Validate alpha or gate; return True when it is per-sample ([B, 1, ..., 1] with B > 1).

    Accepted shapes: 0-d, [1], any all-ones shape with at most host.ndim dims (all scalar), or
    [B, 1, ..., 1] with host.ndim dims and B == host.shape[0] (per-sample).
    """
    if not isinstance(coef, Tensor):
        raise ValueError(
            f"{op}: {name} must be a torch.Tensor, got {type(coef).__name__}; keep it in a tensor "
            "(e.g. a module buffer) so torch.compile does not recompile when its value changes"
        )
    if not coef.is_floating_point():
        raise ValueError(f"{op}: {name} has dtype {coef.dtype}; it must be a floating dtype")
    if coef.device != host.device:
        raise ValueError(
            f"{op}: {name} is on {coef.device} but host is on {host.device}; "
            "move them to the same device"
        )
    shape = tuple(coef.shape)
    if coef.numel() == 1 and coef.dim() <= max(host.dim(), 1):
        return False
    if (
        host.dim() >= 1
        and coef.dim() == host.dim()
        and shape[0] == host.shape[0]
        and all(size == 1 for size in shape[1:])
    ):
        return True
    expected = "[B" + ", 1" * (host.dim() - 1) + "]" if host.dim() >= 1 else "(none: host is 0-d)"
    raise ValueError(
        f"{op}: {name} has shape {list(shape)}; expected a scalar (0-d or [1]) or per-sample "
        f"{expected} with B = {host.shape[0] if host.dim() else '-'}, for host of shape "
        f"{list(host.shape)}"
    )


def check_incubate(op: str, host: Tensor, incubate: Tensor | None) -> None:
    """``incubate`` (optional) must be a one-element bool tensor on host's device."""
    if incubate is None:
        return
    if not isinstance(incubate, Tensor):
        raise ValueError(
            f"{op}: incubate must be None or a bool tensor, got {type(incubate).__name__}; keep it "
            "in a tensor (e.g. a module buffer) so torch.compile does not recompile when it flips"
        )
    if incubate.dtype != torch.bool or incubate.numel() != 1 or incubate.dim() > 1:
        raise ValueError(
            f"{op}: incubate must be a 0-d or [1] torch.bool tensor, got dtype {incubate.dtype} "
            f"and shape {list(incubate.shape)}"
        )
    if incubate.device != host.device:
        raise ValueError(
            f"{op}: incubate is on {incubate.device} but host is on {host.device}; "
            "move them to the same device"
        )


def distinct(*tensors: _T) -> tuple[_T, ...]:
    """The tensors, with a repeated one replaced by a free view of itself.

    autograd.Function under torch.compile cannot take one tensor in two inputs (e.g. a seed that
    is nn.Identity returns host itself); a view is a separate input with the same values, and
    autograd sums the two gradients as it would for the repeated tensor."""
    present = [t for t in tensors if t is not None]
    if all_distinct(present):  # the common case, checked cheaply
        return tensors
    seen: list[Tensor] = []
    out = []
    for t in tensors:
        if t is not None and any(t is u for u in seen):
            t = t.view_as(t)
        if t is not None:
            seen.append(t)
        out.append(t)
    return tuple(out)


def check_lerp(
    op: str, host: Tensor, seed: Tensor, alpha: Tensor, gate: Tensor | None, incubate: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """blend_add's (gate None) or blend_gate's arguments: the cheap yes, else the full checks;
    returns them with a repeated tensor made distinct."""
    coefs = (alpha,) if op == "blend_add" else (alpha, gate)
    if plainly_valid(host, seed, coefs, incubate):  # type: ignore[arg-type]
        return host, seed, alpha, gate
    check_pair(op, host, seed, "seed")
    check_coefficient(op, host, alpha, "alpha")
    if op != "blend_add":
        check_coefficient(op, host, gate, "gate")  # type: ignore[arg-type]
    check_incubate(op, host, incubate)
    if gate is None:
        host, seed, alpha = distinct(host, seed, alpha)
        return host, seed, alpha, None
    host, seed, alpha, gate = distinct(host, seed, alpha, gate)
    return host, seed, alpha, gate


def check_multiply(
    op: str,
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    incubate: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """blend_multiply's arguments (seed_input None: host's values, i.e. seed_input was host
    itself or host.detach()): the cheap yes, else the full checks (seed_input's first); returns
    them with a repeated tensor made distinct."""
    if plainly_valid(host, seed, (alpha,), incubate, seed_input):
        return host, seed, alpha, seed_input
    if seed_input is not None:
        check_pair(op, host, seed_input, "seed_input")
    check_pair(op, host, seed, "seed")
    check_coefficient(op, host, alpha, "alpha")
    check_incubate(op, host, incubate)
    host, seed, alpha = distinct(host, seed, alpha)
    if seed_input is not None:
        seed_input = distinct(host, seed, alpha, seed_input)[3]
    return host, seed, alpha, seed_input
