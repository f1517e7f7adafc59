"""The slot's checkpoint record (``get_extra_state``): schema, validation, migration.

A record is a flat dict of primitives (loadable with ``torch.load(weights_only=True)``) with the
same keys in every stage. Validation checks the whole record and reports every problem at once;
nothing has defaults: a missing field is an error, never a guess (ticket B3-DRL-17).
"""

from __future__ import annotations

import math

from .lifecycle import CURVES, SEED_STAGES, BlendMode, Stage

SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"
GATE_KINDS = ("none", "default", "factory", "custom")
TOPOLOGY_NAMES = ("cnn", "transformer")


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, from an unknown version, or does not fit the model.
    Raised before anything is changed."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_dict(v) -> bool:
    from .registry import check_kwargs

    try:
        check_kwargs(v, "kwargs")
    except ValueError:
        return False
    return True


# field -> (check, what it must be)
FIELDS = {
    VERSION_KEY: (_is_int, "an int"),
    "stage": (lambda v: isinstance(v, str) and v in Stage.__members__,
              f"one of {list(Stage.__members__)}"),
    "alpha": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "ramp_step": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "ramp_steps": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "ramp_curve": (lambda v: isinstance(v, str) and v in CURVES, f"one of {list(CURVES)}"),
    "blend_mode": (lambda v: isinstance(v, str) and v in BlendMode.__members__,
                   f"one of {list(BlendMode.__members__)}"),
    "topology": (lambda v: isinstance(v, str) and v in TOPOLOGY_NAMES,
                 f"one of {list(TOPOLOGY_NAMES)}"),
    "channels": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "isolate_gradients": (lambda v: isinstance(v, bool), "a bool (True or False)"),
    "seed_factory": (lambda v: v is None or (isinstance(v, str) and v != ""),
                     "a registered seed factory name or None"),
    "seed_kwargs": (_json_dict, "a dict of JSON values"),
    "gate_kind": (lambda v: isinstance(v, str) and v in GATE_KINDS, f"one of {list(GATE_KINDS)}"),
    "gate_factory": (lambda v: v is None or (isinstance(v, str) and v != ""),
                     "a registered factory name or None"),
    "gate_kwargs": (_json_dict, "a dict of JSON values"),
}


def describe(v) -> str:
    text = repr(v)
    return (text[:60] + "...") if len(text) > 60 else text


def check_record(state, *, slot: str, channels: int, topology: str, has_seed: bool,
                 has_gate: bool) -> list[str]:
    """Every problem with ``state`` as a checkpoint for this slot; [] when it can be applied."""
    from .registry import is_registered

    if not isinstance(state, dict):
        return [f"the record is a {type(state).__name__}, not a dict"]
    version = state.get(VERSION_KEY)
    if VERSION_KEY not in state:
        return [f"missing field {VERSION_KEY!r}: not an esper-slot record of any known version "
                "(an unversioned esper-lite record? upgrade it with "
                "esper_slot.migrate_extra_state)"]
    if not _is_int(version):
        return [f"field {VERSION_KEY!r} is {describe(version)}, must be an int"]
    if version > SCHEMA_VERSION:
        return [f"schema version {version} is newer than this esper-slot reads "
                f"({SCHEMA_VERSION}): upgrade esper-slot"]
    if version < SCHEMA_VERSION:
        return [f"schema version {version} is older than {SCHEMA_VERSION}: upgrade it with "
                "esper_slot.migrate_extra_state"]
    problems = [f"missing field {name!r}" for name in FIELDS if name not in state]
    problems += [f"unknown field {name!r}" for name in state if name not in FIELDS]
    for name, (check, want) in FIELDS.items():
        if name in state and not check(state[name]):
            problems.append(f"field {name!r} is {describe(state[name])}, must be {want}")
    if problems:
        return problems
    # Cross-field rules, on a record whose fields are each well formed.
    stage = Stage[state["stage"]]
    if state["ramp_step"] > state["ramp_steps"]:
        problems.append(f"ramp_step {state['ramp_step']} exceeds ramp_steps {state['ramp_steps']}")
    if state["topology"] != topology:
        problems.append(f"topology is {state['topology']!r} but the slot is {topology!r}")
    if state["channels"] != channels:
        problems.append(f"channels is {state['channels']} but the slot has {channels}")
    if stage == Stage.FOSSILIZED and state["alpha"] != 1:
        problems.append(f"alpha is {state['alpha']} in stage FOSSILIZED, must be 1.0")
    if stage not in SEED_STAGES:
        if state["alpha"] != 0:
            problems.append(f"alpha is {state['alpha']} in stage {stage.name}, must be 0.0")
        if state["seed_factory"] is not None or state["gate_kind"] != "none":
            problems.append(f"stage {stage.name} holds no seed, but seed_factory/gate_kind say "
                            "otherwise")
        return problems
    gate_mode = state["blend_mode"] == BlendMode.GATE.name
    if gate_mode != (state["gate_kind"] != "none"):
        problems.append(f"blend_mode {state['blend_mode']} with gate_kind "
                        f"{state['gate_kind']!r}: a gate exists exactly in GATE mode")
    if (state["gate_kind"] == "factory") != (state["gate_factory"] is not None):
        problems.append("gate_factory must name a factory exactly when gate_kind is 'factory'")
    if not has_seed:
        factory = state["seed_factory"]
        if factory is None:
            problems.append(f"the slot is empty and the checkpoint's seed was not germinated "
                            f"from a registered factory: germinate the same seed into slot "
                            f"{slot!r} first, then load")
        elif not is_registered(factory):
            problems.append(f"seed factory {factory!r} is not registered: call "
                            f"esper_slot.register_seed({factory!r}, factory) before loading")
    needs_gate = not has_gate or not has_seed
    if needs_gate and state["gate_kind"] == "custom":
        problems.append(f"the checkpoint's gate network was not built from a registered factory: "
                        f"germinate the same seed and gate into slot {slot!r} first, then load")
    if needs_gate and state["gate_kind"] == "factory" and not is_registered(state["gate_factory"]):
        problems.append(f"gate factory {state['gate_factory']!r} is not registered: call "
                        "esper_slot.register_seed before loading")
    return problems


def raise_if(problems: list[str], slot: str, version) -> None:
    if problems:
        lines = "\n  - ".join(problems)
        raise CheckpointError(
            f"invalid checkpoint for slot {slot!r} (record schema version {version}; this "
            f"esper-slot reads version {SCHEMA_VERSION}); nothing was changed:\n  - {lines}"
        )


def migrate_extra_state(
    old: dict,
    *,
    isolate_gradients: bool | None = None,
    topology: str | None = None,
    channels: int | None = None,
    seed_factory: str | None = None,
    seed_kwargs: dict | None = None,
) -> dict:
    """Upgrade a slot record to the current schema (version 1), explicitly.

    Version 0 is the unversioned layout of esper-lite's SeedSlot: ``stage`` (a stage name, any
    case), ``alpha``, ``blend_step`` / ``blend_steps`` (the ramp), ``blend_mode`` (optional,
    default ADD as esper-lite had no other) and, in some saves, ``isolate_gradients``. Fields it
    lacks and that have no safe default must be passed: ``isolate_gradients`` (when the record
    has none; its old silent default of False was wrong for CNNs), ``topology`` and ``channels``.
    ``seed_factory``/``seed_kwargs`` let an empty slot rebuild the seed. The result is validated
    when loaded, like any record. A current record is returned as a copy.
    """
    if not isinstance(old, dict):
        raise CheckpointError(f"cannot migrate a {type(old).__name__}: a slot record is a dict")
    version = old.get(VERSION_KEY, 0)
    if version == SCHEMA_VERSION:
        return dict(old)
    if version != 0:
        raise CheckpointError(f"cannot migrate schema version {version!r}: this esper-slot "
                              f"knows versions 0 and {SCHEMA_VERSION}")
    problems = [f"version-0 record is missing {name!r}" for name in ("stage", "alpha")
                if name not in old]
    saved_isolation = old.get("isolate_gradients")
    if saved_isolation is None and isolate_gradients is None:
        problems.append("the version-0 record has no 'isolate_gradients' and it has no safe "
                        "default: pass isolate_gradients=True (CNN hosts) or False")
    if saved_isolation is not None and isolate_gradients is not None and (
            saved_isolation != isolate_gradients):
        problems.append(f"isolate_gradients={isolate_gradients} contradicts the record's "
                        f"{saved_isolation}")
    if topology is None:
        problems.append("version 0 does not record the topology: pass topology='cnn' or "
                        "'transformer'")
    if channels is None:
        problems.append("version 0 does not record the channel count: pass channels=...")
    if problems:
        raise CheckpointError("cannot migrate the slot record to version "
                              f"{SCHEMA_VERSION}:\n  - " + "\n  - ".join(problems))
    stage = str(old["stage"]).upper()
    blend_mode = str(old.get("blend_mode", "ADD")).upper()
    return {
        VERSION_KEY: SCHEMA_VERSION,
        "stage": stage,
        "alpha": old["alpha"],
        "ramp_step": old.get("blend_step", 0),
        "ramp_steps": old.get("blend_steps", 0),
        "ramp_curve": "linear",  # version 0 had only the linear ramp
        "blend_mode": blend_mode,
        "topology": topology,
        "channels": channels,
        "isolate_gradients": saved_isolation if saved_isolation is not None else isolate_gradients,
        "seed_factory": seed_factory,
        "seed_kwargs": dict(seed_kwargs or {}),
        "gate_kind": "custom" if blend_mode == "GATE" else "none",
        "gate_factory": None,
        "gate_kwargs": {},
    }
