"""Strict, atomic, versioned slot checkpoints (docs/origins/isolate-gradients-default.md
asked for them)."""

from __future__ import annotations

import copy
import math
import os
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import esper_slot as es
from esper_slot import BlendMode, CheckpointError, Stage
from esper_slot.extra_state import FIELDS
from tests.support.slot_models import TransformerHost

es.register_seed(
    "tiny_mlp",
    lambda channels, hidden: nn.Sequential(
        nn.Linear(channels, hidden), nn.Tanh(), nn.Linear(hidden, channels)
    ),
)
SEED = {"seed_kwargs": {"channels": 16, "hidden": 8}}
KEY = "slot._extra_state"


def model_in(stage: Stage, mode=BlendMode.ADD, seed_from_factory=True):
    torch.manual_seed(0)
    model = TransformerHost()
    slot = model.slot
    if stage is Stage.DORMANT:
        return model
    if seed_from_factory:
        slot.germinate("tiny_mlp", blend=mode, **SEED)
    else:
        slot.germinate(nn.Linear(16, 16), blend=mode)
    if stage in (Stage.PRUNED, Stage.EMBARGOED, Stage.RESETTING):
        slot.embargo_epochs = 0 if stage is Stage.PRUNED else 2
        slot.record_accuracy(61.5)  # metrics, saved and restored with the record
        slot.prune()
        for _ in range({Stage.PRUNED: 0, Stage.EMBARGOED: 2, Stage.RESETTING: 3}[stage]):
            slot.step_epoch()
        assert slot.stage is stage
    elif stage in (Stage.BLENDING, Stage.FOSSILIZED):
        slot.start_blending(10, curve="sigmoid")
        for _ in range(3 if stage is Stage.BLENDING else 10):  # mid-ramp, or finished at 1.0
            slot.step()
        if stage is Stage.FOSSILIZED:
            slot.fossilize()
    return model


def snapshot(model):
    state = {
        k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v))
        for k, v in model.state_dict().items()
    }
    slot = model.slot
    return state, slot.stage, slot.alpha.clone(), slot.isolate_gradients, slot.seed


def assert_unchanged(model, before):
    state, stage, alpha, isolate, seed = snapshot(model)
    assert state.keys() == before[0].keys()
    for key in state:
        a, b = state[key], before[0][key]
        assert torch.equal(a, b) if torch.is_tensor(a) else a == b, key
    assert (stage, isolate, seed) == (before[1], before[3], before[4])
    assert torch.equal(alpha, before[2])


def save_and_read(model, tmp_path):
    path = es.save_checkpoint(model, tmp_path / "ckpt.pt")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("mode", list(BlendMode))
@pytest.mark.parametrize("stage", list(Stage))
def test_round_trip_in_every_stage(stage, mode, tmp_path):
    model = model_in(stage, mode)
    x = torch.randn(3, 5, 6)
    path = es.save_checkpoint(model, tmp_path / "model.pt")
    fresh = TransformerHost()  # an empty slot: the seed is rebuilt from its factory
    es.load_checkpoint(fresh, path)
    assert fresh.slot.stage is stage
    assert fresh.slot.get_extra_state() == model.slot.get_extra_state()
    assert torch.equal(fresh(x), model(x))
    plain = TransformerHost()  # plain load_state_dict of a weights_only file works too
    plain.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(plain(x), model(x))


def test_every_record_has_the_same_keys_and_isolation_per_stage():
    keysets = {frozenset(model_in(s).slot.get_extra_state()) for s in Stage}
    assert len(keysets) == 1
    (keys,) = keysets
    assert {"isolate_training", "isolate_blending"} <= keys and any("version" in k for k in keys)
    assert keys == set(FIELDS)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("how", ["plain", "helper"])
def test_each_missing_field_is_named_and_changes_nothing(field, how, tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    del sd[KEY][field]
    target = model_in(Stage.FOSSILIZED, BlendMode.MULTIPLY)
    with torch.no_grad():
        target.embed.weight.add_(1.0)  # differs from the checkpoint in a module loaded first
    before = snapshot(target)
    with pytest.raises(
        CheckpointError, match=repr(field) if field != "schema_version" else "schema_version"
    ) as info:
        (target.load_state_dict(sd) if how == "plain" else es.load_state_dict(target, sd))
    assert "'slot'" in str(info.value) and "version" in str(info.value)
    assert_unchanged(target, before)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("isolate_training", 1, "must be a bool"),
        ("isolate_blending", "yes", "must be a bool"),
        ("isolate_training", None, "must be a bool"),
        ("prune_scheduled", 0, "must be a bool"),
        ("prune_scheduled", True, "prune_scheduled needs stage BLENDING ramping DOWN to 0"),
        ("alpha", 1.5, "number in [0, 1]"),
        ("alpha", "0.5", "number in [0, 1]"),
        ("alpha", float("nan"), "number in [0, 1]"),
        ("alpha_start", 0.5, "alpha_mode UP needs alpha_start <= alpha <= alpha_target"),
        ("alpha_target", 2.0, "number in [0, 1]"),
        ("alpha_mode", "up", "one of"),
        ("alpha_mode", "HOLD", "alpha_mode HOLD with alpha"),
        ("alpha_curve", "tanh", "one of"),
        ("alpha_steepness", 0, "finite number > 0"),
        ("alpha_steepness", float("inf"), "finite number > 0"),
        ("alpha_steps_total", -1, "int >= 0"),
        ("alpha_steps_done", True, "int >= 0"),
        ("alpha_steps_done", 11, "exceeds alpha_steps_total 10"),
        ("stage", "GROWING", "one of"),
        ("blend_mode", "add", "one of"),
        ("channels", 32, "channels is 32 but the slot has 16"),
        ("topology", "cnn", "topology is 'cnn' but the slot is 'transformer'"),
        ("schema_version", 4, "newer than this esper-slot reads (3): upgrade esper-slot"),
        ("schema_version", 1, "migrate_extra_state"),
        ("schema_version", 0, "migrate_extra_state"),
        ("seed_kwargs", {"f": object()}, "JSON"),
    ],
)
def test_bad_fields_are_rejected(field, value, message, tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    sd[KEY][field] = value
    target = model_in(Stage.TRAINING)
    before = snapshot(target)
    with pytest.raises(CheckpointError) as info:
        target.load_state_dict(sd)
    assert message in str(info.value)
    assert_unchanged(target, before)


def test_unknown_field_and_all_problems_at_once(tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    record = sd[KEY]
    record["mystery"] = 1
    del record["alpha_curve"]
    record["isolate_blending"] = "no"
    with pytest.raises(CheckpointError) as info:
        model_in(Stage.DORMANT).load_state_dict(sd)
    text = str(info.value)
    assert "unknown field 'mystery'" in text and "missing field 'alpha_curve'" in text
    assert "'isolate_blending' is 'no'" in text


def test_shape_mismatch_changes_nothing(tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    sd["head.weight"] = torch.zeros(5, 16)  # the model's head is [3, 16]; embed loads first
    target = model_in(Stage.TRAINING)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="'head.weight' has shape \\[5, 16\\]"):
        target.load_state_dict(sd)
    assert_unchanged(target, before)


def test_strict_helper_checks_keys_before_loading(tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    del sd["head.bias"]
    sd["extra.weight"] = torch.zeros(1)
    target = model_in(Stage.TRAINING)
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="missing key 'head.bias'") as info:
        es.load_state_dict(target, sd)
    assert "unexpected key 'extra.weight'" in str(info.value)
    assert_unchanged(target, before)
    es.load_state_dict(target, sd, strict=False)  # non-strict: loads what matches
    assert target.slot.stage is Stage.BLENDING


def test_pretrained_host_loads_non_strict_into_a_slotted_model():
    host_only = {
        k: v for k, v in model_in(Stage.DORMANT).state_dict().items() if not k.startswith("slot.")
    }
    model = model_in(Stage.TRAINING)
    result = model.load_state_dict(host_only, strict=False)
    assert result.missing_keys and all(k.startswith("slot.") for k in result.missing_keys)
    assert model.slot.stage is Stage.TRAINING


def test_unregistered_seed_needs_germinating_first(tmp_path):
    model = model_in(Stage.BLENDING, seed_from_factory=False)
    path = es.save_checkpoint(model, tmp_path / "m.pt")
    empty = TransformerHost()
    before = snapshot(empty)
    with pytest.raises(CheckpointError, match="germinate the same seed into slot"):
        es.load_checkpoint(empty, path)
    assert_unchanged(empty, before)
    empty.slot.germinate(nn.Linear(16, 16))
    es.load_checkpoint(empty, path)
    x = torch.randn(2, 5, 6)
    assert torch.equal(empty(x), model(x))


def test_unregistered_factory_name_is_reported(tmp_path):
    sd = save_and_read(model_in(Stage.BLENDING), tmp_path)
    sd[KEY]["seed_factory"] = "never_registered"
    with pytest.raises(CheckpointError, match="'never_registered' is not registered"):
        TransformerHost().load_state_dict(sd)


def test_dormant_checkpoint_empties_an_active_slot(tmp_path):
    sd = save_and_read(model_in(Stage.DORMANT), tmp_path)
    model = model_in(Stage.BLENDING)
    model.load_state_dict(sd)
    assert model.slot.stage is Stage.DORMANT and model.slot.seed is None


def test_compiled_and_ddp_prefixed_state_dicts_load(tmp_path):
    model = model_in(Stage.BLENDING)
    compiled = torch.compile(model)
    compiled_sd = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in compiled_sd)
    ddp_sd = {"module." + k: v for k, v in model.state_dict().items()}
    x = torch.randn(2, 5, 6)
    for sd in (compiled_sd, ddp_sd):
        target = TransformerHost()
        with pytest.raises(CheckpointError, match="unexpected key"):
            es.load_state_dict(target, sd)  # only when asked
        es.load_state_dict(target, sd, from_wrapped=True)
        assert torch.equal(target(x), model(x))
    saved = save_and_read(compiled, tmp_path)  # saving a compiled model writes plain names
    assert not any("_orig_mod" in k for k in saved)
    target = torch.compile(TransformerHost())  # loading into a compiled model loads its inner
    es.load_state_dict(target, saved)
    assert target._orig_mod.slot.stage is Stage.BLENDING


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited-marker",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"slot._extra_state": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="not a weights-only checkpoint"):
        es.load_checkpoint(TransformerHost(), path)
    assert not (tmp_path / "exploited-marker").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        es.read_checkpoint(raw)
    assert not (tmp_path / "exploited-marker").exists()


def test_truncated_file_is_a_checkpoint_error(tmp_path):
    path = es.save_checkpoint(model_in(Stage.BLENDING), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read"):
        es.read_checkpoint(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = es.save_checkpoint(model_in(Stage.TRAINING), tmp_path / "m.pt")
    good = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        es.save_checkpoint(model_in(Stage.BLENDING), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_a_version_1_record_migrates_and_continues_its_ramp():
    """Version 1 (a 0 -> 1 ramp and one isolation flag), written as version 1's
    get_extra_state wrote it: mid-ramp on version 1's sigmoid (steepness 10)."""
    old = {
        "schema_version": 1,
        "stage": "BLENDING",
        "alpha": 0.0474258731775668,
        "ramp_step": 3,
        "ramp_steps": 10,
        "ramp_curve": "sigmoid",
        "blend_mode": "ADD",
        "topology": "transformer",
        "channels": 16,
        "isolate_gradients": False,
        "seed_factory": "tiny_mlp",
        "seed_kwargs": SEED["seed_kwargs"],
        "gate_kind": "none",
        "gate_factory": None,
        "gate_kwargs": {},
    }
    with pytest.raises(CheckpointError, match="unexpected arguments"):
        es.migrate_extra_state(old, channels=16)
    new = es.migrate_extra_state(old)
    assert new["schema_version"] == es.SCHEMA_VERSION
    assert (new["isolate_training"], new["isolate_blending"]) == (False, False)
    model = TransformerHost()
    model.slot.set_extra_state(new)
    assert model.slot.stage is Stage.BLENDING and model.slot.alpha_mode == "UP"
    # Version 1's ramp: the normalised logistic of steepness 10 at step / steps.
    lo, hi = 1 / (1 + math.exp(5)), 1 / (1 + math.exp(-5))
    want = [(1 / (1 + math.exp(-10 * (k / 10 - 0.5))) - lo) / (hi - lo) for k in range(4, 10)]
    got = [model.slot.step() for _ in range(6)]
    assert got == pytest.approx(want, abs=1e-12)
    assert model.slot.step() == 1.0 and model.slot.alpha_mode == "HOLD"
    with pytest.raises(CheckpointError, match="cannot migrate a record with"):
        es.migrate_extra_state({"stage": "blending", "alpha": 0.5})


def _mutations():
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 30),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    field = st.sampled_from(sorted(FIELDS) + ["bogus", "version", ""])
    return st.lists(
        st.tuples(st.sampled_from(["delete", "set"]), field, junk), min_size=1, max_size=4
    )


@settings(max_examples=60)
@given(mutations=_mutations(), start=st.sampled_from([Stage.DORMANT, Stage.BLENDING]))
def test_fuzzed_records_raise_only_checkpoint_error_and_never_half_apply(mutations, start):
    source = model_in(Stage.BLENDING)
    sd = source.state_dict()
    record = dict(sd[KEY])
    for action, field, value in mutations:
        if action == "delete":
            record.pop(field, None)
        else:
            record[field] = value
    sd[KEY] = record
    target = model_in(start)
    before = snapshot(target)
    try:
        target.load_state_dict(sd)
    except CheckpointError:
        assert_unchanged(target, before)
    else:  # a mutation that kept the record valid: it applied whole
        assert target.slot.get_extra_state() == record


@pytest.mark.parametrize("stage", [Stage.TRAINING, Stage.BLENDING])
def test_loading_a_live_models_state_dict_shares_nothing(stage):
    # Module.load_state_dict(other.state_dict()) between two live models (as several tests do)
    # copies into the target's own tensors: unlike Optimizer.load_state_dict, nothing is shared.
    source, target = model_in(stage), model_in(Stage.DORMANT)
    target.slot.germinate("tiny_mlp", **SEED)
    target.load_state_dict(source.state_dict())
    theirs = {
        t.untyped_storage().data_ptr()
        for t in source.state_dict().values()
        if torch.is_tensor(t) and t.numel()
    }
    mine = [t for t in target.state_dict().values() if torch.is_tensor(t) and t.numel()]
    assert mine and not any(t.untyped_storage().data_ptr() in theirs for t in mine)
    record = target.slot.get_extra_state()
    assert record == source.slot.get_extra_state()
    record["seed_kwargs"]["hidden"] = 99  # the records are copies too
    assert source.slot.seed_kwargs["hidden"] == 8 and target.slot.seed_kwargs["hidden"] == 8
