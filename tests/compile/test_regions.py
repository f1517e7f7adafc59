"""esper_slot.compile(model, regions=...): compiled equals eager after every transition with the
slots of several regions in different stages (stage graphs on and off); what each event compiles
(identical blocks share graphs; a germinate compiles one region, nothing for a structure seen
before; stage changes compile a region once with stage graphs and never without); a region that
needs graphs of its own; CompileBudgetError naming the region; the model left eager; bad
arguments."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot as es
from esper_slot import BlendMode, CompileBudgetError, SeedSlot, Stage
from tests.support.slot_models import (
    CnnHost,
    MultiSlotMlp,
    TinyGpt,
    TinyGptBlock,
    TransformerHost,
    cnn_seed,
    transformer_seed,
)
from tests.support.twins import CountingBackend, Twins, slots_of


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def seed(channels=16):
    return nn.Sequential(nn.Linear(channels, channels), nn.Tanh())


def gpt_twins(backend, n_blocks=4, **kwargs):
    torch.manual_seed(0)
    return Twins(
        TinyGpt(n_blocks=n_blocks),
        torch.randint(0, 32, (2, 8)),
        lambda m: es.compile(m, regions=TinyGptBlock, fullgraph=True, backend=backend, **kwargs),
    )


@pytest.mark.parametrize("stage_graphs", [True, False])
def test_regions_match_eager_through_a_staggered_lifecycle(stage_graphs):
    """Four GPT blocks, each a region: slots germinated, blended, gated, ramped down and pruned
    at different times, checked (outputs, every gradient, an eval pass) after each event, with
    the graphs each event compiled (train and eval: 2 per new region structure)."""
    backend = CountingBackend()
    twins = gpt_twins(backend, stage_graphs=stage_graphs)
    stage_cost = 2 if stage_graphs else 0  # TRAINING -> BLENDING specialises the region

    def event(expected_graphs):
        before = backend.graphs
        twins.check()
        assert backend.graphs - before == expected_graphs
        assert not counters["graph_break"]

    event(2)  # four identical empty blocks: one structure
    twins.germinate(0, seed())
    event(2)
    twins.germinate(2, seed())  # the same architecture in another block: shares block 0's
    event(0)
    twins.germinate(1, nn.Linear(16, 16), blend=BlendMode.GATE)
    event(2)
    twins.both(lambda s: s[0].start_blending(3, curve="cosine"))
    event(stage_cost)
    twins.both(lambda s: s[2].start_blending(3))  # blocks 0 and 2 share again
    event(0)
    for _ in range(3):
        twins.both(lambda s: [s[i].step() for i in (0, 2)])
        event(0)
    twins.both(lambda s: s[1].start_blending(0))
    event(stage_cost)
    twins.both(lambda s: s[0].fossilize())
    event(0)
    twins.both(lambda s: s[2].schedule_prune(2))
    event(stage_cost)  # the ramp-down's gradient gates
    twins.both(lambda s: s[2].step())
    event(0)
    twins.both(lambda s: s[2].step())  # reaches 0: pruned, back to the empty structure
    assert slots_of(twins.eager)[2].stage == Stage.PRUNED
    event(0)
    twins.germinate(3, nn.Linear(16, 16), blend=BlendMode.MULTIPLY, isolate_gradients=False)
    event(2)
    with es.ablated(twins.eager), es.ablated(twins.inner):  # a number override: tensor data
        event(0)
    assert [s.stage for s in slots_of(twins.inner)] == [
        Stage.FOSSILIZED,
        Stage.BLENDING,
        Stage.PRUNED,
        Stage.TRAINING,
    ]


def test_stage_graphs_keep_zero_gradients_for_an_unused_gate_network():
    """In TRAINING a stage graph skips the GATE slot's gate network; its parameters still get
    zero gradients (not None), as eager and the one-graph form give them."""
    twins = gpt_twins("aot_eager", n_blocks=2)
    twins.germinate(0, seed(), blend=BlendMode.GATE)
    twins.train_step()
    for model in (twins.eager, twins.inner):
        gate = slots_of(model)[0].gate
        assert all(p.grad is not None and not p.grad.any() for p in gate.parameters())


def test_the_model_itself_stays_eager():
    torch.manual_seed(0)
    model = TinyGpt(n_blocks=2)
    step = es.compile(model, regions=TinyGptBlock, fullgraph=True, backend="eager")
    x = torch.randint(0, 32, (2, 8))
    y = step(x)
    before = counters["stats"]["unique_graphs"]
    assert all(b.__dict__["_compiled_call_impl"] is None for b in model.blocks)
    torch.testing.assert_close(model(x), y)
    assert counters["stats"]["unique_graphs"] == before
    assert [name for name, _ in step.regions] == ["blocks.0", "blocks.1"]
    assert set(step.state_dict()) == {"_orig_mod." + k for k in model.state_dict()}


class IndexedBlock(nn.Module):
    """A block whose forward reads a per-instance number: equal signatures, different graphs."""

    def __init__(self, index, channels=4):
        super().__init__()
        self.index = index
        self.layer = nn.Linear(channels, channels)
        self.slot = SeedSlot(channels, "transformer")

    def forward(self, x):
        return self.slot(self.layer(x) * (self.index + 1))


class Indexed(nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.blocks = nn.ModuleList(IndexedBlock(i) for i in range(n))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_a_region_that_needs_graphs_of_its_own_gets_them(caplog):
    caplog.set_level(logging.INFO, logger="esper_slot.regions")
    torch.manual_seed(0)
    twins = Twins(
        Indexed(3),
        torch.randn(2, 3, 4),
        lambda m: es.compile(
            m, regions=IndexedBlock, fullgraph=True, backend="eager", recompile_limit=2
        ),
    )
    twins.check()  # blocks 0 and 1 fill the shared function's two entries; block 2 moves out
    twins.germinate(1, nn.Linear(4, 4))
    twins.check()
    assert "blocks.2" in caplog.text and "own compiled function" in caplog.text


def test_a_full_region_raises_compile_budget_error_naming_it():
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=2)
    step = es.compile(
        model, regions=SeedSlot, fullgraph=True, backend="eager", recompile_limit=2, dynamic=False
    )
    for slot in model.slots:
        slot.germinate(nn.Linear(4, 4))
    step(torch.randn(2, 3, 4))
    step(torch.randn(2, 5, 4))
    with pytest.raises(CompileBudgetError, match=r"region 'slots\.\d'.*recompile_limit=N"):
        step(torch.randn(2, 7, 4))


def test_two_wrappers_do_not_make_each_others_shapes_dynamic():
    """Dynamo records input shapes per function name: the wrappers' functions are numbered
    process-wide, so a second model's graphs stay static (with names numbered per wrapper, a
    transformer compiled after a CNN got symbolic shapes, and a 20% slower step)."""
    symbolic = []

    def backend(gm, example_inputs):
        symbolic.append(any(isinstance(a, torch.SymInt) for a in example_inputs))
        return gm.forward

    for make, x, make_seed in (
        (CnnHost, torch.randn(4, 3, 8, 8), cnn_seed),
        (TransformerHost, torch.randn(4, 5, 6), transformer_seed),
    ):
        model = make()
        model.slot.germinate(make_seed())
        for regions in ([model], None):
            es.compile(model, regions=regions, backend=backend)(x).sum().backward()
    assert symbolic == [False] * 4


def test_bad_regions_are_refused():
    model = TinyGpt(n_blocks=2)
    with pytest.raises(ValueError, match="no instance in the model holds a SeedSlot"):
        es.compile(model, regions=nn.LayerNorm)
    with pytest.raises(ValueError, match="not a submodule"):
        es.compile(model, regions=[nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="must not nest"):
        es.compile(model, regions=[model.blocks, model.blocks[0]])
    with pytest.raises(ValueError, match="listed twice"):
        es.compile(model, regions=[model.blocks[0], model.blocks[0]])
    with pytest.raises(ValueError, match="nn.Module subclass"):
        es.compile(model, regions="blocks")
    with pytest.raises(ValueError, match="nn.Module subclass"):
        es.compile(model, regions=[])
    with pytest.raises(ValueError, match="stage_graphs must be"):
        es.compile(model, regions=TinyGptBlock, stage_graphs=1)


def test_nested_instances_of_a_region_class_use_the_outermost(caplog):
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = MultiSlotMlp(n_slots=1)
            self.slot = SeedSlot(4, "transformer")

        def forward(self, x):
            return self.slot(self.inner(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Outer(), SeedSlot(4, "transformer")

        def forward(self, x):
            return self.b(self.a(x))

    model = Model()
    step = es.compile(model, regions=(Outer, MultiSlotMlp), backend="eager")
    assert [name for name, _ in step.regions] == ["a"]
    assert "slots outside every region run eagerly: b" in caplog.text
    step(torch.randn(2, 3, 4))


def test_long_staggered_run_of_six_regions_under_torch_defaults():
    """Six slots, each its own region, through germinate, ramps, fossilize and prune/re-germinate
    cycles with stage graphs, a train step and an eval pass after each transition, torch's
    default recompile limit: no error, no graph break, every region's call (train and eval) runs
    a compiled graph, equal to eager."""
    from tests.support.slot_models import MultiSlotCnn

    assert torch._dynamo.config.recompile_limit == 8  # torch's default, untouched
    backend = CountingBackend("eager")
    twins = Twins(
        MultiSlotCnn(n_slots=6),
        torch.randn(2, 3, 6, 6),
        lambda m: es.compile(m, regions=SeedSlot, fullgraph=True, backend=backend),
    )
    modes = list(BlendMode)

    def check():
        runs = backend.runs
        twins.check()
        assert backend.runs == runs + 2 * 6, "a region's call ran no compiled graph"

    def transition(fn):
        twins.both(fn)
        check()

    check()
    for i in range(6):
        twins.germinate(
            i, nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GELU()), blend=modes[i % 3]
        )
        check()
    for i in range(6):
        transition(lambda s, i=i: s[i].start_blending(2))
        transition(lambda s, i=i: s[i].step())
    for i in (0, 1):
        transition(lambda s, i=i: (s[i].step(), s[i].fossilize()))
    for i in (2, 3, 4):
        transition(lambda s, i=i: s[i].prune())
        twins.germinate(
            i, nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GELU()), blend=modes[(i + 1) % 3]
        )
        check()
        transition(lambda s, i=i: s[i].start_blending(0))
        transition(lambda s, i=i: s[i].schedule_prune(1))
        transition(lambda s, i=i: s[i].step())  # ramped down: pruned
    assert not counters["graph_break"]
    # regions in equal structures share a function; unused ones beyond keep_structures (2) go
    wrapper = twins.compiled
    in_use = {r.key for r in wrapper._regions}
    assert len(wrapper._structures) <= len(in_use) + 2 and wrapper.structures_evicted > 0
    assert [s.stage.name for s in slots_of(twins.inner)] == (
        ["FOSSILIZED"] * 2 + ["PRUNED"] * 3 + ["BLENDING"]
    )
