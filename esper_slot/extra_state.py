"""The slot's checkpoint record (``get_extra_state``): schema, validation, migration.

A record is a flat dict of primitives (loadable with ``torch.load(weights_only=True)``) with the
same keys in every stage. Validation checks the whole record and reports every problem at once;
nothing has defaults: a missing field is an error, never a guess
(docs/origins/isolate-gradients-default.md).
"""

from __future__ import annotations

import math

from .alpha import CURVES, MODES
from .lifecycle import SEED_STAGES, BlendMode, Stage
from .metrics import record_problems as metrics_problems

# Version 3: the seed's metrics (metrics.py) and the embargo (its length; the cooldown's
# position is the stage and metrics.epochs_in_current_stage). Version 2: the alpha controller
# (start, target, mode, curve, steepness, steps), isolation per stage and prune scheduling.
# Versions 1 and 2 and esper-lite's records are upgraded by migrate_extra_state (migration.py).
SCHEMA_VERSION = 3
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
    "stage": (
        lambda v: isinstance(v, str) and v in Stage.__members__,
        f"one of {list(Stage.__members__)}",
    ),
    "alpha": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "alpha_start": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "alpha_target": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "alpha_mode": (lambda v: isinstance(v, str) and v in MODES, f"one of {list(MODES)}"),
    "alpha_curve": (lambda v: isinstance(v, str) and v in CURVES, f"one of {list(CURVES)}"),
    "alpha_steepness": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
    "alpha_steps_total": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "alpha_steps_done": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "prune_scheduled": (lambda v: isinstance(v, bool), "a bool (True or False)"),
    "blend_mode": (
        lambda v: isinstance(v, str) and v in BlendMode.__members__,
        f"one of {list(BlendMode.__members__)}",
    ),
    "topology": (
        lambda v: isinstance(v, str) and v in TOPOLOGY_NAMES,
        f"one of {list(TOPOLOGY_NAMES)}",
    ),
    "channels": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "isolate_training": (lambda v: isinstance(v, bool), "a bool (True or False)"),
    "isolate_blending": (lambda v: isinstance(v, bool), "a bool (True or False)"),
    "seed_factory": (
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "a registered seed factory name or None",
    ),
    "seed_kwargs": (_json_dict, "a dict of JSON values"),
    "gate_kind": (lambda v: isinstance(v, str) and v in GATE_KINDS, f"one of {list(GATE_KINDS)}"),
    "gate_factory": (
        lambda v: v is None or (isinstance(v, str) and v != ""),
        "a registered factory name or None",
    ),
    "gate_kwargs": (_json_dict, "a dict of JSON values"),
    "metrics": (lambda v: isinstance(v, dict), "a dict (the seed's metrics)"),
    "embargo_epochs": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
}


def describe(v) -> str:
    text = repr(v)
    return (text[:60] + "...") if len(text) > 60 else text


def check_record(
    state, *, slot: str, channels: int, topology: str, has_seed: bool, has_gate: bool
) -> list[str]:
    """Every problem with ``state`` as a checkpoint for this slot; [] when it can be applied."""
    from .registry import is_registered

    if not isinstance(state, dict):
        return [f"the record is a {type(state).__name__}, not a dict"]
    version = state.get(VERSION_KEY)
    if VERSION_KEY not in state:
        return [
            f"missing field {VERSION_KEY!r}: not an esper-slot record of any known version "
            "(an unversioned esper-lite record? upgrade it with "
            "esper_slot.migrate_extra_state)"
        ]
    if not isinstance(version, int) or not _is_int(version):
        return [f"field {VERSION_KEY!r} is {describe(version)}, must be an int"]
    if version > SCHEMA_VERSION:
        return [
            f"schema version {version} is newer than this esper-slot reads "
            f"({SCHEMA_VERSION}): upgrade esper-slot"
        ]
    if version < SCHEMA_VERSION:
        return [
            f"schema version {version} is older than {SCHEMA_VERSION}: upgrade it with "
            "esper_slot.migrate_extra_state"
        ]
    problems = [f"missing field {name!r}" for name in FIELDS if name not in state]
    problems += [f"unknown field {name!r}" for name in state if name not in FIELDS]
    for name, (check, want) in FIELDS.items():
        if name in state and not check(state[name]):
            problems.append(f"field {name!r} is {describe(state[name])}, must be {want}")
    if not problems:
        problems += metrics_problems(state["metrics"])
    if problems:
        return problems
    # Cross-field rules, on a record whose fields are each well formed.
    stage = Stage[state["stage"]]
    if stage in (Stage.EMBARGOED, Stage.RESETTING):
        done, length = state["metrics"]["epochs_in_current_stage"], state["embargo_epochs"]
        if length == 0:
            problems.append(f"stage {stage.name} needs an embargo, but embargo_epochs is 0")
        elif done >= (length if stage == Stage.EMBARGOED else 1):
            problems.append(
                f"stage {stage.name} after {done} epochs: the cooldown would have moved on"
            )
    problems += _schedule_problems(state, stage)
    if state["topology"] != topology:
        problems.append(f"topology is {state['topology']!r} but the slot is {topology!r}")
    if state["channels"] != channels:
        problems.append(f"channels is {state['channels']} but the slot has {channels}")
    if stage not in SEED_STAGES:
        if state["seed_factory"] is not None or state["gate_kind"] != "none":
            problems.append(
                f"stage {stage.name} holds no seed, but seed_factory/gate_kind say otherwise"
            )
        return problems
    gate_mode = state["blend_mode"] == BlendMode.GATE.name
    if gate_mode != (state["gate_kind"] != "none"):
        problems.append(
            f"blend_mode {state['blend_mode']} with gate_kind "
            f"{state['gate_kind']!r}: a gate exists exactly in GATE mode"
        )
    if (state["gate_kind"] == "factory") != (state["gate_factory"] is not None):
        problems.append("gate_factory must name a factory exactly when gate_kind is 'factory'")
    if not has_seed:
        factory = state["seed_factory"]
        if factory is None:
            problems.append(
                f"the slot is empty and the checkpoint's seed was not germinated "
                f"from a registered factory: germinate the same seed into slot "
                f"{slot!r} first, then load"
            )
        elif not is_registered(factory, topology):
            problems.append(
                f"seed factory {factory!r} is not registered: call "
                f"esper_slot.register_seed({factory!r}, factory) before loading"
            )
    needs_gate = not has_gate or not has_seed
    if needs_gate and state["gate_kind"] == "custom":
        problems.append(
            f"the checkpoint's gate network was not built from a registered factory: "
            f"germinate the same seed and gate into slot {slot!r} first, then load"
        )
    if needs_gate and state["gate_kind"] == "factory" and not is_registered(state["gate_factory"]):
        problems.append(
            f"gate factory {state['gate_factory']!r} is not registered: call "
            "esper_slot.register_seed before loading"
        )
    return problems


def _schedule_problems(state: dict, stage: Stage) -> list[str]:
    """The alpha controller's fields must describe a state the controller can be in."""
    alpha, start, target = state["alpha"], state["alpha_start"], state["alpha_target"]
    mode, done, total = state["alpha_mode"], state["alpha_steps_done"], state["alpha_steps_total"]
    problems = []
    if done > total:
        problems.append(f"alpha_steps_done {done} exceeds alpha_steps_total {total}")
    if mode == "HOLD" and alpha != target:
        problems.append(f"alpha_mode HOLD with alpha {alpha} != alpha_target {target}")
    if mode == "UP" and not (start < target and start <= alpha <= target and done < total):
        problems.append(
            f"alpha_mode UP needs alpha_start <= alpha <= alpha_target (start < "
            f"target) and steps left; got start {start}, alpha {alpha}, target "
            f"{target}, step {done} of {total}"
        )
    if mode == "DOWN" and not (target < start and target <= alpha <= start and done < total):
        problems.append(
            f"alpha_mode DOWN needs alpha_target <= alpha <= alpha_start (target < "
            f"start) and steps left; got start {start}, alpha {alpha}, target "
            f"{target}, step {done} of {total}"
        )
    if stage == Stage.FOSSILIZED and (alpha, target, mode) != (1.0, 1.0, "HOLD"):
        problems.append(
            f"stage FOSSILIZED needs alpha and alpha_target 1.0 at HOLD; got "
            f"{alpha}, {target} at {mode}"
        )
    if stage not in (Stage.BLENDING, Stage.FOSSILIZED) and (alpha, start, target, mode) != (
        0.0,
        0.0,
        0.0,
        "HOLD",
    ):
        problems.append(
            f"stage {stage.name} needs alpha, alpha_start and alpha_target 0.0 at "
            f"HOLD; got {alpha}, {start}, {target} at {mode}"
        )
    if state["prune_scheduled"] and not (
        stage == Stage.BLENDING and mode == "DOWN" and target == 0
    ):
        problems.append(
            f"prune_scheduled needs stage BLENDING ramping DOWN to 0; got "
            f"{stage.name}, {mode} to {target}"
        )
    return problems


def raise_if(problems: list[str], slot: str, version) -> None:
    if problems:
        lines = "\n  - ".join(problems)
        raise CheckpointError(
            f"invalid checkpoint for slot {slot!r} (record schema version {version}; this "
            f"esper-slot reads version {SCHEMA_VERSION}); nothing was changed:\n  - {lines}"
        )
