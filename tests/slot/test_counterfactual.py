"""Counterfactual passes: SeedSlot.alpha_overridden and esper_slot.ablated, eager and compiled,
with several slots in different stages."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot as es
from esper_slot import BlendMode, LifecycleError
from tests.support.slot_models import MultiSlotMlp


def grown(n_slots=4):
    """Slots in TRAINING (ADD), BLENDING at 0.5 (MULTIPLY), FOSSILIZED (GATE), BLENDING at 0.25
    (ADD)."""
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=n_slots, channels=4)
    modes = [BlendMode.ADD, BlendMode.MULTIPLY, BlendMode.GATE, BlendMode.ADD]
    for slot, mode in zip(model.slots, modes):
        slot.germinate(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), blend=mode)
    model.slots[1].start_blending(2)
    model.slots[1].step()
    model.slots[2].start_blending(0)
    model.slots[2].fossilize()
    model.slots[3].start_blending(4)
    model.slots[3].step()
    return model


def pruned_twin(model, indices):
    """The same model with the given slots' seeds removed: output == host there."""
    twin = copy.deepcopy(model)
    for i in indices:
        if twin.slots[i].stage.name == "FOSSILIZED":
            twin.slots[i].stage = twin.slots[i].stage.BLENDING  # only to allow prune() here
        twin.slots[i].prune()
    return twin


@pytest.mark.parametrize("names,indices", [((), (0, 1, 2, 3)), (("slots.1", "slots.2"), (1, 2))])
def test_ablation_equals_the_model_without_those_seeds(names, indices):
    model = grown()
    x = torch.randn(3, 5, 4)
    before = [s.get_extra_state() for s in model.slots]
    y = model(x)
    with es.ablated(model, *names):
        assert torch.equal(model(x), pruned_twin(model, indices)(x))
    assert torch.equal(model(x), y)
    assert [s.get_extra_state() for s in model.slots] == before


def test_per_sample_override_is_a_batch_of_scalar_overrides():
    model = grown()
    x = torch.randn(3, 5, 4)
    slot = model.slots[3]
    values = torch.tensor([0.0, 1.0, 0.3])
    with slot.alpha_overridden(values):
        batched = model(x)
    for row, value in enumerate(values.tolist()):
        with slot.alpha_overridden(value):
            torch.testing.assert_close(batched[row], model(x)[row], rtol=0, atol=1e-6)


def test_override_errors_change_nothing():
    model = grown()
    slot = model.slots[1]
    for bad in (
        1.5,
        -0.1,
        "0.5",
        True,
        torch.tensor([[0.5]]),
        torch.tensor([1, 0]),
        torch.tensor([0.5, 2.0]),
    ):
        with pytest.raises(ValueError, match="alpha override"), slot.alpha_overridden(bad):
            pass
        assert slot._override == "none"
    with (
        slot.alpha_overridden(0.2),
        pytest.raises(LifecycleError, match="do not nest"),
        slot.alpha_overridden(0.3),
    ):
        pass
    with (
        pytest.raises(ValueError, match="no SeedSlot named \\['slots.9'\\]"),
        es.ablated(model, "slots.9"),
    ):
        pass
    assert all(s._override == "none" for s in model.slots)


def test_compiled_overrides_do_not_recompile_once_seen():
    model = grown()
    twin = copy.deepcopy(model)
    compiled = torch.compile(twin, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 5, 4)
    counters.clear()

    def both(make_context):
        with make_context(model):
            want = model(x)
        with make_context(twin):
            got = compiled(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # formulas vs eager ops

    plain = lambda m: torch.enable_grad()  # noqa: E731
    ablate_two = lambda m: es.ablated(m, "slots.1", "slots.3")  # noqa: E731
    per_sample = lambda m: m.slots[3].alpha_overridden(torch.tensor([0.0, 0.5, 1.0]))  # noqa
    for _ in range(2):
        for context in (plain, ablate_two, per_sample):
            both(context)
    graphs = counters["stats"]["unique_graphs"]
    assert not counters["graph_break"]
    for value in (0.1, 0.9):  # the combination of ablate_two, other values

        @contextlib.contextmanager
        def two(m, v=value):
            with m.slots[1].alpha_overridden(v), m.slots[3].alpha_overridden(1 - v):
                yield

        both(two)
    both(lambda m: m.slots[3].alpha_overridden(torch.tensor([1.0, 0.0, 0.25])))
    assert counters["stats"]["unique_graphs"] == graphs  # new values, no new graph


def test_ablating_one_slot_at_a_time_shares_one_graph():
    """esper-lite's counterfactual loop: each slot ablated in turn, six slots, compiled; every
    subset of number overrides is tensor data, so no loop iteration compiles a graph."""
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=6, channels=4).eval()
    for slot in model.slots:
        slot.germinate(nn.Linear(4, 4))
        slot.start_blending(0)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 4)
    counters.clear()
    with torch.no_grad():
        full = compiled(x)
        first = counters["stats"]["unique_graphs"]
        for i in range(6):
            with es.ablated(model, f"slots.{i}", f"slots.{i}"):  # a repeated name is one slot
                ablated = compiled(x)
                with torch.compiler.set_stance("force_eager"):
                    want = model(x)
            torch.testing.assert_close(ablated, want, rtol=1e-5, atol=1e-6)
        assert counters["stats"]["unique_graphs"] == first
        torch.testing.assert_close(compiled(x), full, rtol=0, atol=0)
