"""Several slots in one compiled model: compiled equals eager after every transition, with the
slots in different stages; the graph budget (stage changes cost no graph, germinate/prune at most
one per train/eval mode); a long 6-slot run under esper_slot.compile with torch's default config;
and esper-lite's multi-slot tests, ported (independence, recycling, mixed stages, channels_last
isolation through backward, bf16 autocast, non-finite seeds)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot
from esper_slot import BlendMode, CompileBudgetError, SeedSlot, Stage
from tests.support.slot_models import MultiSlotCnn, TinyGpt
from tests.support.twins import (
    TOLERANCE,
    CountingBackend,
    Twins,
    bf16_autocast_sgd_matches,
    slots_of,
    torch_compile,
)

MODES = list(BlendMode)


def conv_seed(channels=8):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def plain_compile(backend="aot_eager", **kwargs):
    return lambda m: torch_compile(m, fullgraph=True, backend=backend, **kwargs)


def slot_compile(backend="aot_eager", **kwargs):
    return lambda m: esper_slot.compile(m, fullgraph=True, backend=backend, **kwargs)


# ---- the two failures the single-slot tests missed ----


def test_second_slot_blending_matches_eager_under_plain_torch_compile():
    """The reported case: slot 0 blending, then slot 1 germinated and blending. Before the fix,
    'stage is Stage.TRAINING' was folded without a guard for slot 1 (outputs 0.2 to 0.7 off)."""
    twins = Twins(MultiSlotCnn(n_slots=2), torch.randn(4, 3, 8, 8), plain_compile())
    twins.check()
    twins.germinate(0, conv_seed())
    twins.check()
    twins.both(lambda s: (s[0].start_blending(1), s[0].step()))
    twins.check()
    twins.germinate(1, conv_seed())
    twins.check()
    twins.both(lambda s: (s[1].start_blending(1), s[1].step()))
    y = twins.train_step()
    twins.eval_pass()
    assert all(s.alpha.item() == 1.0 for s in slots_of(twins.inner))
    assert y.isfinite().all() and not counters["graph_break"]


def test_tiny_gpt_with_a_slot_per_block_matches_eager():
    """The second report: a GPT-2 with one slot per block, logits off by 0.93 once the second
    slot blended. Transformer slots co-adapt (no isolation), so host gradients flow through the
    seeds too."""
    model = TinyGpt(n_blocks=2)
    idx = torch.randint(0, 32, (3, 8))
    twins = Twins(model, idx, plain_compile(), loss=lambda y: y.logsumexp(-1).mean())
    seed = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
    for i in range(2):
        twins.germinate(i, seed, blend=MODES[i])
        twins.check()
        twins.both(lambda s, i=i: (s[i].start_blending(2), s[i].step()))
        twins.check()
        twins.both(lambda s, i=i: s[i].step())
        twins.check()
    assert [s.stage for s in slots_of(twins.inner)] == [Stage.BLENDING] * 2
    assert not counters["graph_break"]


# ---- the graph budget ----


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "compile_fn",
    [plain_compile(recompile_limit=32), slot_compile()],
    ids=["torch.compile", "esper_slot.compile"],
)
def test_graph_budget_with_four_slots(compile_fn):
    """0 new graphs for stage advances, step() and set_alpha() of 4 slots one at a time; at most
    one per train/eval mode for each germinate and prune."""
    twins = Twins(MultiSlotCnn(n_slots=4), torch.randn(2, 3, 6, 6), compile_fn)
    twins.check()
    for i in range(4):
        before = graphs()
        twins.germinate(i, conv_seed(), blend=MODES[i % 3])
        twins.check()
        assert graphs() - before <= 2, f"germinate of slot {i}"
    before, recompiles = graphs(), sum(counters["recompiles"].values())
    for i in range(4):
        twins.both(lambda s, i=i: s[i].start_blending(3))
        twins.check()
        twins.both(lambda s, i=i: s[i].step())
        twins.check()
        twins.both(lambda s, i=i: s[i].set_alpha(0.25 * i))
        twins.check()
    for i in range(3):
        twins.both(lambda s, i=i: (s[i].set_alpha(1.0), s[i].fossilize()))
        twins.check()
    assert graphs() == before and sum(counters["recompiles"].values()) == recompiles
    twins.both(lambda s: s[3].prune())
    twins.check()
    assert graphs() - before <= 2
    assert not counters["graph_break"]


@pytest.mark.backend_independent
def test_plain_torch_compile_hits_its_limit_after_four_structure_changes():
    """What the README says happens at the limit without esper_slot.compile: each germinate or
    prune costs a train and an eval graph, so the 4th structure change would need graphs 9 and
    10 of torch's default 8, and fullgraph=True raises."""
    twins = Twins(MultiSlotCnn(n_slots=3), torch.randn(2, 3, 6, 6), plain_compile())
    twins.check()
    for i in range(3):
        twins.germinate(i, conv_seed())
        twins.check()
    assert graphs() == 8
    twins.both(lambda s: s[0].prune())
    with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
        twins.check()


@pytest.mark.backend_independent
def test_long_six_slot_run_under_torch_defaults():
    """Six slots, one transition at a time, prune/re-germinate cycles, a train step and an eval
    pass after each transition, torch's default recompile limit: it never raises, never falls back
    to eager (every call runs a compiled graph), never breaks the graph, and matches eager.
    (Dynamo with the eager backend: the guards and graph counts are dynamo's; AOT autograd would
    only triple the compile time here, and the other tests run it.)"""
    assert torch._dynamo.config.recompile_limit == 8  # torch's default, untouched
    backend = CountingBackend("eager")
    twins = Twins(
        MultiSlotCnn(n_slots=6),
        torch.randn(2, 3, 6, 6),
        lambda m: esper_slot.compile(m, fullgraph=True, backend=backend),
    )
    checks = 0

    def check():
        nonlocal checks
        runs = backend.runs
        twins.check()
        checks += 1
        assert backend.runs == runs + 2, "a call ran eager: no compiled graph"

    def transition(fn):
        twins.both(fn)
        check()

    check()
    for i in range(6):
        twins.germinate(i, conv_seed(), blend=MODES[i % 3])
        check()
    for i in range(6):
        transition(lambda s, i=i: s[i].start_blending(2))
        transition(lambda s, i=i: s[i].step())
    for i in (0, 1):
        transition(lambda s, i=i: (s[i].step(), s[i].fossilize()))  # the ramp ends at 1.0
    for i in (2, 3, 4):  # prune/re-germinate cycles, each with another blend mode
        transition(lambda s, i=i: s[i].prune())
        twins.germinate(i, conv_seed(), blend=MODES[(i + 1) % 3])
        check()
        transition(lambda s, i=i: s[i].start_blending(1))
    assert checks == 1 + 29  # the README quotes these numbers
    structures = 1 + 6 + 3 * 2  # empty, six germinations, three prunes and re-germinations
    assert backend.graphs == graphs() == 2 * structures  # a train and an eval graph each
    assert twins.compiled.structures_compiled == structures
    assert not counters["graph_break"]
    assert [s.stage.name for s in slots_of(twins.inner)] == (["FOSSILIZED"] * 2 + ["BLENDING"] * 4)


@pytest.mark.backend_independent
def test_budget_error_names_the_fix_before_torch_fails():
    """One structure needing more graphs than the limit (new input shapes on every call): our
    error, not torch's FailOnRecompileLimitHit, and the call changes nothing."""
    model = MultiSlotCnn(n_slots=2)
    compiled = esper_slot.compile(
        model, fullgraph=True, backend="aot_eager", dynamic=False, recompile_limit=2
    )
    compiled(torch.randn(2, 3, 6, 6))
    compiled(torch.randn(2, 3, 7, 7))
    compiled(torch.randn(2, 3, 6, 6))  # still fits a compiled graph: no error
    running_mean = model.blocks[0][1].running_mean.clone()
    with pytest.raises(CompileBudgetError, match=r"recompile_limit=N.*dynamic=True"):
        compiled(torch.randn(2, 3, 5, 5))
    assert torch.equal(model.blocks[0][1].running_mean, running_mean)
    model.slots[0].germinate(conv_seed())  # a new structure has a budget of its own
    compiled(torch.randn(2, 3, 5, 5))


def test_compile_wrapper_is_the_model_for_attributes_and_state_dicts():
    model = MultiSlotCnn(n_slots=2)
    compiled = esper_slot.compile(model, backend="eager")
    assert compiled.slots is model.slots and compiled._orig_mod is model
    assert esper_slot.checkpoint.unwrap(compiled) is model
    keys = set(compiled.state_dict())
    assert keys == {"_orig_mod." + k for k in model.state_dict()}
    assert set(esper_slot.strip_wrapper_prefixes(compiled.state_dict())) == set(model.state_dict())
    with pytest.raises(ValueError, match="keep_structures"):
        esper_slot.compile(model, keep_structures=0)
    with pytest.raises(ValueError, match="nn.Module"):
        esper_slot.compile(lambda x: x)


@pytest.mark.backend_independent
def test_kept_structure_is_reused_after_prune():
    """Germinate then prune returns the model to the structure it had: with the default
    keep_structures=2 that structure's graphs are still there, so the prune costs none."""
    twins = Twins(MultiSlotCnn(n_slots=2), torch.randn(2, 3, 6, 6), slot_compile())
    twins.check()
    twins.germinate(1, conv_seed())
    twins.check()
    before = graphs()
    twins.both(lambda s: s[1].prune())
    twins.check()
    assert graphs() == before and twins.compiled.structures_compiled == 2


# ---- esper-lite's multi-slot tests, ported ----


class Recorder:
    """Forward hooks recording each slot's output."""

    def __init__(self, model):
        self.out = {}
        for i, slot in enumerate(slots_of(model)):
            slot.register_forward_hook(lambda m, a, y, i=i: self.out.__setitem__(i, y.detach()))


def test_slots_are_independent():
    """Changing one slot (germinate, stage, alpha, prune) leaves every other slot's state and
    every upstream slot's output bit for bit as it was."""
    model = MultiSlotCnn(n_slots=3)
    slots, rec, x = model.slots, Recorder(model), torch.randn(2, 3, 6, 6)
    for i in range(3):
        slots[i].germinate(conv_seed(), blend=MODES[i])
        slots[i].start_blending(4)
    slots[0].set_alpha(0.3)
    slots[1].set_alpha(0.7)
    model(x)
    before = dict(rec.out)
    slots[2].set_alpha(0.9)
    slots[2].step()
    model(x)
    assert torch.equal(rec.out[0], before[0]) and torch.equal(rec.out[1], before[1])
    assert not torch.equal(rec.out[2], before[2])
    assert (slots[0].alpha.item(), slots[1].alpha.item()) == pytest.approx((0.3, 0.7))
    slots[1].prune()
    assert slots[0].stage == slots[2].stage == Stage.BLENDING and slots[0].has_seed
    assert slots[2].blend_mode == BlendMode.GATE and slots[2].gate is not None
    model(x)
    assert torch.equal(rec.out[0], before[0])
    assert torch.equal(rec.out[1], model.blocks[1](torch.relu(before[0])))  # empty: host itself


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_recycled_slot_keeps_nothing_of_its_first_seed(compiled):
    """germinate -> train/blend -> prune -> germinate: the slot is exactly a fresh slot given the
    second seed (state, parameters, state dict, outputs and gradients)."""
    torch.manual_seed(1)
    second = conv_seed()
    model = MultiSlotCnn(n_slots=2)
    fresh = copy.deepcopy(model)
    step = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
    x = torch.randn(2, 3, 6, 6)
    slot = model.slots[1]
    slot.germinate(conv_seed(), blend=BlendMode.GATE)
    step(x).sum().backward()
    slot.start_blending(2)
    slot.step()
    step(x).sum().backward()
    slot.prune()
    slot.germinate(copy.deepcopy(second), blend=BlendMode.ADD)
    fresh.slots[1].germinate(copy.deepcopy(second), blend=BlendMode.ADD)
    assert slot.gate is None and slot.alpha.item() == 0.0 and slot.incubating.item()
    assert (slot.alpha_mode, slot.schedule.steps_total, slot.stage) == ("HOLD", 0, Stage.TRAINING)
    assert slot.grad_flow.counts.tolist() == [0, 0, 0]
    assert slot.get_extra_state() == fresh.slots[1].get_extra_state()
    assert set(model.state_dict()) == set(fresh.state_dict())
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        if name.endswith("_extra_state"):
            assert a == b, name
        elif "running" not in name and "num_batches" not in name:  # BatchNorm saw batches
            assert torch.equal(a, b), name
    model.load_state_dict(fresh.state_dict())
    model.zero_grad()
    y, y_fresh = step(x), fresh(x)
    assert torch.equal(y, y_fresh)
    y.sum().backward()
    y_fresh.sum().backward()
    for (name, a), b in zip(model.named_parameters(), fresh.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name, rtol=0, atol=0)


def test_mixed_stages_with_inductor_match_the_formulas():
    """Four slots at once in DORMANT, TRAINING, BLENDING and FOSSILIZED (ADD mode), compiled with
    Inductor: each slot's output is what its stage's formula gives for its input."""
    model = MultiSlotCnn(n_slots=4)
    for i, stage in enumerate([None, "TRAINING", "BLENDING", "FOSSILIZED"]):
        if stage:
            model.slots[i].germinate(conv_seed())
        if stage in ("BLENDING", "FOSSILIZED"):
            model.slots[i].start_blending(4)
            model.slots[i].step()
        if stage == "FOSSILIZED":
            model.slots[i].set_alpha(1.0)
            model.slots[i].fossilize()
    inputs = {}
    for i, slot in enumerate(model.slots):
        slot.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].detach()))
    rec = Recorder(model)
    twins = Twins(model, torch.randn(2, 3, 6, 6), plain_compile("inductor"))
    twins.train_step()
    for i, slot in enumerate(model.slots):
        h = inputs[i]
        if i < 2:
            want = h
        else:
            a = slot.alpha
            want = h + a * (slot.seed(h) - h)
        torch.testing.assert_close(rec.out[i], want, **TOLERANCE)
    assert [s.alpha.item() for s in model.slots] == [0.0, 0.0, 0.25, 1.0]
    assert not counters["graph_break"] and graphs() == 1


class SlotOnly(nn.Module):
    def __init__(self, isolate):
        super().__init__()
        self.slot = SeedSlot(16, "cnn")
        self.slot.germinate(nn.Identity(), isolate_gradients=isolate)  # esper-lite's "noop"

    def forward(self, x):
        return self.slot(x)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("isolate", [True, False])
def test_channels_last_isolation_through_backward(isolate, compiled):
    """A channels_last host through a BLENDING slot at alpha 0.5 with a no-op seed: the output
    stays channels_last, and host's gradient is 0.5 (the direct path alone) with isolation, 1.0
    (both paths) without; in TRAINING it is exactly 1 (the host without a seed)."""
    model = SlotOnly(isolate)
    step = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
    x = torch.randn(2, 16, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    y = step(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x) * (1 if isolate else 2))  # ste: g to host+seed
    model.slot.start_blending(2, isolate_gradients=isolate)
    model.slot.step()
    x.grad = None
    y = step(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.5 if isolate else 1.0))


def test_bf16_autocast_training_matches_eager():
    """Three SGD steps under torch.autocast(bfloat16) with slots in TRAINING, BLENDING (multiply)
    and FOSSILIZED (gate): compiled and eager agree to bfloat16 precision, and float32 parameters
    get float32 gradients."""
    torch.manual_seed(2)
    model = MultiSlotCnn(n_slots=3)
    for i, mode in enumerate(MODES):
        model.slots[i].germinate(conv_seed(), blend=mode)
    for i in (1, 2):
        model.slots[i].start_blending(2)
        model.slots[i].step()
    model.slots[2].step()  # the 2-step ramp ends at 1.0
    model.slots[2].fossilize()
    bf16_autocast_sgd_matches(model, plain_compile(), torch.randn(4, 3, 8, 8))
    assert not counters["graph_break"]


class BadSeed(nn.Module):
    """A conv seed whose output holds NaN or +-Inf at a few positions."""

    def __init__(self, bad):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bad = bad

    def forward(self, x):
        y = self.conv(x)
        mask = torch.zeros_like(y, dtype=torch.bool)
        mask[:, 0, 0, 0] = True
        return y.masked_fill(mask, self.bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_seed_hidden_in_training_propagated_when_blending(bad):
    """TRAINING: outputs and host gradients are bit for bit those of the model without a seed,
    eager and compiled (the STE never reads the seed's values). BLENDING (ADD at alpha 0.5):
    non-finite outputs, as the formula gives, compiled equal to eager."""
    torch.manual_seed(3)
    base = MultiSlotCnn(n_slots=2).eval()  # eval: BatchNorm statistics fixed between the runs
    x = torch.randn(2, 3, 6, 6)
    y_base = base(x)
    y_base.sum().backward()
    host_grads = {n: p.grad.clone() for n, p in base.named_parameters()}
    model = copy.deepcopy(base)
    model.zero_grad(set_to_none=True)
    for slot in model.slots:
        slot.germinate(BadSeed(bad))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    for step in (model, compiled):
        model.zero_grad(set_to_none=True)
        y = step(x)
        assert torch.equal(y, y_base)
        y.sum().backward()
        for name, grad in host_grads.items():
            assert torch.equal(model.get_parameter(name).grad, grad), name
        seed_grad = model.slots[0].seed.conv.weight.grad
        assert seed_grad is not None and seed_grad.isfinite().all()
    model.slots[0].start_blending(2)
    model.slots[0].step()
    with warnings.catch_warnings():  # inf - inf under the Triton interpreter: deliberate here
        warnings.simplefilter("ignore", RuntimeWarning)
        y_eager, y_compiled = model(x), compiled(x)
    assert not y_eager.isfinite().all()
    torch.testing.assert_close(y_compiled, y_eager, equal_nan=True)
