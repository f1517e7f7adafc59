"""Migration of real esper-lite records (tests/fixtures/esper-lite-v1-records.json: an unmodified
copy of the project's shared fixtures, written by esper-lite's own code at the commit the file
names) into this package's schema: every record loads, round-trips and continues its alpha ramp."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import esper_slot as es
from esper_slot import BlendMode, CheckpointError, SeedSlot, Stage

FIXTURES = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "esper-lite-v1-records.json").read_text()
)
RECORDS = FIXTURES["records"]
ENUMS = FIXTURES["enums"]
CHANNELS = 16

# Stand-ins for esper-lite's "norm" blueprint, registered under names the migration is told.
es.register_seed("lite_norm_cnn", lambda channels: nn.GroupNorm(1, channels))
es.register_seed("lite_norm_transformer", lambda channels: nn.LayerNorm(channels))


def topology_of(name: str) -> str:
    return name.split("_")[0]


def migrate(name: str) -> dict:
    missing = {
        "channels": CHANNELS,
        "seed_factory": f"lite_norm_{topology_of(name)}",
        "seed_kwargs": {"channels": CHANNELS},
    }
    if RECORDS[name]["seed_state"] is None:
        missing = {"channels": CHANNELS, "topology": topology_of(name)}
    return es.migrate_extra_state(RECORDS[name], **missing)


def loaded(name: str) -> SeedSlot:
    record = migrate(name)
    slot = SeedSlot(CHANNELS, topology_of(name))
    if record["gate_kind"] == "custom":  # esper-lite's gate network is not rebuildable here
        slot.germinate("lite_norm_cnn", blend=BlendMode.GATE, seed_kwargs={"channels": CHANNELS})
    slot.set_extra_state(record)
    return slot


def esper_lite_alpha(ctrl: dict, done: int) -> float:
    """esper-lite's AlphaController.step() value after ``done`` ticks, from its own fields."""
    total = ctrl["alpha_steps_total"]
    start, target = ctrl["alpha_start"], ctrl["alpha_target"]
    if done >= total:
        return target
    t = done / total
    curve = {v: k for k, v in ENUMS["AlphaCurve"].items()}[ctrl["alpha_curve"]]
    if curve == "LINEAR":
        p = t
    elif curve == "COSINE":
        p = 0.5 * (1 - math.cos(math.pi * t))
    else:
        k = ctrl["alpha_steepness"]
        raw, raw0, raw1 = (1 / (1 + math.exp(-k * (u - 0.5))) for u in (t, 0.0, 1.0))
        p = (raw - raw0) / (raw1 - raw0)
    a = min(max(start + (target - start) * p, 0.0), 1.0)
    return min(max(a, start), target) if target >= start else max(min(a, start), target)


EXPECTED = {  # fixture -> (stage, alpha mode, blend mode, isolation in TRAINING, in BLENDING)
    "cnn_dormant": (Stage.DORMANT, "HOLD", BlendMode.ADD, True, True),
    "cnn_training": (Stage.TRAINING, "HOLD", BlendMode.ADD, True, True),
    "cnn_blending_add_midramp": (Stage.BLENDING, "UP", BlendMode.ADD, True, True),
    "cnn_blending_done": (Stage.BLENDING, "HOLD", BlendMode.ADD, True, True),
    "cnn_holding": (Stage.BLENDING, "HOLD", BlendMode.ADD, True, True),
    "cnn_fossilized": (Stage.FOSSILIZED, "HOLD", BlendMode.ADD, True, True),
    "cnn_blending_gate": (Stage.BLENDING, "UP", BlendMode.GATE, True, True),
    "transformer_training": (Stage.TRAINING, "HOLD", BlendMode.ADD, True, False),
    "transformer_blending_midramp": (Stage.BLENDING, "UP", BlendMode.ADD, True, False),
    "cnn_pruned": (Stage.PRUNED, "HOLD", BlendMode.ADD, True, True),
    "cnn_embargoed": (Stage.EMBARGOED, "HOLD", BlendMode.ADD, True, True),
    "cnn_embargoed_2_epochs": (Stage.EMBARGOED, "HOLD", BlendMode.ADD, True, True),
    "cnn_resetting": (Stage.RESETTING, "HOLD", BlendMode.ADD, True, True),
}
ESPER_LITE_METRICS = {
    "epochs_total": "epochs_total",
    "epochs_in_current_stage": "epochs_in_current_stage",
    "initial_val_accuracy": "initial_accuracy",
    "current_val_accuracy": "current_accuracy",
    "best_val_accuracy": "best_accuracy",
    "accuracy_at_stage_start": "accuracy_at_stage_start",
    "counterfactual_contribution": "counterfactual_contribution",
    "contribution_velocity": "contribution_velocity",
    "seed_gradient_norm_ratio": "seed_gradient_norm_ratio",
    "_blending_started": "blending_started",
}


def test_every_fixture_is_covered():
    assert set(EXPECTED) == set(RECORDS) and len(RECORDS) == 13


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_fixture_migrates_loads_and_round_trips(name):
    slot = loaded(name)
    stage, mode, blend, iso_training, iso_blending = EXPECTED[name]
    assert (slot.stage, slot.alpha_mode, slot.blend_mode) == (stage, mode, blend)
    assert (slot.isolate_training, slot.isolate_blending) == (iso_training, iso_blending)
    state = RECORDS[name]["seed_state"]
    if state is not None and stage is not Stage.TRAINING:
        assert slot.schedule.alpha == state["alpha_controller"]["alpha"]
        assert slot.alpha.item() == pytest.approx(state["alpha"], abs=1e-7)
    record = migrate(name)
    assert slot.get_extra_state() == record  # round trip, exactly
    fresh = SeedSlot(CHANNELS, topology_of(name))
    if record["gate_kind"] == "custom":
        fresh.germinate("lite_norm_cnn", blend=BlendMode.GATE, seed_kwargs={"channels": CHANNELS})
    fresh.load_state_dict(slot.state_dict())
    assert fresh.get_extra_state() == record
    x = (
        torch.randn(2, CHANNELS, 3, 3)
        if topology_of(name) == "cnn"
        else torch.randn(2, 5, CHANNELS)
    )
    assert torch.equal(fresh(x), slot(x))


@pytest.mark.parametrize("name", [n for n, (_, mode, *_) in EXPECTED.items() if mode == "UP"])
def test_mid_ramp_fixture_continues_esper_lites_alpha_sequence(name):
    slot = loaded(name)
    ctrl = RECORDS[name]["seed_state"]["alpha_controller"]
    want = [
        esper_lite_alpha(ctrl, done)
        for done in range(ctrl["alpha_steps_done"] + 1, ctrl["alpha_steps_total"] + 1)
    ]
    got = [slot.step() for _ in want]
    assert all(abs(a - b) <= 1e-12 for a, b in zip(got, want)), (got, want)
    assert got[-1] == ctrl["alpha_target"] and slot.alpha_mode == "HOLD"


def test_the_fixture_midramp_alpha_is_the_formula():
    """The sigmoid ramp with steepness 12 at step 3 of 10: the record's alpha is the formula's."""
    ctrl = RECORDS["cnn_blending_add_midramp"]["seed_state"]["alpha_controller"]
    assert esper_lite_alpha(ctrl, 3) == pytest.approx(ctrl["alpha"], abs=1e-15)


def test_what_esper_lite_does_not_store_must_be_passed():
    record = RECORDS["cnn_blending_add_midramp"]
    with pytest.raises(CheckpointError) as info:
        es.migrate_extra_state(record)
    assert "channels=" in str(info.value)  # "norm" is a built-in blueprint: no factory needed
    custom = copy.deepcopy(record)
    custom["seed_state"]["blueprint_id"] = "my_own"
    with pytest.raises(CheckpointError) as info:
        es.migrate_extra_state(custom, channels=CHANNELS)
    text = str(info.value)
    assert "seed_factory=" in text and "'my_own'" in text and "no built-in cnn blueprint" in text
    with pytest.raises(CheckpointError, match="pass topology="):
        es.migrate_extra_state(RECORDS["cnn_dormant"], channels=CHANNELS)
    with pytest.raises(CheckpointError, match="unexpected arguments \\['colour'\\]"):
        es.migrate_extra_state(record, channels=CHANNELS, seed_factory="x", colour="red")
    with pytest.raises(CheckpointError, match="contradicts the record's 'cnn'"):
        es.migrate_extra_state(record, channels=CHANNELS, seed_factory="x", topology="transformer")


@pytest.mark.parametrize("stage", ["GERMINATED", "UNKNOWN"])
def test_stages_without_a_counterpart_are_named(stage):
    record = copy.deepcopy(RECORDS["cnn_training"])
    record["seed_state"]["stage"] = ENUMS["SeedStage"][stage]
    with pytest.raises(CheckpointError, match=f"esper-lite stage {stage} has no counterpart"):
        es.migrate_extra_state(record, channels=CHANNELS, seed_factory="lite_norm_cnn")


def test_a_gate_factory_makes_the_gate_rebuildable():
    record = es.migrate_extra_state(
        RECORDS["cnn_blending_gate"],
        channels=CHANNELS,
        seed_factory="lite_norm_cnn",
        seed_kwargs={"channels": CHANNELS},
        gate_factory="lite_gate",
    )
    assert (record["gate_kind"], record["gate_factory"]) == ("factory", "lite_gate")


def test_enum_values_are_esper_lites():
    from esper_slot import migration

    assert {v: k for k, v in ENUMS["SeedStage"].items()} == migration.ESPER_LITE_STAGES
    assert {v: k for k, v in ENUMS["AlphaMode"].items()} == migration.ESPER_LITE_ALPHA_MODES
    assert {v: k.lower() for k, v in ENUMS["AlphaCurve"].items()} == migration.ESPER_LITE_CURVES
    assert {v: k for k, v in ENUMS["AlphaAlgorithm"].items()} == migration.ESPER_LITE_ALGORITHMS


def test_an_esper_lite_ramp_down_to_zero_is_a_scheduled_prune():
    """esper-lite ramps a BLENDING seed to 0 only to prune it: a copy of a real record put
    mid-way through such a ramp (fields as its controller writes them) migrates to a scheduled
    prune that ends in PRUNED."""
    record = copy.deepcopy(RECORDS["cnn_blending_done"])
    ctrl = record["seed_state"]["alpha_controller"]
    ctrl.update(
        {
            "alpha_mode": ENUMS["AlphaMode"]["DOWN"],
            "alpha_start": 1.0,
            "alpha_target": 0.0,
            "alpha_steps_total": 4,
            "alpha_steps_done": 2,
            "alpha_curve": ENUMS["AlphaCurve"]["LINEAR"],
            "alpha": 0.5,
        }
    )
    migrated = es.migrate_extra_state(
        record, channels=CHANNELS, seed_factory="lite_norm_cnn", seed_kwargs={"channels": CHANNELS}
    )
    assert migrated["prune_scheduled"] is True
    slot = SeedSlot(CHANNELS, "cnn")
    slot.set_extra_state(migrated)
    assert bool(slot.seed_frozen) and slot.step() == 0.25
    assert slot.step() == 0.0 and slot.stage is Stage.PRUNED


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda r: r["seed_state"].pop("alpha_controller"),
        lambda r: r.pop("isolate_gradients"),
        lambda r: r.__setitem__("seed_state", [1, 2]),
        lambda r: r["seed_state"]["alpha_controller"].__setitem__("alpha_steps_done", "3"),
        lambda r: r.__setitem__("isolate_gradients", "yes"),
        lambda r: r.__setitem__("resolved_topology", "rnn"),
    ],
)
def test_malformed_esper_lite_records_raise_checkpoint_error(corrupt):
    record = copy.deepcopy(RECORDS["cnn_blending_add_midramp"])
    corrupt(record)
    with pytest.raises(CheckpointError):
        es.migrate_extra_state(record, channels=CHANNELS, seed_factory="lite_norm_cnn")


@pytest.mark.parametrize("name", sorted(n for n in RECORDS if RECORDS[n]["seed_state"]))
def test_esper_lites_metrics_are_migrated(name):
    metrics = loaded(name).metrics
    theirs = RECORDS[name]["seed_state"]["metrics"]
    for their_name, our_name in ESPER_LITE_METRICS.items():
        assert getattr(metrics, our_name) == theirs[their_name], our_name


@pytest.mark.parametrize(
    "name", ["cnn_pruned", "cnn_embargoed", "cnn_embargoed_2_epochs", "cnn_resetting"]
)
def test_the_cooldown_continues_as_esper_lite_counts_it(name):
    """esper-lite's step_epoch: PRUNED -> EMBARGOED (no tick), 5 ticks, RESETTING, 1 tick,
    DORMANT; germinate is refused until then."""
    slot = loaded(name)
    state = RECORDS[name]["seed_state"]
    stage, done = slot.stage, state["metrics"]["epochs_in_current_stage"]
    expected_left = {
        Stage.PRUNED: 1 + 5 + 1,
        Stage.EMBARGOED: 5 - done + 1,
        Stage.RESETTING: 1 - done,
    }[stage]
    assert slot.embargo_epochs == 5 and slot.cooldown_epochs_left() == expected_left
    for left in range(expected_left, 0, -1):
        with pytest.raises(es.LifecycleError, match=f"{left} more step_epoch"):
            slot.germinate(nn.Identity())
        slot.step_epoch()
    assert slot.stage == Stage.DORMANT and slot.metrics == es.SeedMetrics()
    slot.germinate(nn.Identity())


@pytest.mark.parametrize("name", ["cnn_blending_add_midramp", "transformer_training"])
def test_a_built_in_blueprint_rebuilds_esper_lites_seed(name):
    """Without seed_factory, the record's blueprint_id names our copy of esper-lite's blueprint,
    which an empty slot builds on load."""
    record = es.migrate_extra_state(RECORDS[name], channels=CHANNELS)
    assert record["seed_factory"] == RECORDS[name]["seed_state"]["blueprint_id"] == "norm"
    slot = SeedSlot(CHANNELS, topology_of(name))
    slot.set_extra_state(record)
    assert type(slot.seed).__name__ == (
        "NormSeed" if topology_of(name) == "cnn" else "TransformerNormSeed"
    )
