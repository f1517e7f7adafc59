"""Slots under torch.distributed: lifecycle lockstep checks, all-rank grad-flow status, DDP
re-wrapping after transitions that add or remove parameters.

Every rank must run the same lifecycle calls (germinate, start_blending, step, fossilize, prune)
at the same point: a slot whose stage differs between ranks makes DDP's gradient buckets disagree,
which hangs the job. ``check_lockstep(model)`` (call it on every rank right after a transition)
all-gathers each slot's fingerprint (stage, blend mode, ramp position, isolation, alpha and the
seed's and gate's structure) and raises ``LockstepError`` on every rank, naming the ranks and the
fields that differ. A rank that never arrives makes the others raise after ``timeout`` seconds,
naming the check they waited at: an error, never a silent hang.
"""

from __future__ import annotations

import zlib
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from .alpha import MODES
from .discovery import named_slots
from .grad_flow import GradFlowStatus
from .lifecycle import BlendMode, Stage

FIELDS = (
    "stage",
    "blend_mode",
    "alpha_mode",
    "ramp_step",
    "ramp_steps",
    "isolate_gradients",
    "prune_scheduled",
    "alpha_bits",
    "seed_structure",
    "gate_structure",
)
_STAGES = list(Stage)
_MODES = list(BlendMode)
_ALPHA_MODES = list(MODES)


class LockstepError(RuntimeError):
    """Ranks disagree on the slots' lifecycle, or one did not reach a lockstep check in time."""


def structure_hash(module: nn.Module | None) -> int:
    """CRC32 of a module's structure (module types, parameter and buffer names, shapes, dtypes);
    0 for None. Values are not hashed: DDP broadcasts them from rank 0."""
    if module is None:
        return 0
    parts = [f"{n}:{type(m).__name__}" for n, m in module.named_modules()]
    parts += [
        f"{n}:{tuple(t.shape)}:{t.dtype}"
        for n, t in list(module.named_parameters()) + list(module.named_buffers())
    ]
    return zlib.crc32("|".join(parts).encode())


def slot_fingerprint(slot) -> list[int]:
    alpha_bits = int(torch.tensor(float(slot.alpha), dtype=torch.float32).view(torch.int32).item())
    return [
        _STAGES.index(slot.stage),
        _MODES.index(slot.blend_mode),
        _ALPHA_MODES.index(slot.alpha_mode),
        slot.schedule.steps_done,
        slot.schedule.steps_total,
        int(slot.isolate_gradients),
        int(slot.prune_scheduled),
        alpha_bits,
        structure_hash(slot.seed),
        structure_hash(slot.gate),
    ]


def _describe(field: str, value: int) -> str:
    if field == "stage":
        return _STAGES[value].name
    if field == "blend_mode":
        return _MODES[value].name
    if field == "alpha_bits":
        return f"{torch.tensor(value, dtype=torch.int32).view(torch.float32).item():.6g}"
    if field == "alpha_mode":
        return _ALPHA_MODES[value]
    if field in ("isolate_gradients", "prune_scheduled"):
        return str(bool(value))
    return str(value)


def _device(group) -> torch.device:
    backend = dist.get_backend(group)
    return (
        torch.device("cuda", torch.cuda.current_device())
        if backend == "nccl"
        else torch.device("cpu")
    )


def _all_gather(values: list[int], group, timeout: float, what: str) -> list[list[int]]:
    world = dist.get_world_size(group)
    device = _device(group)
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    gathered = [torch.empty_like(mine) for _ in range(world)]
    work = dist.all_gather(gathered, mine, group=group, async_op=True)
    try:
        work.wait(timeout=timedelta(seconds=timeout))
    except RuntimeError as err:
        raise LockstepError(
            f"rank {dist.get_rank(group)} waited {timeout:g} s at the lockstep check {what!r} "
            f"and not every rank arrived: some rank skipped or reordered a lifecycle call, or "
            f"stopped. The process group may now be unusable; restart the job. ({err})"
        ) from err
    return [t.tolist() for t in gathered]


def check_lockstep(
    model: nn.Module, *, group=None, timeout: float = 60.0, what: str = "lifecycle"
) -> None:
    """Raise LockstepError on every rank unless all ranks hold the same slots in the same
    lifecycle state. Call on every rank after each transition (``what`` names it in errors)."""
    slots = named_slots(model, display=True)
    names = [n for n, _ in slots]
    header = [len(slots), zlib.crc32("|".join(names).encode())]
    headers = _all_gather(header, group, timeout, what)
    if any(h != headers[0] for h in headers):
        detail = ", ".join(f"rank {r}: {h[0]} slots" for r, h in enumerate(headers))
        raise LockstepError(
            f"ranks hold different slots at {what!r} ({detail}; or the same "
            f"number under different names): build the same model on every rank"
        )
    rows = _all_gather([v for _, s in slots for v in slot_fingerprint(s)], group, timeout, what)
    problems = []
    k = len(FIELDS)
    for i, name in enumerate(names):
        for j, field in enumerate(FIELDS):
            values = [row[i * k + j] for row in rows]
            if len(set(values)) > 1:
                by_rank = ", ".join(f"rank {r} {_describe(field, v)}" for r, v in enumerate(values))
                problems.append(f"slot {name!r} {field}: {by_rank}")
    if problems:
        raise LockstepError(
            f"ranks are out of lockstep at {what!r}; every rank must make the same lifecycle "
            "calls in the same order (DDP would otherwise hang on mismatched gradient buckets):"
            "\n  - " + "\n  - ".join(problems)
        )


def rewrap(
    ddp: nn.parallel.DistributedDataParallel,
    *,
    timeout: float = 60.0,
    what: str = "rewrap",
    **ddp_kwargs,
) -> nn.parallel.DistributedDataParallel:
    """After germinate or prune (which add or remove parameters), check lockstep and wrap the
    inner model in a new DDP: its reducer covers the new parameters, and construction broadcasts
    rank 0's parameters and buffers (the new seed's included) to every rank. Pass the same
    ``ddp_kwargs`` you built the first DDP with; rebuild the optimizer's parameter list too."""
    module = ddp.module if isinstance(ddp, nn.parallel.DistributedDataParallel) else ddp
    check_lockstep(module, group=ddp_kwargs.get("process_group"), timeout=timeout, what=what)
    return nn.parallel.DistributedDataParallel(module, **ddp_kwargs)


def check_grad_flow_all_ranks(
    model: nn.Module, *, group=None, timeout: float = 60.0
) -> dict[str, GradFlowStatus]:
    """Grad-flow status of every slot combined over all ranks, returned on every rank: a slot is
    ok only if it is ok on every rank, and the status names the ranks where it is blocked. The
    one warning per blocked episode is logged on rank 0. Collective: call it on every rank."""
    slots = named_slots(model, display=True)
    rows = _all_gather(
        [v for _, s in slots for v in s.grad_flow.counts.tolist()],
        group,
        timeout,
        "check_grad_flow_all_ranks",
    )
    rank = dist.get_rank(group)
    out = {}
    for i, (name, slot) in enumerate(slots):
        per_rank = [row[3 * i : 3 * i + 3] for row in rows]
        blocked_ranks = [r for r, (_, _, last) in enumerate(per_rank) if last]
        label = name if not blocked_ranks else f"{name} (blocked on ranks {blocked_ranks})"
        combined = [
            sum(p[0] for p in per_rank),
            sum(p[1] for p in per_rank),
            next((p[2] for p in per_rank if p[2]), 0),
        ]
        status = slot.grad_flow.status(
            label,
            slot.stage.name,
            slot.stage in (Stage.TRAINING, Stage.BLENDING, Stage.FOSSILIZED),
            counts=combined,
            log=rank == 0,
        )
        out[name] = status
    return out
