"""One SeedSlot under torch.compile(fullgraph=True): zero graph breaks in every stage, one graph
per structure (no seed; a seed) over a whole lifecycle, zero recompiles over a blending ramp and
the stage changes after germination, eager-equal results. Several slots: test_multi_slot.py."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from esper_slot import BlendMode
from tests.support.slot_models import host_and_input


def graphs():
    return counters["stats"]["unique_graphs"]


def lifecycle(topology, mode, backend, prune=False):
    """Drive eager and compiled copies of one model through a lifecycle; return graphs compiled
    per stage."""
    torch._dynamo.reset()
    counters.clear()
    eager, x, make_seed = host_and_input(topology)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    per_stage = {}

    def train_step(label, steps=1, between=None):
        before = graphs()
        for _ in range(steps):
            if between:
                between()
            y_c, y_e = compiled(x), eager(x)
            torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-5)
            y_c.square().mean().backward()
            y_e.square().mean().backward()
        per_stage[label] = graphs() - before

    def both(fn):
        fn(eager.slot)
        fn(compiled_model.slot)

    train_step("DORMANT")
    seed = make_seed()
    both(lambda s: s.germinate(copy.deepcopy(seed), blend=mode))
    train_step("TRAINING", steps=2)
    both(lambda s: s.start_blending(20))
    recompiles_before = sum(counters["recompiles"].values())
    train_step("BLENDING", steps=20, between=lambda: both(lambda s: s.step()))
    ramp_recompiles = sum(counters["recompiles"].values()) - recompiles_before
    assert eager.slot.alpha.item() == compiled_model.slot.alpha.item() == 1.0
    if prune:
        both(lambda s: s.prune())
        train_step("PRUNED", steps=2)
    else:
        both(lambda s: s.fossilize())
        train_step("FOSSILIZED", steps=2)
    assert not counters["graph_break"], dict(counters["graph_break"])
    return per_stage, ramp_recompiles


def test_cnn_lifecycle_with_inductor():
    per_stage, ramp_recompiles = lifecycle("cnn", BlendMode.ADD, "inductor")
    assert per_stage == {"DORMANT": 1, "TRAINING": 1, "BLENDING": 0, "FOSSILIZED": 0}
    assert ramp_recompiles == 0


@pytest.mark.parametrize("mode", [BlendMode.MULTIPLY, BlendMode.GATE])
def test_transformer_lifecycle_each_blend_mode(mode):
    per_stage, ramp_recompiles = lifecycle("transformer", mode, "aot_eager")
    assert per_stage == {"DORMANT": 1, "TRAINING": 1, "BLENDING": 0, "FOSSILIZED": 0}
    assert ramp_recompiles == 0


def test_pruned_reuses_the_dormant_graph():
    """PRUNED has DORMANT's structure (no seed), and torch.compile still holds that graph."""
    per_stage, _ = lifecycle("cnn", BlendMode.MULTIPLY, "aot_eager", prune=True)
    assert per_stage == {"DORMANT": 1, "TRAINING": 1, "BLENDING": 0, "PRUNED": 0}
