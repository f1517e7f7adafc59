"""Upgrading slot records to the current schema: this package's versions 1 and 2, and
esper-lite's records exactly as its ``SeedSlot.get_extra_state`` writes them
(``_extra_state_version`` 1).

Nothing is guessed: what a record does not store and has no safe default must be passed by
name, and a missing one raises CheckpointError naming it. The result is a plain current record,
validated again when it is loaded (``load_state_dict`` / ``set_extra_state``).
"""

from __future__ import annotations

from typing import Any

from .alpha import DEFAULT_STEEPNESS, MODES
from .blueprints import is_blueprint
from .extra_state import SCHEMA_VERSION, VERSION_KEY, CheckpointError
from .metrics import SeedMetrics

ESPER_LITE_VERSION_KEY = "_extra_state_version"

# esper-lite's enum values (esper.leyline), as its records store them.
ESPER_LITE_STAGES: dict[Any, str] = {
    0: "UNKNOWN",
    1: "DORMANT",
    2: "GERMINATED",
    3: "TRAINING",
    4: "BLENDING",
    6: "HOLDING",
    7: "FOSSILIZED",
    8: "PRUNED",
    9: "EMBARGOED",
    10: "RESETTING",
}
ESPER_LITE_ALPHA_MODES: dict[Any, str] = {0: "HOLD", 1: "UP", 2: "DOWN"}
ESPER_LITE_CURVES: dict[Any, str] = {1: "linear", 2: "cosine", 3: "sigmoid"}
ESPER_LITE_ALGORITHMS: dict[Any, str] = {1: "ADD", 2: "MULTIPLY", 3: "GATE"}
# esper-lite stage -> ours. HOLDING (alpha held after the ramp) is BLENDING at HOLD here; the
# others (GERMINATED, UNKNOWN) have no counterpart.
_STAGE_MAP = {
    "DORMANT": "DORMANT",
    "TRAINING": "TRAINING",
    "BLENDING": "BLENDING",
    "HOLDING": "BLENDING",
    "FOSSILIZED": "FOSSILIZED",
    "PRUNED": "PRUNED",
    "EMBARGOED": "EMBARGOED",
    "RESETTING": "RESETTING",
}
ESPER_LITE_EMBARGO_EPOCHS = 5  # esper-lite's DEFAULT_EMBARGO_EPOCHS_AFTER_PRUNE
# esper-lite SeedMetrics field -> ours (the fields esper-lite has that we keep)
_METRICS_MAP = {
    "epochs_total": "epochs_total",
    "epochs_in_current_stage": "epochs_in_current_stage",
    "initial_val_accuracy": "initial_accuracy",
    "current_val_accuracy": "current_accuracy",
    "best_val_accuracy": "best_accuracy",
    "accuracy_at_stage_start": "accuracy_at_stage_start",
    "accuracy_at_blending_start": "accuracy_at_blending_start",
    "_blending_started": "blending_started",
    "counterfactual_contribution": "counterfactual_contribution",
    "_prev_contribution": "previous_contribution",
    "contribution_velocity": "contribution_velocity",
    "seed_gradient_norm_ratio": "seed_gradient_norm_ratio",
}
_TOPOLOGY_BLENDING_ISOLATION: dict[Any, bool] = {"cnn": True, "transformer": False}
_V1_SIGMOID_STEEPNESS = 10.0  # version 1's only sigmoid


def migrate_extra_state(record: dict, **missing) -> dict:
    """A current-schema (version 3) record from ``record``: this package's version 1, 2 or 3,
    or an esper-lite version-1 record.

    ``missing`` supplies what the record does not store:

    * esper-lite: ``channels`` (always); ``topology`` when the record has no
      ``resolved_topology`` (a DORMANT slot); ``seed_factory`` (a registered factory that
      rebuilds the record's ``blueprint_id``: by default the built-in blueprint of that id,
      when one exists for the topology; required otherwise) and ``seed_kwargs``; for a GATE
      slot, optionally ``gate_factory`` / ``gate_kwargs`` (without them the gate counts as
      custom: germinate the same seed and gate before loading); optionally ``embargo`` (the
      cooldown's EMBARGOED epochs; default esper-lite's 5, which its slots always have).
    * versions 1 and 2: nothing (an unknown name is an error, not ignored); the seed's metrics
      start afresh and there is no embargo.

    Mapping from esper-lite: ``seed_state.stage`` (HOLDING becomes BLENDING at HOLD; PRUNED,
    EMBARGOED and RESETTING continue their cooldown; GERMINATED and UNKNOWN raise),
    ``alpha_controller`` to the alpha fields (so step() continues its alpha sequence exactly),
    ``alpha_algorithm`` to the blend mode, ``isolate_gradients`` to BLENDING's isolation
    (TRAINING was always isolated there), ``resolved_topology``, and ``seed_state.metrics`` to
    the seed's metrics (the fields this package keeps; not gradient_norm_avg, current_alpha,
    alpha_ramp_step, the parameter counts and the inter-slot interaction sums).
    """
    if not isinstance(record, dict):
        raise CheckpointError(f"cannot migrate a {type(record).__name__}: a slot record is a dict")
    if ESPER_LITE_VERSION_KEY in record:
        try:
            return _from_esper_lite(record, missing)
        except CheckpointError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise CheckpointError(
                f"cannot migrate the esper-lite record: it is malformed "
                f"({type(err).__name__}: {err}); expected the layout of "
                "esper-lite's SeedSlot.get_extra_state, version 1"
            ) from err
    version = record.get(VERSION_KEY)
    if version == SCHEMA_VERSION:
        _accept(missing, ())
        return dict(record)
    if version == 2:
        _accept(missing, ())
        return _from_v2(record)
    if version == 1:
        _accept(missing, ())
        return _from_v2(_from_v1(record))
    raise CheckpointError(
        f"cannot migrate a record with {VERSION_KEY}={version!r}: this esper-slot reads esper-lite "
        f"records ({ESPER_LITE_VERSION_KEY} 1) and its own versions 1 to {SCHEMA_VERSION}"
    )


def _accept(missing: dict, names: tuple[str, ...]) -> None:
    unknown = sorted(set(missing) - set(names))
    if unknown:
        raise CheckpointError(
            f"migrate_extra_state got unexpected arguments {unknown}; this "
            f"record takes {list(names) or 'none'}"
        )


def _schedule(alpha, start, target, mode, curve, steepness, total, done) -> dict:
    return {
        "alpha": alpha,
        "alpha_start": start,
        "alpha_target": target,
        "alpha_mode": mode,
        "alpha_curve": curve,
        "alpha_steepness": steepness,
        "alpha_steps_total": total,
        "alpha_steps_done": done,
    }


def _held(alpha: float) -> dict:
    return _schedule(alpha, alpha, alpha, "HOLD", "linear", DEFAULT_STEEPNESS, 0, 0)


def _from_v1(old: dict) -> dict:
    fields = (
        "stage",
        "alpha",
        "ramp_step",
        "ramp_steps",
        "ramp_curve",
        "blend_mode",
        "topology",
        "channels",
        "isolate_gradients",
        "seed_factory",
        "seed_kwargs",
        "gate_kind",
        "gate_factory",
        "gate_kwargs",
    )
    absent = [name for name in fields if name not in old]
    if absent:
        raise CheckpointError(f"cannot migrate the version-1 record: missing {absent}")
    stage, alpha = old["stage"], old["alpha"]
    step, steps, curve = old["ramp_step"], old["ramp_steps"], old["ramp_curve"]
    if stage == "BLENDING" and step < steps:
        # Version 1's step() put alpha on the 0 -> 1 curve at ramp_step + 1: the same ramp.
        schedule = _schedule(
            alpha,
            0.0,
            1.0,
            "UP",
            curve,
            _V1_SIGMOID_STEEPNESS if curve == "sigmoid" else DEFAULT_STEEPNESS,
            steps,
            step,
        )
    else:
        schedule = _held(alpha)
    isolate = old["isolate_gradients"]
    return {
        VERSION_KEY: 2,
        "stage": stage,
        **schedule,
        "prune_scheduled": False,
        "blend_mode": old["blend_mode"],
        "topology": old["topology"],
        "channels": old["channels"],
        "isolate_training": isolate,
        "isolate_blending": isolate,
        "seed_factory": old["seed_factory"],
        "seed_kwargs": dict(old["seed_kwargs"] or {}),
        "gate_kind": old["gate_kind"],
        "gate_factory": old["gate_factory"],
        "gate_kwargs": dict(old["gate_kwargs"] or {}),
    }


def _from_v2(old: dict) -> dict:
    """Version 3 added the seed's metrics (fresh here) and the embargo (none)."""
    return {
        **old,
        VERSION_KEY: SCHEMA_VERSION,
        "metrics": SeedMetrics().to_record(),
        "embargo_epochs": 0,
    }


def _metrics(raw) -> dict:
    """esper-lite's SeedMetrics.to_dict() as ours: its fields that we keep, unchanged."""
    if raw is None:
        return SeedMetrics().to_record()
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"esper-lite seed_state.metrics is a {type(raw).__name__}, not a dict"
        )
    absent = [k for k in _METRICS_MAP if k not in raw]
    if absent:
        raise CheckpointError(f"esper-lite seed_state.metrics lacks {absent}")
    record = SeedMetrics().to_record()
    record.update({ours: raw[theirs] for theirs, ours in _METRICS_MAP.items()})
    return record


def _from_esper_lite(old: dict, missing: dict) -> dict:
    _accept(
        missing,
        (
            "channels",
            "topology",
            "seed_factory",
            "seed_kwargs",
            "gate_factory",
            "gate_kwargs",
            "embargo",
        ),
    )
    problems: list[str] = []
    if old[ESPER_LITE_VERSION_KEY] != 1:
        raise CheckpointError(
            f"esper-lite record version {old[ESPER_LITE_VERSION_KEY]!r} is not "
            "known: this esper-slot reads esper-lite version 1"
        )
    raw_state = old.get("seed_state")
    if raw_state is not None and not isinstance(raw_state, dict):
        raise CheckpointError(
            f"esper-lite seed_state is a {type(raw_state).__name__}, not a dict or None"
        )
    state: dict[str, Any] = raw_state or {}
    stage_name = "DORMANT" if raw_state is None else ESPER_LITE_STAGES.get(state.get("stage"))
    if stage_name is None:
        raise CheckpointError(
            f"esper-lite stage value {state.get('stage')!r} is not one of {ESPER_LITE_STAGES}"
        )
    if stage_name not in _STAGE_MAP:
        raise CheckpointError(
            f"esper-lite stage {stage_name} has no counterpart in esper-slot (it knows "
            f"{sorted(_STAGE_MAP)}); finish or undo that stage in esper-lite first"
        )
    stage = _STAGE_MAP[stage_name]
    seeded = stage in ("TRAINING", "BLENDING", "FOSSILIZED")

    topology = old.get("resolved_topology") or missing.get("topology")
    if topology is not None and topology not in _TOPOLOGY_BLENDING_ISOLATION:
        problems.append(
            f"topology {topology!r} is not one of {sorted(_TOPOLOGY_BLENDING_ISOLATION)}"
        )
    elif topology is None:
        problems.append(
            "the record has no resolved_topology (an empty slot): pass "
            "topology='cnn' or 'transformer'"
        )
    elif "topology" in missing and missing["topology"] != topology:
        problems.append(f"topology={missing['topology']!r} contradicts the record's {topology!r}")
    if "channels" not in missing:
        problems.append("esper-lite does not record the channel count: pass channels=...")
    blueprint = state.get("blueprint_id")
    if seeded and "seed_factory" not in missing:
        if (
            isinstance(blueprint, str)
            and topology is not None
            and is_blueprint(topology, blueprint)
        ):
            missing = {**missing, "seed_factory": blueprint}  # the built-in blueprint
        else:
            problems.append(
                f"esper-lite records the seed only by blueprint_id {blueprint!r}, "
                f"which is no built-in {topology} blueprint: pass seed_factory= "
                "(the name of an esper_slot.register_seed factory that builds it) "
                "and seed_kwargs="
            )
    embargo = missing.get("embargo", ESPER_LITE_EMBARGO_EPOCHS)
    if isinstance(embargo, bool) or not isinstance(embargo, int) or embargo < 0:
        problems.append(f"embargo={embargo!r} must be an int >= 0")
    if problems:
        raise CheckpointError(
            "cannot migrate the esper-lite record:\n  - " + "\n  - ".join(problems)
        )

    blend_mode: str | None = "ADD"
    gate: tuple[str, str | None, dict] = ("none", None, {})
    schedule = _held(0.0)
    if seeded:
        blend_mode = ESPER_LITE_ALGORITHMS.get(state.get("alpha_algorithm"))
        if blend_mode is None:
            raise CheckpointError(
                f"esper-lite alpha_algorithm {state.get('alpha_algorithm')!r} "
                f"is not one of {ESPER_LITE_ALGORITHMS}"
            )
        if blend_mode == "GATE":
            factory = missing.get("gate_factory")
            gate = (
                ("factory", factory, dict(missing.get("gate_kwargs") or {}))
                if factory
                else ("custom", None, {})
            )
        schedule = _controller(state["alpha_controller"], stage)
    isolate_blending = (
        old["isolate_gradients"]
        if stage in ("BLENDING", "FOSSILIZED")
        else _TOPOLOGY_BLENDING_ISOLATION[topology]
    )
    if not isinstance(isolate_blending, bool):
        raise CheckpointError(f"esper-lite isolate_gradients is {isolate_blending!r}, not a bool")
    # esper-lite ramps a BLENDING seed down to 0 only to prune it (schedule_prune).
    prune_scheduled = (
        stage == "BLENDING" and schedule["alpha_mode"] == "DOWN" and schedule["alpha_target"] == 0.0
    )
    return {
        VERSION_KEY: SCHEMA_VERSION,
        "stage": stage,
        **schedule,
        "prune_scheduled": prune_scheduled,
        "blend_mode": blend_mode,
        "topology": topology,
        "channels": missing["channels"],
        "isolate_training": True,
        "isolate_blending": isolate_blending,
        "seed_factory": missing.get("seed_factory") if seeded else None,
        "seed_kwargs": dict(missing.get("seed_kwargs") or {}) if seeded else {},
        "gate_kind": gate[0],
        "gate_factory": gate[1],
        "gate_kwargs": gate[2],
        "metrics": _metrics(state.get("metrics"))
        if raw_state is not None
        else SeedMetrics().to_record(),
        "embargo_epochs": embargo,
    }


def _controller(ctrl: dict, stage: str) -> dict:
    """esper-lite's AlphaController.to_dict() as our alpha fields, unchanged but for names."""
    mode = ESPER_LITE_ALPHA_MODES.get(ctrl.get("alpha_mode"))
    curve = ESPER_LITE_CURVES.get(ctrl.get("alpha_curve"))
    if mode not in MODES or curve is None:
        raise CheckpointError(
            f"esper-lite alpha_controller has alpha_mode "
            f"{ctrl.get('alpha_mode')!r} / alpha_curve "
            f"{ctrl.get('alpha_curve')!r}, not among {ESPER_LITE_ALPHA_MODES} / "
            f"{ESPER_LITE_CURVES}"
        )
    if stage == "FOSSILIZED":  # permanent at 1.0; esper-lite may keep the last ramp's start
        return _held(1.0)
    if stage == "TRAINING":
        return _held(0.0)
    numbers = {name: ctrl[name] for name in ("alpha", "alpha_start", "alpha_target")}
    numbers["alpha_steepness"] = ctrl.get("alpha_steepness", DEFAULT_STEEPNESS)
    steps = {name: ctrl[name] for name in ("alpha_steps_total", "alpha_steps_done")}
    bad = [
        f"{k}={v!r}"
        for k, v in numbers.items()
        if isinstance(v, bool) or not isinstance(v, (int, float))
    ]
    bad += [f"{k}={v!r}" for k, v in steps.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise CheckpointError(f"esper-lite alpha_controller has ill-typed fields: {bad}")
    return _schedule(
        float(numbers["alpha"]),
        float(numbers["alpha_start"]),
        float(numbers["alpha_target"]),
        mode,
        curve,
        float(numbers["alpha_steepness"]),
        steps["alpha_steps_total"],
        steps["alpha_steps_done"],
    )
