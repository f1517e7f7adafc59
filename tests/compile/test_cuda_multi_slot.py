"""Several slots in one model on a CUDA GPU: compiled with Inductor (the formulas, fused into
Inductor's Triton kernels) equals eager (our Triton kernels), outputs and every parameter
gradient, after every lifecycle transition, with the slots in different stages and blend modes;
and under bfloat16 autocast. The CPU suite proves the same on the CPU backends; this is the
device the package is for, where eager and compiled run different kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot
from esper_slot import BlendMode, Stage
from tests.support.slot_models import MultiSlotCnn, TinyGpt, TinyGptBlock
from tests.support.twins import Twins, bf16_autocast_sgd_matches, slots_of

DEVICE = "cuda"
MODES = list(BlendMode)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
    ),
]


@pytest.fixture(autouse=True)
def _exact_float32_and_fresh_dynamo():
    """No TF32 (cuDNN allows it for convolutions by default, and eager and Inductor may pick
    different algorithms), and a fresh Dynamo cache and counters per test."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch._dynamo.reset()
    counters.clear()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch._dynamo.reset()


def inductor(model):
    return torch.compile(model, fullgraph=True, backend="inductor")


def slot_inductor(model):
    """esper_slot.compile: a germinate/prune walk needs more structures than torch.compile's
    default recompile limit of 8 graphs holds (a train and an eval graph per structure)."""
    return esper_slot.compile(model, fullgraph=True, backend="inductor")


def conv_seed(channels=8):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())


def test_four_cnn_slots_through_their_lifecycles():
    """Four slots, one per blend mode plus a second ADD, walked one transition at a time from
    empty through TRAINING, BLENDING (a ramp, then set_alpha) to FOSSILIZED, and a prune: compiled
    == eager after each, no graph breaks, and the stage changes compile nothing."""
    twins = Twins(
        MultiSlotCnn(n_slots=4).to(DEVICE), torch.randn(4, 3, 16, 16, device=DEVICE), slot_inductor
    )
    twins.check()
    for i in range(4):
        twins.germinate(i, conv_seed().to(DEVICE), blend=MODES[i % 3])
        twins.check()  # slots 0..i-1 blending or training, slot i training, the rest empty
        if i % 2 == 0:
            twins.both(lambda s, i=i: s[i].start_blending(3))
            twins.check()
    graphs = counters["stats"]["unique_graphs"]
    for i in (0, 2):
        twins.both(lambda s, i=i: s[i].step())
        twins.check()
    twins.both(lambda s: s[1].start_blending(2))
    twins.check()
    twins.both(lambda s: (s[0].set_alpha(1.0), s[0].fossilize()))
    twins.check()
    twins.both(lambda s: s[2].set_alpha(0.5))
    twins.check()
    assert counters["stats"]["unique_graphs"] == graphs, "a stage change recompiled"
    assert [s.stage for s in slots_of(twins.inner)] == [
        Stage.FOSSILIZED,
        Stage.BLENDING,
        Stage.BLENDING,
        Stage.TRAINING,
    ]
    twins.both(lambda s: s[2].prune())
    twins.check()
    assert not counters["graph_break"]


def region_inductor(model):
    """esper_slot.compile by regions: each GPT block compiled on its own, with stage graphs."""
    return esper_slot.compile(model, regions=TinyGptBlock, fullgraph=True, backend="inductor")


@pytest.mark.parametrize("compile_fn", [inductor, region_inductor], ids=["whole", "regions"])
def test_tiny_gpt_slots_in_different_stages(compile_fn):
    """A GPT-2 block stack with one slot per block (co-adapting transformer slots, so host
    gradients flow through the seeds): slot 0 blending while slot 1 trains, then both blending
    in different modes; whole-model and regional compilation."""
    model = TinyGpt(n_blocks=2).to(DEVICE)
    idx = torch.randint(0, 32, (4, 8), device=DEVICE)
    twins = Twins(model, idx, compile_fn, loss=lambda y: y.logsumexp(-1).mean())
    seed = nn.Sequential(nn.Linear(16, 16), nn.Tanh()).to(DEVICE)
    twins.germinate(0, seed, blend=MODES[0])
    twins.check()
    twins.both(lambda s: (s[0].start_blending(2), s[0].step()))
    twins.check()
    twins.germinate(1, seed, blend=MODES[2])
    twins.check()
    twins.both(lambda s: (s[1].start_blending(2), s[1].step()))
    twins.check()
    assert not counters["graph_break"]


def test_bf16_autocast_steps_match_eager():
    """Three SGD steps under bfloat16 autocast with slots in TRAINING, BLENDING (multiply) and
    FOSSILIZED (gate): compiled and eager agree to bfloat16 precision, and the float32
    parameters get float32 gradients."""
    torch.manual_seed(2)
    model = MultiSlotCnn(n_slots=3).to(DEVICE)
    for i, mode in enumerate(MODES):
        model.slots[i].germinate(conv_seed().to(DEVICE), blend=mode)
    for i in (1, 2):
        model.slots[i].start_blending(2)
        model.slots[i].step()
    model.slots[2].step()
    model.slots[2].fossilize()
    bf16_autocast_sgd_matches(model, inductor, torch.randn(8, 3, 16, 16, device=DEVICE))
    assert not counters["graph_break"]
