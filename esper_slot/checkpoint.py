"""Model-wide checkpoint handling: validate everything before anything changes, atomic files.

Atomic loads. ``nn.Module.load_state_dict`` copies module by module and raises at the end, so a
bad slot record or a shape mismatch would leave earlier modules already overwritten. Every
module that holds a SeedSlot (at any depth) therefore gets a load_state_dict pre-hook that, when
that module is the one being loaded into, checks the whole state dict first: every slot record,
the seeds to rebuild, and every tensor's shape. A problem raises CheckpointError before the first
copy. (Hooks are installed through torch's module-registration hook when a module holding a slot
is assigned as a child; the hook costs one isinstance check per registration.)

Plain ``model.load_state_dict`` cannot tell the hook whether it is strict, so missing and
unexpected keys outside the slots' own records follow PyTorch's rules there; ``load_state_dict``
and ``load_checkpoint`` below check those before loading too.

Files. ``save_checkpoint`` stores a digest of every entry (integrity.py);
``read_checkpoint`` and ``load_checkpoint`` check it before anything changes, and turn every
failure to read or check a file (truncation, zip damage, unpickling, a missing record, an OSError,
whatever torch.load raises) into a CheckpointError naming the file and the cause, chained to it.
A file without a digest (saved before, or by plain torch.save) loads with one logged notice.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import integrity, registry
from .discovery import named_slots
from .extra_state import VERSION_KEY, CheckpointError
from .gate import DefaultGate
from .lifecycle import SEED_STAGES, Stage

logger = logging.getLogger(__name__)

_EXTRA = "_extra_state"
_WRAPPER_PARTS = ("_orig_mod", "module")  # torch.compile's and DDP's wrappers


def _meta_shapes(build, args: tuple, prefix: str, problems: list[str]) -> dict[str, torch.Size]:
    """Shapes of the module ``build(*args)`` the load would make, built on the meta device."""
    try:
        with torch.device("meta"):
            module = build(*args)
    except ValueError as err:
        problems.append(str(err))
        return {}
    return {prefix + k: v.shape for k, v in module.state_dict().items() if torch.is_tensor(v)}


def problems_loading(model: nn.Module, state_dict, strict: bool) -> list[str]:
    """Everything that would make ``model.load_state_dict(state_dict, strict)`` fail or leave a
    slot inconsistent, found without changing the model."""
    if not isinstance(state_dict, dict):
        return [f"a state dict is a dict of tensors, got {type(state_dict).__name__}"]
    problems: list[str] = []
    dropped: list[str] = []
    added: dict[str, torch.Size] = {}
    for name, slot in named_slots(model):
        prefix = f"{name}." if name else ""
        record = state_dict.get(prefix + _EXTRA)
        if record is None:
            continue  # a missing record is a missing key: strict loads report it below
        slot_problems = slot.check_record(record)
        if slot_problems:
            version = record.get(VERSION_KEY) if isinstance(record, dict) else None
            problems += [
                f"slot {name or '<root>'!r} (record version {version}): {p}" for p in slot_problems
            ]
            continue
        has_seed = Stage[record["stage"]] in SEED_STAGES
        if not has_seed:
            dropped += [prefix + "seed.", prefix + "gate."]
            continue
        if slot.seed is None:
            added.update(
                _meta_shapes(
                    registry.build,
                    (record["seed_factory"], record["seed_kwargs"], slot.topology, slot.channels),
                    prefix + "seed.",
                    problems,
                )
            )
        if record["gate_kind"] == "none":
            dropped.append(prefix + "gate.")
        elif slot.gate is None or slot.seed is None:
            dropped.append(prefix + "gate.")
            build: Callable[..., nn.Module]
            if record["gate_kind"] == "default":
                build, args = DefaultGate, (slot.channels, slot.topology)
            else:
                build, args = registry.build, (record["gate_factory"], record["gate_kwargs"])
            added.update(_meta_shapes(build, args, prefix + "gate.", problems))
    expected = {
        k: v.shape
        for k, v in model.state_dict(keep_vars=True).items()
        if torch.is_tensor(v) and not any(k.startswith(d) for d in dropped)
    }
    expected.update(added)
    for key, value in state_dict.items():
        if key in expected and not torch.is_tensor(value):  # torch would raise mid-load
            problems.append(f"{key!r} is a {type(value).__name__} in the checkpoint, not a tensor")
        elif key in expected and value.shape != expected[key]:
            problems.append(
                f"{key!r} has shape {list(value.shape)} in the checkpoint but "
                f"{list(expected[key])} in the model"
            )
    if strict:
        records = {(f"{n}." if n else "") + _EXTRA for n, _ in named_slots(model)}
        wanted = set(expected) | records
        problems += [f"missing key {k!r}" for k in sorted(wanted - set(state_dict))]
        problems += [f"unexpected key {k!r}" for k in sorted(set(state_dict) - wanted)]
    return problems


def _raise(problems: list[str], what: str) -> None:
    if problems:
        raise CheckpointError(
            f"cannot load {what}; the model was not changed:\n  - " + "\n  - ".join(problems)
        )


def _guard(module, state_dict, prefix, *args) -> None:
    if prefix == "":  # this module is the one load_state_dict was called on
        _raise(
            problems_loading(module, state_dict, strict=False),
            f"the state dict into {type(module).__name__}",
        )


def _guarded(module: nn.Module) -> bool:
    # Through __dict__: wrappers such as torch.compile's forward attribute lookups to a model
    # they may not hold yet while this runs.
    return bool(module.__dict__.get("_esper_load_guard", False))


def install_load_guard(module: nn.Module) -> None:
    if not _guarded(module):
        module.register_load_state_dict_pre_hook(_guard)
        module.__dict__["_esper_load_guard"] = True


def _on_child_registered(parent, name, child):
    if isinstance(child, nn.Module) and _guarded(child):
        install_load_guard(parent)


nn.modules.module.register_module_module_registration_hook(_on_child_registered)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside torch.compile's and DistributedDataParallel's wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, nn.parallel.DistributedDataParallel):
            inner = model.module
        if inner is None:
            return model
        model = inner


def strip_wrapper_prefixes(state_dict: dict) -> dict:
    """Keys saved from a compiled ("_orig_mod.") or DDP-wrapped ("module.") model, as the plain
    model names them."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        while parts and parts[0] in _WRAPPER_PARTS:
            parts = parts[1:]
        parts = [p for p in parts if p != "_orig_mod"]
        new = ".".join(parts)
        if new in out:
            raise CheckpointError(
                f"keys {key!r} and another both map to {new!r} after removing wrapper prefixes"
            )
        out[new] = value
    return out


def load_state_dict(
    model: nn.Module, state_dict: dict, *, strict: bool = True, from_wrapped: bool = False
):
    """Atomic ``load_state_dict``: every problem (slot records, shapes, and with ``strict``
    missing or unexpected keys) raises CheckpointError before anything changes.

    model may be compiled or DDP-wrapped (its inner model is loaded). from_wrapped: accept keys
    saved from a compiled or DDP-wrapped model."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"a state dict is a dict, got {type(state_dict).__name__}")
    target = unwrap(model)
    if from_wrapped:
        state_dict = strip_wrapper_prefixes(state_dict)
    _raise(problems_loading(target, state_dict, strict), f"into {type(target).__name__}")
    return target.load_state_dict(state_dict, strict=strict)


def save_checkpoint(model_or_state_dict, path: str | os.PathLike) -> Path:
    """Save a model's state_dict (of the plain model inside any compile/DDP wrapper) or a state
    dict to ``path`` atomically: written to a temporary file in the same folder, flushed to disk,
    then renamed over ``path``. A crash mid-save leaves the old file (or none), never a
    truncated one. The file carries a digest of every entry (tensors' dtype, shape and bytes,
    slot records), checked by read_checkpoint/load_checkpoint; the keys are the model's own and
    ``torch.load(weights_only=True)`` + plain ``load_state_dict`` read it as before."""
    path = Path(path)
    state = (
        unwrap(model_or_state_dict).state_dict()
        if isinstance(model_or_state_dict, nn.Module)
        else model_or_state_dict
    )
    state = integrity.with_digest(state)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def read_checkpoint(path: str | os.PathLike, map_location=None, *, verify: bool = True) -> dict:
    """torch.load with weights_only=True (tensors and primitives only, never arbitrary code),
    then, with ``verify``, the file's digest checked against what was read.

    Every failure raises CheckpointError naming the file and the cause (chained to the original
    exception): a missing or unreadable file, truncation, zip damage (the pickle's zip CRC-32 is
    checked first), unpickling errors, a missing record, a digest mismatch (naming the first
    damaged entry). A file without a digest (saved before esper-slot stored one, or by plain
    torch.save) is read with one logged notice (logger "esper_slot.checkpoint", WARNING) that
    it was not verified. ``verify=False`` skips the CRC, the digest and the notice: a damaged
    tensor then loads as it is (see docs/checkpoints-integrity.md)."""
    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    try:
        if verify:
            integrity.check_pickle_crc(path)
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {where!r}: it is damaged or not a weights-only "
            f"checkpoint (unpickling it could run code): {err}"
        ) from err
    except Exception as err:  # any failure to read the file is a CheckpointError
        unreachable = isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError))
        hint = "" if unreachable else " (truncated, damaged or not a torch.save file?)"
        detail = str(err) or ("the file ends early" if isinstance(err, EOFError) else "")
        raise CheckpointError(
            f"cannot read {where!r} as a checkpoint{hint}: {type(err).__name__}: {detail}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{where!r} holds a {type(state).__name__}, not a state dict")
    record = integrity.pop_digest(state, where)
    if not verify:
        return state
    if record is None:
        logger.warning(
            "checkpoint %r has no esper-slot digest (saved by an esper-slot before "
            "digests, or by plain torch.save): its tensors and records were not "
            "verified",
            where,
        )
        return state
    try:
        integrity.verify(state, record, where)
    except CheckpointError:
        raise
    except Exception as err:  # e.g. a damaged tensor that cannot be read back
        raise CheckpointError(
            f"cannot check {where!r} against its digest: {type(err).__name__}: {err}"
        ) from err
    return state


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    map_location=None,
    from_wrapped: bool = False,
    verify: bool = True,
):
    """read_checkpoint (which checks the file's digest unless ``verify=False``) + the atomic
    load_state_dict above: a file that is damaged, or does not fit the model, raises
    CheckpointError and the model is not changed."""
    return load_state_dict(
        model,
        read_checkpoint(path, map_location, verify=verify),
        strict=strict,
        from_wrapped=from_wrapped,
    )
