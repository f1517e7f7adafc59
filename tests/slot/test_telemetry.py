"""GradientTelemetry and the seed-output probe: the numbers against float64 references written
here, precision from 1e-30 to 1e30 without copies, esper-lite's ratio and health, ``every``,
seeds that change between reads, one transfer per read, and collect() inside
torch.compile(fullgraph=True) equal to eager with no graph break and no recompile."""

from __future__ import annotations

import copy
import logging
import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import esper_slot
from esper_slot import BlendMode, GradientTelemetry
from esper_slot.norms import _chunked_norms, tensor_norms
from esper_slot.telemetry import esper_lite_ratio
from tests.support.slot_models import MultiSlotMlp
from tests.support.twins import CountingBackend

pytestmark = pytest.mark.backend_independent  # no kernel runs in collect()


def norm64(t):
    return torch.linalg.vector_norm(t.double()).item()


# ---- per-tensor norms: precision without overflow or underflow ----


_traced = torch.compile(tensor_norms, fullgraph=True, backend="eager")  # the traced form's math


def both_forms(grads):
    """The norms of the same gradients by every form: eager on a CPU (plain float32 norms where
    safe), the chunked scaled form (eager on a GPU), and the traced form."""
    return tensor_norms(grads), _chunked_norms(grads), _traced(grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-20, 1e-7, 1.0, 1e20, 1e30])
def test_tensor_norm_matches_float64_at_every_magnitude(dtype, magnitude):
    info = torch.finfo(dtype)
    if not info.tiny <= magnitude <= info.max / 1e4:
        pytest.skip(f"{magnitude} is outside {dtype}'s range")
    g = (torch.randn(1000, dtype=torch.float64) * magnitude).to(dtype)
    want = norm64(g)
    for got in both_forms([g]):
        assert got.item() == pytest.approx(want, rel=1e-5), (got, want)


def test_chunks_layouts_and_empty_gradients():
    """Several chunks, a dense non-contiguous gradient (a channels_last conv weight's), a
    non-dense one, an empty one: both forms agree with float64."""
    grads = [
        torch.randn(3 * (1 << 16) + 5) * 1e15,
        torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last),
        torch.randn(6, 8)[:, ::2],
        torch.zeros(0),
    ]
    want = [norm64(g) for g in grads]
    for got in both_forms(grads):
        assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_plain_float32_norms_would_fail_here():
    """Why the scaling exists: the stock float32 norm overflows and underflows."""
    assert math.isinf(torch.linalg.vector_norm(torch.full((1000,), 1e20)).item())
    assert torch.linalg.vector_norm(torch.full((1000,), 1e-25)).item() == 0.0
    assert tensor_norms([torch.full((1000,), 1e-25)]).item() == pytest.approx(
        math.sqrt(1000) * 1e-25, rel=1e-5
    )


@given(exponents=st.lists(st.integers(-30, 30), min_size=1, max_size=6), length=st.integers(1, 50))
def test_tensor_norms_of_mixed_magnitudes(exponents, length):
    g = torch.cat([torch.randn(length, dtype=torch.float64) * 10.0**e for e in exponents])
    for got in both_forms([g.float()]):
        assert got.item() == pytest.approx(norm64(g.float()), rel=1e-5)


def test_non_finite_and_zero_gradients():
    grads = [
        torch.tensor([1.0, math.nan]),
        torch.tensor([1.0, math.inf]),
        torch.zeros(3),
        torch.tensor([3.0, 4.0]),
        torch.tensor([-math.inf, 1.0], dtype=torch.float64),
    ]
    for norms in both_forms(grads):
        assert math.isnan(norms[0]) and math.isinf(norms[1]) and math.isinf(norms[4])
        assert norms[2].item() == 0.0 and norms[3].item() == pytest.approx(5.0)


# ---- a small model whose gradients the tests set by hand ----


def model_with_slots():
    """Three slots: an ADD seed in TRAINING, a GATE seed in BLENDING, an empty one."""
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=3, channels=4)
    model.slots[0].germinate(nn.Linear(4, 4))
    model.slots[1].germinate(nn.Linear(4, 4), blend=BlendMode.GATE)
    model.slots[1].start_blending(10)
    return model


def groups(model):
    seeds = [list(s.seed.parameters()) if s.has_seed else [] for s in model.slots]
    gates = [list(s.gate.parameters()) if s.gate is not None else [] for s in model.slots]
    owned = {id(p) for g in seeds + gates for p in g}
    host = [p for p in model.parameters() if id(p) not in owned]
    return seeds, gates, host


def set_grads(model, scale_seed=1.0, scale_host=1.0, generator=None):
    seeds, gates, host = groups(model)
    for group, scale in ((host, scale_host),) + tuple((g, scale_seed) for g in seeds + gates):
        for p in group:
            p.grad = (
                (torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale)
                .float()
                .to(p.device)
            )


def reference(model, steps_grads):
    """float64 RMS of per-step group norms, from the gradients recorded at each step."""
    out = {}
    for i in range(len(model.slots)):
        sums = {"seed": 0.0, "gate": 0.0, "host": 0.0}
        for grads in steps_grads:
            for key in sums:
                sums[key] += sum(norm64(g) ** 2 for g in grads[key][i])
        n = len(steps_grads)
        out[f"slots.{i}"] = {k: math.sqrt(v / n) for k, v in sums.items()}
    return out


def snapshot(model):
    seeds, gates, host = groups(model)
    return {
        "seed": [[p.grad.clone() for p in g] for g in seeds],
        "gate": [[p.grad.clone() for p in g] for g in gates],
        "host": [[p.grad.clone() for p in host] for _ in model.slots],
    }


@pytest.mark.parametrize("scales", [(1.0, 1.0), (1e20, 1e-20), (1e-20, 1e20), (1e30, 1e-30)])
def test_rms_norms_match_float64_over_steps(scales):
    model = model_with_slots()
    telemetry = GradientTelemetry(model, compile=False)
    gen = torch.Generator().manual_seed(1)
    recorded = []
    for step in range(4):
        seed_scale, host_scale = scales if step % 2 else scales[::-1]
        set_grads(model, seed_scale, host_scale, gen)
        recorded.append(snapshot(model))
        telemetry.collect()
    stats = telemetry.read()
    want = reference(model, recorded)
    seeds, gates, host = groups(model)
    for i in range(3):
        got = stats[f"slots.{i}"]
        assert got.steps == 4
        assert got.seed_grad_norm == pytest.approx(want[f"slots.{i}"]["seed"], rel=1e-5)
        assert got.gate_grad_norm == pytest.approx(want[f"slots.{i}"]["gate"], rel=1e-5)
        assert got.host_grad_norm == pytest.approx(want[f"slots.{i}"]["host"], rel=1e-5)
        assert got.seed_param_count == sum(p.numel() for p in seeds[i])
        assert got.gate_param_count == sum(p.numel() for p in gates[i])
        assert got.host_param_count == sum(p.numel() for p in host)


def test_ratio_is_esper_lites_formula():
    # esper-lite's DualGradientStats.normalized_ratio, written out here.
    def esper_lite(seed, n_seed, host, n_host):
        if host < 1e-8 or seed < 1e-8 or n_host == 0 or n_seed == 0:
            return 0.0
        return (seed / n_seed**0.5) / (host / n_host**0.5 + 1e-8)

    for args in [
        (0.3, 100, 2.0, 10000),
        (1e-9, 100, 2.0, 10),
        (0.3, 0, 2.0, 10),
        (0.3, 10, 0.0, 10),
        (5.0, 7, 1e-3, 1),
    ]:
        assert esper_lite_ratio(*args) == esper_lite(*args)
    model = model_with_slots()
    telemetry = GradientTelemetry(model, compile=False)
    set_grads(model)
    telemetry.collect()
    for stats in telemetry.read().values():
        assert stats.ratio == esper_lite(
            stats.seed_grad_norm,
            stats.seed_param_count,
            stats.host_grad_norm,
            stats.host_param_count,
        )
    assert stats.ratio == 0.0  # the empty slot


def test_vanishing_exploding_non_finite_and_health():
    model = model_with_slots()
    telemetry = GradientTelemetry(model, compile=False, vanishing=1e-3, exploding=10.0)
    weight, bias = model.slots[0].seed.weight, model.slots[0].seed.bias
    set_grads(model)
    weight.grad = torch.full_like(weight, 1e-5)  # norm 4e-5: vanishing
    bias.grad = torch.full_like(bias, 100.0)  # norm 200: exploding
    telemetry.collect()
    set_grads(model)
    bias.grad = torch.tensor([1.0, math.nan, 0.0, 0.0])  # non-finite (counts as exploding)
    clean_weight = weight.grad.clone()
    telemetry.collect()
    stats = telemetry.read()["slots.0"]
    assert (stats.vanishing, stats.exploding, stats.non_finite) == (1, 2, 1)
    # health = 1 - 0.5 * 1/4 - 0.8 * 2/4 over 2 tensors x 2 steps
    assert stats.health == pytest.approx(1 - 0.5 * 0.25 - 0.8 * 0.5)
    # the NaN gradient is left out of the norm; the rest of both steps is in it
    want = math.sqrt(
        (norm64(torch.full((4, 4), 1e-5)) ** 2 + 200.0**2 + norm64(clean_weight) ** 2) / 2
    )
    assert stats.seed_grad_norm == pytest.approx(want, rel=1e-5)
    assert telemetry.read()["slots.0"].steps == 0  # read() reset it


def test_every_counts_calls_and_read_without_reset_keeps_accumulating():
    model = model_with_slots()
    telemetry = GradientTelemetry(model, every=3, compile=False)
    for _ in range(7):
        set_grads(model)
        telemetry.collect()
    assert telemetry.read(reset=False)["slots.0"].steps == 2  # calls 3 and 6
    for _ in range(2):
        set_grads(model)
        telemetry.collect()
    assert telemetry.read()["slots.0"].steps == 3  # and call 9


def test_a_new_seed_starts_its_statistics_afresh():
    model = model_with_slots()
    telemetry = GradientTelemetry(model, compile=False)
    set_grads(model, scale_seed=1e10)
    telemetry.collect()
    model.slots[0].prune()
    model.slots[0].germinate(nn.Linear(4, 4))
    set_grads(model)
    want = math.sqrt(sum(norm64(p.grad) ** 2 for p in model.slots[0].seed.parameters()))
    telemetry.collect()
    stats = telemetry.read()
    assert stats["slots.0"].steps == 1
    assert stats["slots.0"].seed_grad_norm == pytest.approx(want, rel=1e-5)
    assert stats["slots.1"].steps == 2  # the other slots go on


def test_read_is_one_transfer(monkeypatch):
    model = model_with_slots()
    telemetry = GradientTelemetry(model, compile=False)
    set_grads(model)
    telemetry.collect()
    calls = []
    original = torch.Tensor.tolist

    def counting(self):
        calls.append(self.shape)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("item() in read()"))
    telemetry.read()
    assert len(calls) == 1


def test_accumulators_avoid_the_0d_float64_trap():
    telemetry = GradientTelemetry(model_with_slots())
    for t in [*telemetry.state.values(), telemetry.calls]:
        assert t.dim() >= 1 and t.dtype in (torch.float32, torch.int64)


def test_bad_arguments():
    model = model_with_slots()
    for kwargs in [
        {"every": 0},
        {"every": 1.5},
        {"every": True},
        {"vanishing": -1.0},
        {"exploding": math.inf},
        {"vanishing": 5.0, "exploding": 1.0},
        {"host_params": [1, 2]},
        {"compile": "yes"},
    ]:
        with pytest.raises(ValueError):
            GradientTelemetry(model, **kwargs)
    with pytest.raises(ValueError, match="no SeedSlot"):
        GradientTelemetry(nn.Linear(2, 2))


def test_explicit_host_params():
    model = model_with_slots()
    telemetry = GradientTelemetry(model, host_params=model.layers[0].parameters(), compile=False)
    set_grads(model)
    telemetry.collect()
    stats = telemetry.read()["slots.0"]
    assert stats.host_param_count == 20
    want = math.sqrt(sum(norm64(p.grad) ** 2 for p in model.layers[0].parameters()))
    assert stats.host_grad_norm == pytest.approx(want, rel=1e-5)


# ---- torch.compile: collect() inside a fullgraph step, and the internal compile ----


def test_collect_inside_a_compiled_step_equals_eager_without_recompiles():
    """A training step whose post-backward half (collect, an SGD update) is compiled with
    fullgraph=True, against the same step eager, over transitions of three slots in different
    stages; every=2 (a tensor-counted gate: no recompile per call)."""
    torch._dynamo.reset()
    eager_model = model_with_slots()
    compiled_model = copy.deepcopy(eager_model)
    x = torch.randn(2, 3, 4)
    runs = []
    for model, compiled in ((eager_model, False), (compiled_model, True)):
        telemetry = GradientTelemetry(model, every=2, compile=False)

        def after_backward(telemetry=telemetry, model=model):
            telemetry.collect()
            with torch.no_grad():  # SGD by hand (torch.optim's step breaks a fullgraph trace)
                for p in model.parameters():
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-0.1)

        backend = CountingBackend("eager")
        fn = (
            torch.compile(after_backward, fullgraph=True, backend=backend)
            if compiled
            else after_backward
        )
        runs.append((model, telemetry, fn, backend))
    results = []
    for model, telemetry, fn, backend in runs:
        stats = []
        for step in range(6):
            if step == 3:
                model.slots[1].step()
            model.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            fn()
            if step in (1, 5):
                stats.append(telemetry.read())
        results.append(stats)
        if fn is not runs[0][2]:
            assert backend.graphs == 1, backend.graphs  # no recompile across calls
    for eager_stats, compiled_stats in zip(*results):
        for name, want in eager_stats.items():
            got = compiled_stats[name]
            assert got.steps == want.steps and got.vanishing == want.vanishing
            for field in ("seed_grad_norm", "gate_grad_norm", "host_grad_norm", "ratio"):
                assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-5)


def test_eager_collect_through_the_internal_compile_equals_the_chunked_form():
    model = model_with_slots()
    twin = copy.deepcopy(model)
    compiled, plain = GradientTelemetry(model, compile=True), GradientTelemetry(twin)
    assert not plain.compile  # the CPU default: the chunked eager form
    gen = torch.Generator().manual_seed(3)
    for scale in (1e20, 1e-20):
        set_grads(model, scale, 1.0, gen)
        for p, q in zip(model.parameters(), twin.parameters()):
            q.grad = p.grad.clone()
        compiled.collect()
        plain.collect()
    a, b = compiled.read(), plain.read()
    for name in a:
        for field in ("seed_grad_norm", "gate_grad_norm", "host_grad_norm"):
            assert getattr(a[name], field) == pytest.approx(getattr(b[name], field), rel=1e-6)


# ---- the seed's output: NaN/Inf recorded in forward ----


class NanSeed(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.broken = True

    def forward(self, x):
        return self.linear(x) / torch.zeros(()) if self.broken else self.linear(x)  # Inf, NaN


def test_a_non_finite_seed_output_is_counted_and_warned_once(caplog):
    model = model_with_slots()
    model.slots[2].germinate(NanSeed())
    x = torch.randn(2, 3, 4)
    host_only = model(x)
    assert torch.isfinite(host_only).all()  # TRAINING hides it
    for _ in range(2):
        model(x)
    model.eval()
    model(x)  # eval passes are not recorded
    model.train()
    telemetry = GradientTelemetry(model, compile=False)
    with caplog.at_level(logging.WARNING, logger="esper_slot"):
        status = esper_slot.check_grad_flow(model)
        assert status["slots.2"].seed_output_non_finite == 3
        assert status["slots.0"].seed_output_non_finite == 0
        stats = telemetry.read()
        assert stats["slots.2"].seed_output_non_finite == 3 and stats["slots.2"].health == 0.0
        model(x)
        assert telemetry.read()["slots.2"].seed_output_non_finite == 1  # since the last read
    warnings = [r for r in caplog.records if "NaN or Inf" in r.getMessage()]
    assert len(warnings) == 1 and "slots.2" in warnings[0].getMessage()
    esper_slot.check_grad_flow(model)  # no clean pass yet: the episode goes on
    model.slots[2].seed.broken = False
    model(x)
    esper_slot.check_grad_flow(model)  # clean passes end the episode ...
    model.slots[2].seed.broken = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="esper_slot"):
        model(x)
        esper_slot.check_grad_flow(model)  # ... so a new one warns again
    assert sum("NaN or Inf" in r.getMessage() for r in caplog.records) == 1
    model.slots[2].prune()
    assert esper_slot.check_grad_flow(model)["slots.2"].seed_output_non_finite == 0


def test_the_probe_can_be_switched_off():
    model = model_with_slots()
    model.slots[2].germinate(NanSeed())
    model.slots[2].check_seed_output = False
    model(torch.randn(2, 3, 4))
    assert esper_slot.check_grad_flow(model)["slots.2"].seed_output_non_finite == 0


def test_the_probe_under_compile_equals_eager_across_transitions():
    """Three slots in three stages, a NaN seed among them, eager and compiled."""
    torch._dynamo.reset()
    model = model_with_slots()
    model.slots[2].germinate(NanSeed())
    twin = copy.deepcopy(model)
    backend = CountingBackend("eager")
    compiled = torch.compile(twin, fullgraph=True, backend=backend)
    x = torch.randn(2, 3, 4)
    for transition in (
        None,
        lambda m: m.slots[2].start_blending(4),
        lambda m: m.slots[0].start_blending(4),
        lambda m: m.slots[1].step(),
    ):
        if transition:
            transition(model)
            transition(twin)
        model(x)
        compiled(x)
        for a, b in zip(model.slots, twin.slots):
            assert torch.equal(a.seed_output.count, b.seed_output.count)
    assert [int(s.seed_output.count) for s in model.slots] == [0, 0, 4]
    assert backend.graphs == 1


def test_under_inductor_the_probe_fuses_into_the_blend_kernel():
    """The compile path's answer to 'the flag comes for free from the kernel that reads the
    seed's output': Inductor puts the seed's last activation, the blend and the probe's min/max
    in one loop (its forward is one kernel)."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    slot = esper_slot.SeedSlot(8, "transformer")
    slot.germinate(nn.Sequential(nn.Linear(8, 8), nn.Tanh()))
    slot.start_blending(10)
    slot.step()
    compiled = torch.compile(slot, fullgraph=True)
    x = torch.randn(4, 16, 8, requires_grad=True)
    _, code = run_and_get_code(lambda: compiled(x).sum().backward())
    forward = code[0]
    fused = [name for name in set(re.findall(r"cpp_fused_\w+", forward)) if "aminmax" in name]
    assert len(fused) == 1 and "lerp" in fused[0] and "tanh" in fused[0], fused


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compile", [None, False])
def test_cuda_collect_matches_float64(compile):
    """On a GPU: the default (the internal compile) and the chunked form, against float64, with
    gradients of 1e20 and 1e-20, and no host sync in collect() (CUDA sync debug mode)."""
    model = model_with_slots().cuda()
    telemetry = GradientTelemetry(model, compile=compile)
    assert telemetry.compile is (compile is None)
    recorded = []
    for scale in (1e20, 1e-20):
        set_grads(model, scale, 1.0)
        recorded.append(snapshot(model))
        torch.cuda.set_sync_debug_mode("error")
        try:
            telemetry.collect()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    stats = telemetry.read()
    want = reference(model, recorded)
    for name, got in stats.items():
        assert got.seed_grad_norm == pytest.approx(want[name]["seed"], rel=1e-5)
        assert got.host_grad_norm == pytest.approx(want[name]["host"], rel=1e-5)
