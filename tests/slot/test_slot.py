"""SeedSlot behaviour in eager mode: stages, isolation, blending, the ramp, lifecycle errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import kernels
from esper_slot import BlendMode, DefaultGate, LifecycleError, SeedSlot, Stage
from tests.support.slot_models import CountingSeed, host_and_input


def host_param_grads(model):
    return {
        n: p.grad.clone()
        for n, p in model.named_parameters()
        if p.grad is not None and ".seed." not in n and ".gate." not in n
    }


def run(model, x):
    model.zero_grad(set_to_none=True)
    y = model(x)
    y.square().sum().backward()
    return y


@pytest.mark.parametrize("topology", ["cnn", "transformer"])
def test_dormant_and_pruned_return_host_and_never_call_the_seed(topology):
    model, x, make_seed = host_and_input(topology)
    features = torch.randn(4, 8, 5, 5) if topology == "cnn" else torch.randn(4, 5, 16)
    assert model.slot(features) is features
    seed = CountingSeed(make_seed())
    model.slot.germinate(seed)
    model(x)
    assert seed.calls == 1
    model.slot.prune()
    assert model.slot.stage is Stage.PRUNED and model.slot.seed is None
    assert model.slot(features) is features
    model(x)
    assert seed.calls == 1


@pytest.mark.parametrize("topology", ["cnn", "transformer"])
def test_training_output_identical_and_host_grads_unchanged_under_isolation(topology):
    model, x, make_seed = host_and_input(topology)
    y0 = run(model, x)
    g0 = host_param_grads(model)
    model.slot.germinate(make_seed(), isolate_gradients=True)
    assert model.slot.stage is Stage.TRAINING and model.slot.isolate_gradients
    y1 = run(model, x)
    assert torch.equal(y0, y1)
    g1 = host_param_grads(model)
    assert g0.keys() == g1.keys()
    for name in g0:
        assert torch.equal(g0[name], g1[name]), name
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.slot.seed.parameters())


def test_training_seed_receives_the_full_gradient():
    model, x, make_seed = host_and_input("cnn")
    model.slot.germinate(make_seed())
    seen = {}

    def capture(key):
        def hook(module, inputs, out):
            out.register_hook(lambda g: seen.__setitem__(key, g))

        return hook

    model.slot.seed.register_forward_hook(capture("seed"))
    model.slot.register_forward_hook(capture("slot"))
    run(model, x)
    assert torch.equal(seen["seed"], seen["slot"])


def test_without_isolation_the_seed_gradient_reaches_the_host():
    model, x, make_seed = host_and_input("transformer")
    run(model, x)
    g0 = host_param_grads(model)
    model.slot.germinate(make_seed(), isolate_gradients=False)
    assert model.slot.isolate_gradients is False
    run(model, x)
    assert not torch.equal(g0["embed.weight"], host_param_grads(model)["embed.weight"])


@pytest.mark.parametrize("topology", ["cnn", "transformer"])
@pytest.mark.parametrize("mode", list(BlendMode))
def test_isolation_per_stage(topology, mode):
    """TRAINING isolates for both topologies (host gradients exactly the no-seed model's); from
    start_blending a transformer co-adapts and a cnn stays isolated, unless told otherwise."""
    model, x, make_seed = host_and_input(topology)
    run(model, x)
    g0 = host_param_grads(model)
    slot = model.slot
    slot.germinate(make_seed(), blend=mode)
    assert slot.isolate_gradients is True
    run(model, x)
    for name, grad in host_param_grads(model).items():
        assert torch.equal(grad, g0[name]), name
    slot.start_blending(4)
    slot.step()
    assert slot.isolate_gradients is (topology == "cnn")
    torch.manual_seed(1)
    seed_state = {k: v.clone() for k, v in slot.seed.state_dict().items()}
    run(model, x)
    default = host_param_grads(model)
    slot.prune()
    slot.germinate(make_seed(), blend=mode)
    slot.seed.load_state_dict(seed_state)
    slot.start_blending(4, isolate_gradients=topology != "cnn")  # the other way round
    slot.step()
    assert slot.isolate_gradients is (topology != "cnn")
    run(model, x)
    other = host_param_grads(model)
    # The same values either way; only whether the seed's gradient reaches the host differs.
    first = "embed.weight" if topology == "transformer" else "stem.weight"
    assert not torch.equal(default[first], other[first])


def test_host_gradients_ignore_a_non_finite_seed_backward_under_isolation():
    model, x, _ = host_and_input("transformer")
    run(model, x)
    g0 = host_param_grads(model)

    class Blowup(nn.Module):
        def forward(self, h):
            return h * torch.tensor(float("inf"))

    model.slot.germinate(Blowup())
    run(model, x)
    for name, grad in host_param_grads(model).items():
        assert torch.equal(grad, g0[name]), name


@pytest.mark.parametrize("topology", ["cnn", "transformer"])
@pytest.mark.parametrize("mode", list(BlendMode))
def test_blend_matches_the_formula(topology, mode):
    model, _, make_seed = host_and_input(topology)
    slot = model.slot
    features = torch.randn(4, 8, 5, 5) if topology == "cnn" else torch.randn(4, 5, 16)
    slot.germinate(make_seed(), blend=mode)
    slot.start_blending(10)
    slot.set_alpha(0.3)
    y = slot(features)
    with torch.no_grad():
        s = slot.seed(features)
        a = 0.3
        if mode is BlendMode.ADD:
            want = torch.lerp(features, s, a)
        elif mode is BlendMode.MULTIPLY:
            want = features * (1 + a * torch.tanh(s - features))
        else:
            e = a * slot.gate(features)
            want = features + e * (s - features)
    torch.testing.assert_close(y, want)
    y.sum().backward()
    assert all(p.grad is not None for p in slot.seed.parameters())
    if mode is BlendMode.GATE:
        assert isinstance(slot.gate, DefaultGate)
        assert all(p.grad is not None for p in slot.gate.parameters())


@pytest.mark.parametrize("curve", ["linear", "sigmoid"])
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_ramp_reaches_exactly_one_after_steps_calls(steps, curve):
    slot = SeedSlot(8, "cnn")
    slot.germinate(nn.Identity())
    slot.start_blending(steps, curve=curve)
    values = [slot.alpha.item()] + [slot.step() for _ in range(steps)]
    assert values[0] == 0.0 and values[-1] == 1.0 and slot.alpha.item() == 1.0
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert all(v < 1.0 for v in values[:-1])
    if curve == "linear":
        assert values == pytest.approx([i / steps for i in range(steps + 1)])
    assert slot.step() == 1.0 and slot.stage is Stage.BLENDING
    slot.fossilize()
    assert slot.stage is Stage.FOSSILIZED and slot.alpha.item() == 1.0


def test_zero_step_ramp_and_fossilize_needs_alpha_one_at_hold():
    slot = SeedSlot(8, "cnn")
    slot.germinate(nn.Identity())
    slot.start_blending(0)
    assert slot.alpha.item() == 1.0 and slot.alpha_mode == "HOLD"
    slot.set_alpha(0.25)
    with pytest.raises(LifecycleError, match="needs alpha 1.0 at HOLD, but alpha is 0.25"):
        slot.fossilize()
    slot.retarget(1.0, 2)
    slot.step()
    with pytest.raises(LifecycleError, match="mode UP"):
        slot.fossilize()
    slot.step()
    slot.fossilize()
    assert slot.alpha.item() == 1.0 and slot.stage is Stage.FOSSILIZED


def test_alpha_is_a_buffer_updated_in_place():
    slot = SeedSlot(8, "cnn")
    buffer = slot.alpha
    slot.germinate(nn.Identity())
    slot.start_blending(4)
    slot.step()
    assert slot.alpha is buffer and slot.alpha.dim() == 0 and "alpha" in dict(slot.named_buffers())


def test_isolation_is_per_stage_or_explicit():
    cnn, tr = SeedSlot(8, "cnn"), SeedSlot(8, "transformer")
    cnn.germinate(nn.Identity())
    tr.germinate(nn.Identity())
    assert cnn.isolate_gradients is True and tr.isolate_gradients is True  # the incubator
    assert bool(cnn.isolating) and bool(tr.isolating)
    cnn.start_blending(3)
    tr.start_blending(3)
    assert cnn.isolate_gradients is True and tr.isolate_gradients is False
    assert bool(cnn.isolating) and not bool(tr.isolating)
    tr.prune()
    tr.germinate(nn.Identity(), isolate_gradients=False)
    assert tr.isolate_gradients is False and not bool(tr.isolating)
    tr.start_blending(2, isolate_gradients=True)
    assert tr.isolate_gradients is True
    with pytest.raises(ValueError, match="isolate_gradients must be True, False or None"):
        SeedSlot(8, "cnn").germinate(nn.Identity(), isolate_gradients=1)
    slot = SeedSlot(8, "cnn")
    slot.germinate(nn.Identity())
    with pytest.raises(ValueError, match="isolate_gradients must be True, False or None"):
        slot.start_blending(3, isolate_gradients="no")


def test_lifecycle_errors_name_the_stage():
    slot = SeedSlot(8, "cnn")
    for call in (
        lambda: slot.start_blending(3),
        slot.step,
        lambda: slot.set_alpha(0.5),
        slot.fossilize,
        slot.prune,
    ):
        with pytest.raises(LifecycleError, match="DORMANT"):
            call()
    slot.germinate(nn.Identity())
    with pytest.raises(LifecycleError, match="prune\\(\\) the current seed first"):
        slot.germinate(nn.Identity())
    slot.start_blending(0)
    slot.fossilize()
    with pytest.raises(LifecycleError, match="FOSSILIZED seed is permanent"):
        slot.prune()
    with pytest.raises(LifecycleError, match="FOSSILIZED seed is permanent"):
        slot.schedule_prune(3)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: SeedSlot(0, "cnn"),
        lambda: SeedSlot(8, "rnn"),
        lambda: SeedSlot(True, "cnn"),
    ],
)
def test_bad_constructor_arguments(bad):
    with pytest.raises(ValueError):
        bad()


def test_bad_lifecycle_arguments():
    slot = SeedSlot(8, "cnn")
    with pytest.raises(ValueError, match="seed must be an nn.Module"):
        slot.germinate(lambda x: x)
    with pytest.raises(ValueError, match="only used with BlendMode.GATE"):
        slot.germinate(nn.Identity(), gate=nn.Identity())
    slot.germinate(nn.Identity())
    for steps in (-1, 2.5, True):
        with pytest.raises(ValueError, match="steps must be an int"):
            slot.start_blending(steps)
    with pytest.raises(ValueError, match="curve must be one of"):
        slot.start_blending(3, curve="tanh")
    for steepness in (0, -1.0, float("inf"), "12"):
        with pytest.raises(ValueError, match="steepness must be a finite number > 0"):
            slot.start_blending(3, curve="sigmoid", steepness=steepness)
    for target in (1.5, -0.1, None):
        with pytest.raises(ValueError, match="target must be a number in"):
            slot.start_blending(3, target=target)
    assert slot.stage is Stage.TRAINING  # nothing half-changed
    slot.start_blending(3)
    for value in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="alpha must be a number in"):
            slot.set_alpha(value)


def test_wrong_channel_count_is_a_clear_error():
    slot = SeedSlot(8, "cnn")
    slot.germinate(nn.Identity())
    with pytest.raises(ValueError, match="expected cnn features with 8 channels in dim 1"):
        slot(torch.randn(2, 6, 4, 4))


@pytest.mark.parametrize("mode", list(BlendMode))
def test_channels_last_is_preserved_in_every_stage(mode):
    model, _, make_seed = host_and_input("cnn")
    model = model.to(memory_format=torch.channels_last)
    features = torch.randn(4, 8, 5, 5).to(memory_format=torch.channels_last)
    slot = model.slot
    outs = [slot(features)]
    slot.germinate(make_seed().to(memory_format=torch.channels_last), blend=mode)
    outs.append(slot(features))
    slot.start_blending(3)
    slot.step()
    outs.append(slot(features))
    slot.set_alpha(1.0)
    slot.fossilize()
    outs.append(slot(features))
    for y in outs:
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_germinate_moves_seed_to_the_slot_device():
    slot = SeedSlot(8, "cnn").to(torch.float64)
    slot.germinate(nn.Conv2d(8, 8, 1))
    assert next(slot.seed.parameters()).device == slot.alpha.device


def test_slot_uses_the_fused_operators(monkeypatch):
    """One operator per blend mode serves TRAINING and BLENDING: the incubate flag it is given
    (the slot's `incubating` buffer) is True in TRAINING and False from BLENDING on."""
    calls = []
    for name in ("ste", "blend_add", "blend_multiply", "blend_multiply_detached", "blend_gate"):
        original = getattr(kernels, name)

        def spy(*a, _n=name, _f=original, **kw):
            calls.append((_n, bool(kw["incubate"])))
            return _f(*a, **kw)

        monkeypatch.setattr(kernels, name, spy)
    features = torch.randn(2, 8, 3, 3)
    for mode in BlendMode:
        slot = SeedSlot(8, "cnn")
        slot.germinate(nn.Conv2d(8, 8, 1), blend=mode)
        slot(features)
        slot.start_blending(2)
        slot(features)
    assert calls == [
        ("blend_add", True),
        ("blend_add", False),
        ("blend_multiply_detached", True),
        ("blend_multiply_detached", False),
        ("blend_gate", True),
        ("blend_gate", False),
    ]


class InplaceReluHost(nn.Module):
    """ResNet style: BatchNorm, the slot, then ReLU(inplace=True)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.slot = SeedSlot(8, "cnn")
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.relu(self.slot(self.norm(self.conv(x)))))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_in_place_consumer_after_the_slot_works_in_every_stage(compiled):
    torch._dynamo.reset()
    model = InplaceReluHost()
    x = torch.randn(2, 3, 6, 6)
    step = torch.compile(model, fullgraph=True, backend="aot_eager") if compiled else model
    baseline = step(x)
    baseline.sum().backward()
    model.slot.germinate(nn.Conv2d(8, 8, 3, padding=1))
    y = step(x)
    assert torch.equal(y, baseline)
    y.sum().backward()
    model.slot.start_blending(2)
    model.slot.step()
    step(x).sum().backward()
    assert all(p.grad is not None for p in model.slot.seed.parameters())


def test_a_scheduled_prune_freezes_the_gate_network_too():
    model, x, make_seed = host_and_input("transformer")
    slot = model.slot
    slot.germinate(make_seed(), blend=BlendMode.GATE)
    slot.start_blending(0)
    slot.schedule_prune(3)
    run(model, x)
    for module in (slot.seed, slot.gate):
        for p in module.parameters():
            assert p.grad is not None and not p.grad.any()
