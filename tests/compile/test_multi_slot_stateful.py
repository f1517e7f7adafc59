"""Compiled equals eager for random lifecycles of three slots (hypothesis.stateful).

A machine applies random transitions to a 3-slot host, eager and compiled side by side:
germinate (each blend mode, each isolation choice), start_blending (each curve, target and
isolation choice), step, set_alpha, retarget, schedule_prune, fossilize,
prune and re-germinate. A call that the slot's stage does not allow must raise LifecycleError on
both and change nothing. After every rule, a train step (outputs and every parameter gradient)
and an eval pass must agree. It runs under plain torch.compile (with room for every graph: that
is where a missing guard would show), under esper_slot.compile (default config), and under
esper_slot.compile(regions=SeedSlot) (each slot a region, its graphs specialised per stage)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from torch import nn

import esper_slot
from esper_slot import BlendMode, LifecycleError, SeedSlot
from esper_slot.lifecycle import ALLOWED_FROM
from tests.support.slot_models import MultiSlotMlp
from tests.support.twins import Twins, slots_of, torch_compile

pytestmark = pytest.mark.backend_independent

ACTIONS = (
    "germinate",
    "start_blending",
    "step",
    "set_alpha",
    "retarget",
    "schedule_prune",
    "fossilize",
    "prune",
)


def allows(slot, action: str) -> bool:
    """Whether ``slot`` accepts ``action`` now: its stage, and the alpha controller's state."""
    if slot.stage not in ALLOWED_FROM[action]:
        return False
    if action in ("set_alpha", "retarget", "schedule_prune") and slot.prune_scheduled:
        return False
    if action == "retarget":
        return slot.alpha_mode == "HOLD"
    if action == "fossilize":
        return slot.alpha_mode == "HOLD" and slot.schedule.alpha == 1.0
    return True


class ThreeSlots(RuleBasedStateMachine):
    """Each rule picks a slot whose stage allows its transition (so random walks reach mixed
    stages quickly); refused_call tries one the stage does not allow."""

    compile_fn = None

    def __init__(self):
        super().__init__()
        torch._dynamo.reset()
        self.twins = Twins(
            MultiSlotMlp(n_slots=3, channels=4), torch.randn(2, 3, 4), type(self).compile_fn
        )

    def slots_allowing(self, action: str) -> list[int]:
        return [i for i, slot in enumerate(slots_of(self.twins.eager)) if allows(slot, action)]

    def pick(self, data, action: str) -> int:
        return data.draw(st.sampled_from(self.slots_allowing(action)), label=f"{action} slot")

    def both(self, i: int, action: str, *args) -> None:
        self.twins.both(lambda slots: getattr(slots[i], action)(*args))

    @precondition(lambda self: self.slots_allowing("germinate"))
    @rule(
        data=st.data(),
        mode=st.sampled_from(list(BlendMode)),
        isolate=st.sampled_from([None, True, False]),
    )
    def germinate(self, data, mode, isolate):
        seed = nn.Linear(4, 4)
        self.twins.germinate(
            self.pick(data, "germinate"), seed, blend=mode, isolate_gradients=isolate
        )

    @precondition(lambda self: self.slots_allowing("start_blending"))
    @rule(
        data=st.data(),
        steps=st.integers(0, 3),
        curve=st.sampled_from(["linear", "cosine", "sigmoid"]),
        steepness=st.sampled_from([12.0, 3.0]),
        alpha_target=st.sampled_from([1.0, 0.6]),
        isolate=st.sampled_from([None, True, False]),
    )
    def start_blending(self, data, steps, curve, steepness, alpha_target, isolate):
        self.both(
            self.pick(data, "start_blending"),
            "start_blending",
            steps,
            curve,
            steepness,
            alpha_target,
            isolate,
        )

    @precondition(lambda self: self.slots_allowing("retarget"))
    @rule(data=st.data(), alpha_target=st.sampled_from([0.0, 0.3, 1.0]), steps=st.integers(0, 3))
    def retarget(self, data, alpha_target, steps):
        self.both(self.pick(data, "retarget"), "retarget", alpha_target, steps)

    @precondition(lambda self: self.slots_allowing("schedule_prune"))
    @rule(data=st.data(), steps=st.integers(0, 3))
    def schedule_prune(self, data, steps):
        self.both(self.pick(data, "schedule_prune"), "schedule_prune", steps)

    @precondition(lambda self: self.slots_allowing("step"))
    @rule(data=st.data())
    def step(self, data):
        self.both(self.pick(data, "step"), "step")

    @precondition(lambda self: self.slots_allowing("set_alpha"))
    @rule(data=st.data(), value=st.floats(0, 1))
    def set_alpha(self, data, value):
        self.both(self.pick(data, "set_alpha"), "set_alpha", value)

    @precondition(lambda self: self.slots_allowing("fossilize"))
    @rule(data=st.data())
    def fossilize(self, data):
        self.both(self.pick(data, "fossilize"), "fossilize")

    @precondition(lambda self: self.slots_allowing("prune"))
    @rule(data=st.data())
    def prune(self, data):
        self.both(self.pick(data, "prune"), "prune")

    @rule(i=st.integers(0, 2), action=st.sampled_from(ACTIONS))
    def refused_call(self, i, action):
        """A call the slot's stage does not allow: LifecycleError on both, nothing changed."""
        assume(i not in self.slots_allowing(action))
        args = {
            "germinate": (nn.Identity(),),
            "start_blending": (2,),
            "set_alpha": (0.5,),
            "retarget": (0.5, 2),
            "schedule_prune": (2,),
        }
        for slot in (slots_of(self.twins.eager)[i], slots_of(self.twins.inner)[i]):
            before = slot.get_extra_state()
            with pytest.raises(LifecycleError):
                getattr(slot, action)(*args.get(action, ()))
            assert slot.get_extra_state() == before

    @invariant()
    def compiled_matches_eager(self):
        self.twins.check()
        for a, b in zip(slots_of(self.twins.eager), slots_of(self.twins.inner)):
            assert a.get_extra_state() == b.get_extra_state()


# Dynamo's eager backend: the graphs, guards and recompiles under test are dynamo's, and it
# compiles about three times faster than aot_eager, which buys longer random walks (AOT autograd
# of the same graphs is covered by test_multi_slot.py).
class UnderTorchCompile(ThreeSlots):
    compile_fn = staticmethod(
        lambda m: torch_compile(m, fullgraph=True, backend="eager", recompile_limit=64)
    )


class UnderEsperSlotCompile(ThreeSlots):
    compile_fn = staticmethod(lambda m: esper_slot.compile(m, fullgraph=True, backend="eager"))


class UnderRegions(ThreeSlots):
    """Each slot its own region, with stage graphs: stage changes specialise its graph."""

    compile_fn = staticmethod(
        lambda m: esper_slot.compile(m, regions=SeedSlot, fullgraph=True, backend="eager")
    )


# Each germinate/prune compiles a train and an eval graph (about 0.3 s each here). With the
# forward's identity tests put back (the reported bug), the plain torch.compile machine fails
# within these examples; the esper_slot.compile machine checks the wrapper on fewer walks.
TestUnderTorchCompile = UnderTorchCompile.TestCase
TestUnderTorchCompile.settings = settings(max_examples=6, stateful_step_count=12, deadline=None)
TestUnderEsperSlotCompile = UnderEsperSlotCompile.TestCase
TestUnderEsperSlotCompile.settings = settings(max_examples=3, stateful_step_count=12, deadline=None)
TestUnderRegions = UnderRegions.TestCase
TestUnderRegions.settings = settings(max_examples=3, stateful_step_count=12, deadline=None)
