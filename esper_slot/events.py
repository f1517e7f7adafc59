"""Lifecycle events: what happened to which slot, delivered to subscribers on the host.

    events = esper_slot.LifecycleEvents(model)     # names the model's slots, hears all of them
    events.subscribe(esper_slot.log_events)         # the shipped logging subscriber
    events.subscribe(lambda e: writer.add_text("lifecycle", str(e), e.step or 0))  # TensorBoard
    events.step = global_step                       # optional: stamped on each event

A slot emits events from its lifecycle methods (germinate, start_blending, fossilize, prune, a
scheduled prune's end, an embargo's cooldown steps) and the quality gates' ``advance`` emits
"gate_evaluated". All of that runs on the host, outside any compiled graph: forward never emits,
so events cost no graph break and no recompile. A subscriber that raises is logged (with its
traceback, on the "esper_slot.events" logger) and the others still run; training never breaks.

Kinds, in the order one call emits them (esper-lite's SEED_* telemetry events):
    germinated       germinate: DORMANT/PRUNED -> TRAINING (no stage_changed, as esper-lite)
    stage_changed    every other stage change, the cooldown's included
    gate_evaluated   esper_slot.gates.advance, before the transition it allows
    fossilized       after the stage_changed into FOSSILIZED
    pruned           after the stage_changed into PRUNED, with the prune's reason and initiator
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .discovery import named_slots

logger = logging.getLogger(__name__)

KINDS = ("germinated", "stage_changed", "gate_evaluated", "fossilized", "pruned")


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle event.

    kind: one of KINDS. slot: the slot's qualified name in the model. from_stage, to_stage: stage
    names (to_stage: the stage the event leaves the slot in; None for gate_evaluated, whose
    from_stage is the slot's stage and whose target is ``gate.target``). alpha: the slot's alpha
    after the event. epoch: the seed's epochs so far (``slot.metrics.epochs_total``); step: the
    subscriber hub's ``step`` when the event was emitted (None unless set). blueprint: the seed's
    factory or blueprint name (None for a module given directly or no seed). gate: the GateResult
    of a gate_evaluated event. reason, initiator: a prune's (initiator "user" unless the caller
    says; "schedule" for the end of a scheduled prune). improvement: the seed's accuracy change
    since germination (``metrics.total_improvement``); contribution: its latest counterfactual
    contribution (None: never measured).
    """

    kind: str
    slot: str
    from_stage: str | None
    to_stage: str | None
    alpha: float
    epoch: int
    step: int | None = None
    blueprint: str | None = None
    gate: Any = None
    reason: str | None = None
    initiator: str | None = None
    improvement: float = 0.0
    contribution: float | None = None


Subscriber = Callable[[LifecycleEvent], Any]

# slot -> the hubs listening to it (weakly: a hub that is dropped stops listening)
_HUBS: weakref.WeakKeyDictionary[nn.Module, list[weakref.ref[LifecycleEvents]]] = (
    weakref.WeakKeyDictionary()
)


def emit(slot: nn.Module, kind: str, **fields: Any) -> None:
    """Deliver one event of ``slot`` to every hub that listens to it (a no-op without one)."""
    refs = _HUBS.get(slot)
    if not refs:
        return
    for ref in list(refs):
        hub = ref()
        if hub is None:
            refs.remove(ref)
        else:
            hub._deliver(slot, kind, fields)


class LifecycleEvents:
    """The events of every SeedSlot in ``model`` (its slots when it is made; call ``watch``
    again after adding slots); it also gives each unnamed slot its qualified name
    (``slot.name``). Subscribers get each LifecycleEvent in order; ``step`` is stamped on each
    event."""

    def __init__(self, model: nn.Module):
        self.step: int | None = None
        self._subscribers: list[Subscriber] = []
        self._names: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
        self.watch(model)

    def watch(self, model: nn.Module) -> None:
        for name, slot in named_slots(model, display=True):
            if slot not in self._names:
                _HUBS.setdefault(slot, []).append(weakref.ref(self))
            self._names[slot] = name
            if not slot.name:  # the slot's own label (errors, gates' seed_id) if it has none
                slot.name = name

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber(event)``; returns a function that removes it again."""
        if not callable(subscriber):
            raise ValueError(f"a subscriber must be callable, got {type(subscriber).__name__}")
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def _deliver(self, slot: nn.Module, kind: str, fields: dict) -> None:
        event = LifecycleEvent(kind=kind, slot=self._names.get(slot, "?"), step=self.step, **fields)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # never let a subscriber break training
                logger.exception(
                    "lifecycle event subscriber %r failed on %s of slot %r",
                    subscriber,
                    kind,
                    event.slot,
                )


def log_events(event: LifecycleEvent) -> None:
    """A subscriber that logs each event at INFO on the "esper_slot.events" logger."""
    change = (
        f"{event.from_stage} -> {event.to_stage}"
        if event.to_stage is not None
        else f"gate {event.gate.gate} for {event.gate.target}: "
        f"{'passed' if event.gate.passed else 'failed'} "
        f"{list(event.gate.checks_failed)}"
        if event.gate is not None
        else ""
    )
    extra = f" ({event.reason}, by {event.initiator})" if event.kind == "pruned" else ""
    logger.info(
        "slot %r %s: %s%s, alpha %.3f, epoch %d%s",
        event.slot,
        event.kind,
        change,
        extra,
        event.alpha,
        event.epoch,
        "" if event.step is None else f", step {event.step}",
    )
