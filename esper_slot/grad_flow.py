"""Always-on grad-flow status, model-wide: can gradients reach each seed's trainable parameters?

Each slot records in forward (probes.GradFlowProbe: whether gradients can flow is known from
metadata at trace time, so forward applies a precomputed in-place update to a small int64
buffer: [forward passes, blocked passes, reason bits of the last pass]). Here they are read
outside the compiled region (``check_grad_flow`` / ``GradFlowMonitor``): one device-to-host read
per device, and at most ONE warning per slot per blocked episode on the logger "esper_slot". An
episode ends when a later pass is healthy.
"""

from __future__ import annotations

import torch
from torch import nn

from .discovery import named_slots
from .probes import (  # noqa: F401  (re-exported: the status and its causes)
    CAUSES,
    FEATURES_NO_GRAD,
    GRAD_DISABLED,
    NO_TRAINABLE_PARAMS,
    GradFlowProbe,
    GradFlowStatus,
)


def check_grad_flow(model: nn.Module) -> dict[str, GradFlowStatus]:
    """Grad-flow status of every SeedSlot in ``model`` (compiled or not), by qualified name.

    Reads all slots' buffers with one device-to-host transfer per device; call it outside the
    compiled step (e.g. every N steps, or use GradFlowMonitor). Each status also carries the
    count of forward passes whose seed output was non-finite."""
    slots = named_slots(model, display=True)
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, slot) in enumerate(slots):
        by_device.setdefault(slot.grad_flow.counts.device, []).append(i)
    counts: list = [None] * len(slots)
    for indices in by_device.values():
        stacked = torch.stack(
            [
                torch.cat([slots[i][1].grad_flow.counts, slots[i][1].seed_output.count])
                for i in indices
            ]
        ).tolist()
        for i, row in zip(indices, stacked):
            counts[i] = row
    return {
        name: slot.check_grad_flow(name=name, _counts=row)
        for (name, slot), row in zip(slots, counts)
    }


class GradFlowMonitor:
    """Run check_grad_flow(model) every ``every`` calls of ``step()``; the cheap way to keep the
    check on in a training loop. ``step()`` returns the statuses when it checked, else None."""

    def __init__(self, model: nn.Module, every: int = 100):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.model, self.every, self._calls = model, every, 0

    def step(self) -> dict[str, GradFlowStatus] | None:
        self._calls += 1
        if self._calls % self.every:
            return None
        return check_grad_flow(self.model)
