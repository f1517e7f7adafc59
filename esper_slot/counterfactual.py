"""Counterfactual passes over a whole model: what does each seed contribute?

``with esper_slot.ablated(model, "block1.slot"):`` runs the model with the named slots' alpha
forced to 0 (every slot when none is named), as esper-lite's controller evaluates a seed's
contribution: metric(model) - metric(model with the slot ablated). Per-slot overrides with other
values, or per-sample alphas for several configurations in one batch, are
``SeedSlot.alpha_overridden``.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from torch import nn

from .discovery import named_slots


@contextmanager
def ablated(model: nn.Module, *names: str):
    """Force alpha 0 on the slots named (display names, as check_grad_flow reports them; all
    slots when none) for the duration of the block. Unknown names raise ValueError before
    anything changes. Entering and leaving never recompiles a compiled model once seen."""
    slots = dict(named_slots(model, display=True))
    unknown = [n for n in names if n not in slots]
    if unknown:
        raise ValueError(f"no SeedSlot named {unknown} in the model; its slots: {sorted(slots)}")
    chosen = [slots[n] for n in dict.fromkeys(names)] if names else list(slots.values())
    with ExitStack() as stack:
        for slot in chosen:
            stack.enter_context(slot.alpha_overridden(0.0))
        yield model
