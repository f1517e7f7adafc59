"""CUDA graphs: a compiled training step with slots under ``mode="reduce-overhead"`` keeps
replaying its recorded graphs through an alpha ramp and stage changes. It never skips cudagraphs
(Inductor's ``cudagraph_skips`` counter, which it bumps where it logs "skipping cudagraphs"),
never records a graph again once the train and eval graphs are recorded, compiles nothing new,
and equals the eager twin (outputs, every parameter gradient, eval outputs) after each change.

The slot's changing state (stage codes, alpha, grad-flow counters) lives in buffers updated in
place on the GPU, which CUDA graph trees treat as static inputs: a change of their values must
neither re-record nor fall back to eager."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch._inductor import cudagraph_trees

import esper_slot
from esper_slot import BlendMode, Stage
from tests.support.slot_models import MultiSlotCnn
from tests.support.twins import Twins, slots_of

DEVICE = "cuda"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
    ),
]


@pytest.fixture
def recordings(monkeypatch):
    """How many CUDA graphs the graph trees record (each new recording, re-records included)."""
    count = {"n": 0}
    record = cudagraph_trees.CUDAGraphTreeManager.record_function

    def counting(self, *args, **kwargs):
        count["n"] += 1
        return record(self, *args, **kwargs)

    monkeypatch.setattr(cudagraph_trees.CUDAGraphTreeManager, "record_function", counting)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch._dynamo.reset()
    counters.clear()
    yield count
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch._dynamo.reset()


def reduce_overhead(model):
    compiled = esper_slot.compile(model, fullgraph=True, backend="inductor", mode="reduce-overhead")

    def step(x):
        torch.compiler.cudagraph_mark_step_begin()  # one training iteration per call
        return compiled(x)

    return step


def conv_seed(channels=8):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())


def test_reduce_overhead_replays_through_a_ramp_and_stage_changes(recordings):
    torch.manual_seed(0)
    model = MultiSlotCnn(n_slots=3).to(DEVICE)
    twins = Twins(model, torch.randn(4, 3, 16, 16, device=DEVICE), reduce_overhead)
    twins.germinate(0, conv_seed().to(DEVICE), blend=BlendMode.ADD)
    twins.germinate(1, conv_seed().to(DEVICE), blend=BlendMode.GATE)
    twins.both(lambda s: s[1].start_blending(4))
    for _ in range(3):  # warm-up runs, then the train and eval graphs are recorded
        twins.check()
    assert recordings["n"] > 0, "nothing was recorded: cudagraphs did not run"
    recorded, graphs = recordings["n"], counters["stats"]["unique_graphs"]

    changes = [
        ("alpha ramp", lambda s: s[1].step()),
        ("alpha ramp", lambda s: s[1].step()),
        ("start_blending", lambda s: s[0].start_blending(3)),
        ("alpha ramp", lambda s: (s[0].step(), s[1].step())),
        ("set_alpha and fossilize", lambda s: (s[1].set_alpha(1.0), s[1].fossilize())),
        ("alpha ramp", lambda s: s[0].step()),
    ]
    for name, change in changes:
        twins.both(change)
        twins.check()
        twins.check()  # a second step on the same state replays too
        assert counters["inductor"]["cudagraph_skips"] == 0, f"skipped cudagraphs after {name}"
        assert recordings["n"] == recorded, f"re-recorded a CUDA graph after {name}"
        assert counters["stats"]["unique_graphs"] == graphs, f"{name} compiled a graph"
    assert [s.stage for s in slots_of(twins.inner)] == [
        Stage.BLENDING,
        Stage.FOSSILIZED,
        Stage.DORMANT,
    ]
    assert not counters["graph_break"]
