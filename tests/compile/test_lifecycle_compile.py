"""The lifecycle of esper-lite parity under torch.compile(fullgraph=True), compared with an eager
twin after every transition, with graph counts: isolation switching per stage, retargets,
ramp-downs and a scheduled prune, on several slots in different stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import esper_slot as es
from esper_slot import BlendMode, Stage
from tests.support.slot_models import MultiSlotMlp
from tests.support.twins import CountingBackend, Twins, slots_of

pytestmark = pytest.mark.backend_independent


def test_default_isolation_switch_retarget_and_scheduled_prune_add_no_graph():
    """Three transformer slots (ADD, MULTIPLY, GATE): TRAINING isolated, BLENDING co-adapting,
    a retarget down and up, a scheduled prune of one slot while another ramps. One graph per
    structure and mode: the stage, the isolation switch and every alpha change are buffers."""
    torch.manual_seed(0)
    backend = CountingBackend()
    twins = Twins(
        MultiSlotMlp(n_slots=3, channels=4),
        torch.randn(2, 3, 4),
        lambda m: torch.compile(m, fullgraph=True, backend=backend),
    )
    for i, mode in enumerate([BlendMode.ADD, BlendMode.MULTIPLY, BlendMode.GATE]):
        twins.germinate(i, nn.Sequential(nn.Linear(4, 4), nn.Tanh()), blend=mode)
    twins.check()
    seeded = backend.graphs  # the structure's graphs: train and eval
    assert all(s.isolate_gradients for s in slots_of(twins.eager))

    # Host gradients in TRAINING equal the model's without seeds, exactly (eager twin).
    plain = MultiSlotMlp(n_slots=3, channels=4)
    plain.layers.load_state_dict(twins.eager.layers.state_dict())
    for model in (plain, twins.eager):
        model.zero_grad(set_to_none=True)
        model(twins.x).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), twins.eager.layers.parameters()):
        assert torch.equal(p.grad, q.grad), name

    twins.both(lambda s: [slot.start_blending(3, curve="cosine") for slot in s])
    twins.check()
    assert not any(s.isolate_gradients for s in slots_of(twins.eager))  # co-adapting now
    for _ in range(3):
        twins.both(lambda s: [slot.step() for slot in s])
        twins.check()
    twins.both(lambda s: s[0].retarget(0.4, 2, curve="sigmoid", steepness=6.0))
    twins.both(lambda s: s[1].schedule_prune(2))
    twins.check()
    twins.both(lambda s: [slot.step() for slot in s[:2]])
    twins.check()
    assert slots_of(twins.eager)[1].alpha_mode == "DOWN"
    assert backend.graphs == seeded  # no transition so far compiled anything new
    twins.both(lambda s: [slot.step() for slot in s[:2]])  # slot 1 reaches 0: pruned
    assert [s.stage for s in slots_of(twins.inner)] == [
        Stage.BLENDING,
        Stage.PRUNED,
        Stage.BLENDING,
    ]
    twins.check()
    assert slots_of(twins.eager)[0].alpha.item() == pytest.approx(0.4)
    twins.both(lambda s: s[2].fossilize())
    twins.check()
    records = [s.get_extra_state() for s in slots_of(twins.eager)]
    assert records == [s.get_extra_state() for s in slots_of(twins.inner)]


def test_scheduled_prune_freezes_the_seed_under_compile():
    torch.manual_seed(0)
    twins = Twins(
        MultiSlotMlp(n_slots=2, channels=4),
        torch.randn(2, 3, 4),
        lambda m: torch.compile(m, fullgraph=True, backend="aot_eager"),
    )
    for i in range(2):
        twins.germinate(i, nn.Linear(4, 4), blend=BlendMode.MULTIPLY)
    twins.both(lambda s: [slot.start_blending(0) for slot in s])
    twins.both(lambda s: s[0].schedule_prune(3))
    y = twins.train_step()
    assert y is not None
    for model in (twins.eager, twins.inner):
        frozen, live = slots_of(model)
        assert not frozen.seed.weight.grad.any() and live.seed.weight.grad.any()


def test_ablated_compiled_model_under_esper_slot_compile():
    torch.manual_seed(0)
    model = MultiSlotMlp(n_slots=2, channels=4)
    for slot in model.slots:
        slot.germinate(nn.Linear(4, 4))
        slot.start_blending(0)
    step = es.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 4)
    y = step(x)
    with es.ablated(model):
        ablated = step(x)
    twin = MultiSlotMlp(n_slots=2, channels=4)
    twin.layers.load_state_dict(model.layers.state_dict())
    torch.testing.assert_close(ablated, twin(x), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(step(x), y, rtol=0, atol=0)
