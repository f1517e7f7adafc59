"""Optimizer upkeep: keep an optimizer in step with germinate and prune.

    upkeep = esper_slot.OptimizerUpkeep(opt, model, lr=1e-3, weight_decay=0.0)
    model.slots[0].germinate("lora")   # its seed's parameters enter opt as a group of their own
    model.slots[0].prune()             # ... and leave it again, with their optimizer state

On a germinate, the seed's (and a GATE slot's gate network's) trainable parameters become one
new param group with the settings given here (the optimizer's defaults for the rest). On a
prune, that group leaves the optimizer together with every state tensor of its parameters
(Adam's moments, momentum buffers): no memory is kept for dead parameters, and weight decay never
touches them again. It listens to the slots' lifecycle events (esper_slot.LifecycleEvents), so it
works for every optimizer that keeps its state in ``optimizer.state`` keyed by parameter (SGD,
Adam, AdamW; foreach and fused), and through ``esper_slot.distributed.rewrap`` (which keeps the
parameters themselves). Seeds already germinated when it is made, and not yet in the optimizer,
get their groups at once.

Learning-rate schedulers keep one entry per group (``base_lrs``): build a scheduler after the
groups change, or use one that reads the groups each step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .discovery import named_slots
from .events import LifecycleEvent, LifecycleEvents


class OptimizerUpkeep:
    """Adds a param group per germinated seed and removes it, with its state, on prune.

    optimizer: any torch.optim.Optimizer. model: the model holding the slots (or the events
    hub's model). group_settings: the new groups' hyperparameters (lr, weight_decay, betas,
    ...), each a key the optimizer's param groups take. ``events``: an existing
    LifecycleEvents hub to listen to (else one is made for ``model``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: nn.Module,
        *,
        events: LifecycleEvents | None = None,
        **group_settings: Any,
    ):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        unknown = sorted(set(group_settings) - set(optimizer.defaults))
        if unknown:
            raise ValueError(
                f"{type(optimizer).__name__} param groups take no {unknown}; "
                f"they take {sorted(optimizer.defaults)}"
            )
        self.optimizer = optimizer
        self.settings = dict(group_settings)
        self._slots = dict(named_slots(model, display=True))
        self._groups: dict[str, dict] = {}  # slot name -> its seed's param group
        self.events = events if events is not None else LifecycleEvents(model)
        self._unsubscribe = self.events.subscribe(self._on_event)
        known = {id(p) for g in optimizer.param_groups for p in g["params"]}
        for name, slot in self._slots.items():
            params = _trainable(slot)
            if params and not any(id(p) in known for p in params):
                self._add(name, params)

    def close(self) -> None:
        """Stop following the slots (the groups stay as they are)."""
        self._unsubscribe()

    def group_of(self, slot_name: str) -> dict | None:
        """The param group this upkeep added for the slot's current seed (None: none)."""
        return self._groups.get(slot_name)

    def _on_event(self, event: LifecycleEvent) -> None:
        if event.kind == "germinated":
            self._remove(event.slot)  # a seed germinated before a prune this never heard
            slot = self._slots.get(event.slot)
            params = _trainable(slot) if slot is not None else []
            if params:
                self._add(event.slot, params)
        elif event.kind == "pruned":
            self._remove(event.slot)

    def _add(self, name: str, params: list[nn.Parameter]) -> None:
        self.optimizer.add_param_group({"params": params, **self.settings})
        self._groups[name] = self.optimizer.param_groups[-1]

    def _remove(self, name: str) -> None:
        group = self._groups.pop(name, None)
        if group is None:
            return
        self.optimizer.param_groups[:] = [g for g in self.optimizer.param_groups if g is not group]
        for p in group["params"]:
            self.optimizer.state.pop(p, None)


def _trainable(slot) -> list[nn.Parameter]:
    modules = [m for m in (slot.seed, slot.gate) if m is not None]
    return [p for m in modules for p in m.parameters() if p.requires_grad]
