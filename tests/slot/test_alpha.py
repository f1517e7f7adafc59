"""The alpha controller against a reference of esper-lite's AlphaController formulas written
here, step for step (hypothesis), and through the slot's API."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from esper_slot import LifecycleError, SeedSlot, Stage
from esper_slot.alpha import AlphaSchedule


def reference_progress(t, curve, k):
    t = min(max(t, 0.0), 1.0)
    if curve == "linear":
        return t
    if curve == "cosine":
        return (1 - math.cos(math.pi * t)) / 2
    s = [1 / (1 + math.exp(-k * (u - 0.5))) for u in (t, 0.0, 1.0)]
    return t if s[2] == s[1] else (s[0] - s[1]) / (s[2] - s[1])


def reference_ramp(start, target, steps, curve, k):
    """alpha after each of ``steps`` ticks of a ramp from ``start`` (esper-lite's rules)."""
    if steps == 0 or target == start:
        return []
    up = target > start
    out = []
    for done in range(1, steps + 1):
        if done == steps:
            out.append(target)
            break
        a = min(
            max(start + (target - start) * reference_progress(done / steps, curve, k), 0.0), 1.0
        )
        a = min(max(a, start), target) if up else max(min(a, start), target)
        out.append(a)
    return out


ramps = st.tuples(
    st.floats(0, 1),
    st.integers(0, 40),
    st.sampled_from(["linear", "cosine", "sigmoid"]),
    st.floats(0.5, 30),
)


@settings(max_examples=300, deadline=None)
@given(first=ramps, second=ramps)
def test_schedule_matches_the_reference_through_a_retarget(first, second):
    schedule = AlphaSchedule()
    alpha = 0.0
    for target, steps, curve, k in (first, second):
        schedule.retarget(target, steps, curve, k)
        want = reference_ramp(alpha, target, steps, curve, k)
        got = []
        while schedule.mode != "HOLD":
            schedule.step()
            got.append(schedule.alpha)
        assert len(got) == len(want)
        assert all(abs(a - b) <= 1e-12 for a, b in zip(got, want)), (got, want)
        assert schedule.alpha == target and schedule.mode == "HOLD"
        alpha = target
        assert schedule.step() is False and schedule.alpha == target  # HOLD: no change


def test_retarget_only_from_hold():
    schedule = AlphaSchedule()
    schedule.retarget(1.0, 4)
    with pytest.raises(ValueError, match="only start from HOLD; the ramp is UP at step 0 of 4"):
        schedule.retarget(0.5, 2)


def blending_slot(**kwargs):
    slot = SeedSlot(4, "cnn")
    slot.germinate(nn.Identity())
    slot.start_blending(**kwargs)
    return slot


@pytest.mark.parametrize("curve", ["linear", "cosine", "sigmoid"])
def test_slot_sequence_equals_the_reference(curve):
    slot = blending_slot(steps=7, curve=curve, steepness=5.0, target=0.8)
    assert slot.alpha_mode == "UP" and slot.alpha.item() == 0.0
    got = [slot.step() for _ in range(7)]
    assert got == pytest.approx(reference_ramp(0.0, 0.8, 7, curve, 5.0), abs=1e-12)
    assert slot.alpha_mode == "HOLD" and slot.step() == 0.8
    slot.retarget(0.2, 3)  # keeps the curve and steepness
    assert slot.alpha_mode == "DOWN"
    got = [slot.step() for _ in range(3)]
    assert got == pytest.approx(reference_ramp(0.8, 0.2, 3, curve, 5.0), abs=1e-12)
    # The buffer follows in float32.
    assert slot.alpha.item() == pytest.approx(0.2, abs=1e-7)


def test_retarget_mid_ramp_is_a_lifecycle_error_that_changes_nothing():
    slot = blending_slot(steps=5)
    slot.step()
    before = slot.get_extra_state()
    with pytest.raises(LifecycleError, match="HOLD.*UP at step 1 of 5"):
        slot.retarget(0.5, 2)
    assert slot.get_extra_state() == before
    slot.set_alpha(1.0)  # HOLD again
    with pytest.raises(ValueError, match="steps must be an int"):
        slot.retarget(0.5, -1)


def test_schedule_prune_ramps_down_with_the_seed_frozen_then_prunes():
    import torch

    slot = blending_slot(steps=2)
    slot.step()
    slot.schedule_prune(3, curve="cosine")
    assert slot.prune_scheduled and slot.alpha_mode == "DOWN" and bool(slot.seed_frozen)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    conv = nn.Conv2d(4, 4, 1)
    slot.prune()  # start again with a seed that has parameters
    slot.germinate(conv)
    slot.start_blending(0)
    slot.schedule_prune(3)
    values = []
    for _ in range(2):
        y = slot(x)
        y.sum().backward()
        assert conv.weight.grad is not None and not conv.weight.grad.any()  # zero, frozen
        conv.weight.grad = None
        values.append(slot.step())
    assert values == pytest.approx(reference_ramp(1.0, 0.0, 3, "linear", 12.0)[:2])
    with pytest.raises(LifecycleError, match="a prune is scheduled"):
        slot.set_alpha(0.5)
    with pytest.raises(LifecycleError, match="needs alpha 1.0 at HOLD"):
        slot.fossilize()
    assert slot.step() == 0.0 and slot.stage is Stage.PRUNED and not slot.has_seed
    assert not bool(slot.seed_frozen) and not slot.prune_scheduled
    assert torch.equal(slot(x), x)


def test_schedule_prune_at_alpha_zero_prunes_at_once():
    slot = blending_slot(steps=3, target=0.0)
    assert slot.alpha_mode == "HOLD" and slot.alpha.item() == 0.0
    slot.schedule_prune(5)
    assert slot.stage is Stage.PRUNED


def test_huge_steepness_does_not_overflow():
    slot = blending_slot(steps=10, curve="sigmoid", steepness=1500.0)
    values = [slot.step() for _ in range(10)]
    assert all(0.0 <= v <= 1.0 for v in values) and values[-1] == 1.0
    assert values == sorted(values)


def test_schedule_prune_needs_a_curve_and_uses_esper_lites_steepness():
    slot = blending_slot(steps=0, curve="sigmoid", steepness=3.0)
    with pytest.raises(ValueError, match="curve must be one of"):
        slot.schedule_prune(4, curve=None)
    slot.schedule_prune(4, curve="sigmoid")
    assert slot.schedule.steepness == 12.0
    assert [slot.step() for _ in range(3)] == pytest.approx(
        reference_ramp(1.0, 0.0, 4, "sigmoid", 12.0)[:3], abs=1e-12
    )


@pytest.mark.parametrize(
    "transition", ["start_blending", "fossilize", "schedule_prune", "prune_after", "step"]
)
@pytest.mark.parametrize("topology", ["cnn", "transformer"])
def test_a_transition_between_forward_and_backward(topology, transition):
    """Backward uses the flags its forward ran with, whatever lifecycle call came between."""
    import torch

    slot = SeedSlot(4, topology)
    seed = nn.Linear(4, 4) if topology == "transformer" else nn.Conv2d(4, 4, 1)
    slot.germinate(seed)
    if transition in ("fossilize", "schedule_prune"):
        slot.start_blending(0)
    if transition == "step":
        slot.start_blending(2)
        slot.step()  # alpha 0.5 for this forward
    x = torch.randn(2, 3, 4) if topology == "transformer" else torch.randn(2, 4, 3, 3)
    x.requires_grad_()
    y = slot(x)
    if transition == "start_blending":
        slot.start_blending(3)
    elif transition == "fossilize":
        slot.fossilize()
    elif transition == "schedule_prune":
        slot.schedule_prune(3)
    elif transition == "step":
        slot.step()  # alpha 1.0 now; backward must use the forward's 0.5
    else:
        slot.start_blending(0)
    y.sum().backward()
    assert seed.weight.grad is not None and seed.weight.grad.abs().sum() > 0
    if transition == "step" and topology == "cnn":  # isolated: dL/dx = 1 - alpha exactly
        assert torch.equal(x.grad, torch.full_like(x, 0.5))
