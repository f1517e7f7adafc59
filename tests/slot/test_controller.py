"""The controller's side of the slot: seed metrics (esper-lite's update rules), lifecycle events
(sequences, subscribers that fail, nothing on the compiled path), the embargo after a prune, and
optimizer upkeep (SGD, Adam foreach, AdamW fused): groups in on germinate, out with their state
on prune."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch._dynamo.utils import counters

import esper_slot as es
from esper_slot import BlendMode, LifecycleError, SeedMetrics, SeedSlot, Stage
from esper_slot.telemetry import DEFAULT_EXPLODING, SlotGradientStats
from tests.support.slot_models import MultiSlotMlp
from tests.support.twins import CountingBackend, Twins, slots_of

# ---- metrics ----


def test_metrics_follow_esper_lites_rules():
    m = SeedMetrics()
    m.record_accuracy(50.0)  # the first: initial and stage start
    m.record_accuracy(55.0)
    assert (m.initial_accuracy, m.current_accuracy, m.best_accuracy) == (50.0, 55.0, 55.0)
    assert (m.epochs_total, m.epochs_in_current_stage) == (2, 2)
    assert m.improvement_since_stage_start == 5.0 and m.total_improvement == 5.0
    m.stage_changed(from_training_to_blending=True)
    assert (m.accuracy_at_stage_start, m.epochs_in_current_stage) == (55.0, 0)
    assert m.blending_started and m.accuracy_at_blending_start == 55.0
    m.record_accuracy(54.0)
    assert m.best_accuracy == 55.0 and m.blending_delta == -1.0 and m.epochs_total == 3
    m.record_contribution(2.0)
    assert m.contribution_velocity == 0.0  # the first measurement has no trend
    m.record_contribution(3.0)
    assert m.contribution_velocity == pytest.approx(0.3)
    m.record_contribution(2.0)
    assert m.contribution_velocity == pytest.approx(0.7 * 0.3 - 0.3)
    assert SeedMetrics.from_record(m.to_record()) == m
    with pytest.raises(ValueError, match="finite number"):
        m.record_accuracy(float("nan"))


@given(st.lists(st.floats(0, 100), min_size=1, max_size=20))
def test_best_is_the_running_max_and_epochs_count_calls(accuracies):
    m = SeedMetrics()
    for a in accuracies:
        m.record_accuracy(a)
    assert m.best_accuracy == max(accuracies) and m.epochs_total == len(accuracies)
    assert m.initial_accuracy == accuracies[0] and m.current_accuracy == accuracies[-1]


def test_the_slot_rebases_metrics_at_each_stage_change_and_saves_them():
    slot = SeedSlot(4, "transformer")
    slot.record_accuracy(10.0)  # no seed: nothing recorded
    assert slot.metrics == SeedMetrics()
    slot.germinate(nn.Linear(4, 4))
    for acc in (60.0, 62.0, 63.0):
        slot.record_accuracy(acc)
    stats = SlotGradientStats("s", "TRAINING", 1.0, 0.0, 1.0, 4, 0, 4, 5, 0.42, 0, 0, 0, 0, 1.0)
    slot.record_gradients(stats)
    slot.start_blending(2)
    assert slot.metrics.epochs_in_current_stage == 0 and slot.metrics.epochs_total == 3
    assert slot.metrics.accuracy_at_blending_start == 63.0
    assert slot.metrics.seed_gradient_norm_ratio == 0.42
    slot.record_contribution(1.5)
    fresh = SeedSlot(4, "transformer")
    fresh.germinate(nn.Linear(4, 4))
    fresh.load_state_dict(slot.state_dict())
    assert fresh.metrics == slot.metrics
    slot.prune()
    with pytest.raises(LifecycleError, match="holds no seed"):
        slot.record_contribution(1.0)
    slot.germinate(nn.Linear(4, 4))  # a new seed, fresh metrics
    assert slot.metrics == SeedMetrics()


def test_telemetry_exploding_default_is_esper_lites_current_one():
    assert DEFAULT_EXPLODING == 10.0
    assert es.GradientTelemetry(MultiSlotMlp()).exploding == 10.0


# ---- events ----


def hub_for(model):
    events = es.LifecycleEvents(model)
    seen = []
    events.subscribe(seen.append)
    return events, seen


def test_each_lifecycle_call_emits_esper_lites_events_in_order():
    model = MultiSlotMlp(n_slots=2)
    events, seen = hub_for(model)
    events.step = 7
    a, b = model.slots
    a.germinate(nn.Linear(4, 4))
    a.record_accuracy(50.0)
    a.start_blending(1)
    a.step()
    a.fossilize()
    b.germinate(nn.Linear(4, 4))
    b.start_blending(2)
    b.step()
    b.schedule_prune(1, reason="no gain")
    b.step()  # the ramp-down ends: pruned
    kinds = [(e.slot, e.kind, e.from_stage, e.to_stage) for e in seen]
    assert kinds == [
        ("slots.0", "germinated", "DORMANT", "TRAINING"),
        ("slots.0", "stage_changed", "TRAINING", "BLENDING"),
        ("slots.0", "stage_changed", "BLENDING", "FOSSILIZED"),
        ("slots.0", "fossilized", "BLENDING", "FOSSILIZED"),
        ("slots.1", "germinated", "DORMANT", "TRAINING"),
        ("slots.1", "stage_changed", "TRAINING", "BLENDING"),
        ("slots.1", "stage_changed", "BLENDING", "PRUNED"),
        ("slots.1", "pruned", "BLENDING", "PRUNED"),
    ]
    assert seen[3].alpha == 1.0 and seen[3].epoch == 1 and seen[3].step == 7
    pruned = seen[-1]
    assert (pruned.reason, pruned.initiator) == ("no gain", "schedule")
    b.germinate(nn.Linear(4, 4))
    b.prune(reason="hurt accuracy", initiator="controller")
    assert (seen[-1].kind, seen[-1].reason, seen[-1].initiator) == (
        "pruned",
        "hurt accuracy",
        "controller",
    )


def test_a_failing_subscriber_is_logged_and_never_breaks_training(caplog):
    model = MultiSlotMlp(n_slots=1)
    events, seen = hub_for(model)

    def broken(event):
        raise RuntimeError("subscriber bug")

    events.subscribe(broken)
    events.subscribe(es.log_events)
    with caplog.at_level(logging.INFO, logger="esper_slot.events"):
        model.slots[0].germinate(nn.Linear(4, 4))
    assert seen and "subscriber bug" in caplog.text and "germinated" in caplog.text
    unsubscribe = events.subscribe(seen.append)
    unsubscribe()
    with pytest.raises(ValueError, match="callable"):
        events.subscribe(42)


@pytest.mark.backend_independent
def test_metrics_and_events_stay_off_the_compiled_path():
    """Two hubs (with subscribers) and metrics updates around a compiled 3-slot model in mixed
    stages: no graph break, no graph beyond each structure's train/eval pair, compiled == eager
    and both twins emit the same events."""
    backend = CountingBackend()
    twins = Twins(
        MultiSlotMlp(n_slots=3),
        torch.randn(2, 3, 4),
        lambda m: torch.compile(m, fullgraph=True, backend=backend),
    )
    hubs = [hub_for(twins.eager), hub_for(twins.inner)]
    twins.germinate(0, nn.Linear(4, 4))
    twins.germinate(1, nn.Linear(4, 4), blend=BlendMode.GATE)
    twins.check()
    graphs = backend.graphs
    for epoch in range(3):
        twins.both(lambda s, e=epoch: [slot.record_accuracy(50.0 + e) for slot in s])
        twins.check()
    twins.both(lambda s: s[0].start_blending(2))
    twins.check()
    twins.both(lambda s: (s[0].step(), s[0].record_contribution(1.0)))
    twins.check()
    assert backend.graphs == graphs and not counters["graph_break"]
    # an embargoed prune and its cooldown: the empty slot's structure, compiled before
    twins.both(lambda s: setattr(s[1], "embargo_epochs", 2))
    twins.both(lambda s: s[1].prune())
    twins.check()
    for _ in range(4):
        twins.both(lambda s: s[1].step_epoch())
        twins.check()
    assert [s.stage for s in slots_of(twins.inner)] == [
        Stage.BLENDING,
        Stage.DORMANT,
        Stage.DORMANT,
    ]
    assert backend.graphs == graphs + 2  # the pruned structure: a train and an eval graph
    assert not counters["graph_break"]
    strip = [[(e.slot, e.kind, e.to_stage, e.alpha, e.epoch) for e in seen] for _, seen in hubs]
    assert strip[0] == strip[1] and len(strip[0]) == 3 + 2 + 3


# ---- embargo ----


def test_the_embargo_refuses_germinate_until_the_cooldown_ends():
    slot = SeedSlot(4, "transformer", embargo=True)
    model = nn.ModuleDict({"slot": slot})
    _events, seen = hub_for(model)
    slot.germinate(nn.Linear(4, 4))
    slot.prune()
    assert slot.cooldown_epochs_left() == 7  # PRUNED -> EMBARGOED, 5 epochs, 1 RESETTING
    with pytest.raises(LifecycleError, match="PRUNED, in the embargo .* 7 more step_epoch"):
        slot.germinate(nn.Linear(4, 4))
    stages = []
    for _ in range(7):
        slot.step_epoch()
        stages.append(slot.stage)
    assert stages == [Stage.EMBARGOED] * 5 + [Stage.RESETTING, Stage.DORMANT]
    assert [e.to_stage for e in seen if e.kind == "stage_changed"][-3:] == [
        "EMBARGOED",
        "RESETTING",
        "DORMANT",
    ]
    slot.germinate(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="embargo must be"):
        SeedSlot(4, "cnn", embargo=-1)
    no_embargo = SeedSlot(4, "cnn")
    no_embargo.germinate(nn.Identity())
    no_embargo.prune()
    no_embargo.step_epoch()  # nothing to advance
    assert no_embargo.stage == Stage.PRUNED
    no_embargo.germinate(nn.Identity())


def test_an_embargoed_record_round_trips_and_is_checked():
    slot = SeedSlot(4, "cnn", embargo=3)
    slot.germinate(nn.Identity())
    slot.prune()
    slot.step_epoch()
    slot.step_epoch()
    record = slot.get_extra_state()
    assert record["stage"] == "EMBARGOED" and record["embargo_epochs"] == 3
    other = SeedSlot(4, "cnn")
    other.set_extra_state(record)
    assert other.cooldown_epochs_left() == slot.cooldown_epochs_left() == 3
    bad = dict(record, embargo_epochs=0)
    with pytest.raises(es.CheckpointError, match="needs an embargo"):
        other.set_extra_state(bad)
    done = dict(record, metrics=dict(record["metrics"], epochs_in_current_stage=3))
    with pytest.raises(es.CheckpointError, match="would have moved on"):
        other.set_extra_state(done)


# ---- optimizer upkeep ----


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam-foreach": lambda p: torch.optim.Adam(p, lr=1e-2, foreach=True),
    "adamw-fused": lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True),
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS)
def test_upkeep_adds_seed_groups_and_removes_them_with_their_state(make):
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=2)
    opt = make(model.layers.parameters())
    upkeep = es.OptimizerUpkeep(opt, model, lr=5e-3, weight_decay=0.0)
    x = torch.randn(2, 3, 4)

    def train_step():
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()

    model.slots[0].germinate(nn.Linear(4, 4), blend=BlendMode.GATE)
    group = upkeep.group_of("slots.0")
    seed_and_gate = [*model.slots[0].seed.parameters(), *model.slots[0].gate.parameters()]
    assert group is not None and group["params"] == seed_and_gate
    assert (group["lr"], group["weight_decay"]) == (5e-3, 0.0)
    model.slots[0].start_blending(0)
    train_step()
    assert all(p in opt.state for p in seed_and_gate)
    model.slots[1].germinate(nn.Linear(4, 4))
    train_step()
    assert len(opt.param_groups) == 3
    before = model.slots[0].seed.weight.detach().clone()
    model.slots[0].prune()
    assert len(opt.param_groups) == 2 and upkeep.group_of("slots.0") is None
    assert not any(p in opt.state for p in seed_and_gate)  # no memory kept for dead params
    train_step()  # the optimizer still steps, and never touches the dead parameters
    assert torch.equal(before, seed_and_gate[0].detach())
    model.slots[0].germinate(nn.Linear(4, 4))
    assert len(opt.param_groups) == 3


def test_upkeep_picks_up_seeds_germinated_before_it_and_checks_settings():
    model = MultiSlotMlp(n_slots=2)
    model.slots[1].germinate(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.layers.parameters(), lr=0.1)
    upkeep = es.OptimizerUpkeep(opt, model)
    assert upkeep.group_of("slots.1")["params"] == list(model.slots[1].seed.parameters())
    with pytest.raises(ValueError, match="take no \\['betas'\\]"):
        es.OptimizerUpkeep(opt, model, betas=(0.9, 0.99))
    frozen = MultiSlotMlp(n_slots=1)
    es.OptimizerUpkeep(torch.optim.SGD(frozen.parameters(), lr=0.1), frozen)
    frozen.slots[0].germinate(nn.Linear(4, 4).requires_grad_(False))  # nothing to train
    assert len(slots_of(frozen)) == 1


def test_upkeep_follows_a_germinate_across_distributed_rewrap(tmp_path):
    """One gloo rank: rewrap builds a new DDP around the same parameters, so the seed's group,
    added by the upkeep at germinate, is what the optimizer steps through the new wrapper."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from esper_slot import distributed as esd

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = MultiSlotMlp(n_slots=2)
        ddp = DDP(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        upkeep = es.OptimizerUpkeep(opt, model)
        model.slots[0].germinate(nn.Linear(4, 4))
        model.slots[0].start_blending(0)
        ddp = esd.rewrap(ddp)
        before = model.slots[0].seed.weight.detach().clone()
        opt.zero_grad()
        ddp(torch.randn(2, 3, 4)).square().mean().backward()
        opt.step()
        assert upkeep.group_of("slots.0") is not None
        assert not torch.equal(before, model.slots[0].seed.weight)
        model.slots[0].prune()
        ddp = esd.rewrap(ddp)
        assert len(opt.param_groups) == 1 and len(opt.state) == len(list(model.parameters()))
    finally:
        dist.destroy_process_group()
