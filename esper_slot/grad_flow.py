"""Always-on grad-flow status: can gradients reach a seed's trainable parameters? (B3-DRL-16)

Recording happens inside the slot's forward and must stay compile-safe: no graph break, no
host-device sync, no logging. Whether gradients can flow is known from metadata at trace time
(grad mode, the seed features' requires_grad, the seed parameters' requires_grad, all of which
torch.compile guards on), so the forward only applies a precomputed in-place update to a small
int64 buffer: [forward passes, blocked passes, reason bits of the last pass].

Reading happens outside the compiled region (``GradFlowProbe.status`` or the model-wide helpers
``check_grad_flow`` / ``GradFlowMonitor``): one device-to-host read, and at most ONE warning per
slot per blocked episode on the logger "esper_slot". An episode ends when a later pass is healthy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .discovery import named_slots

# The package logger by name (not __name__): users configure logging.getLogger("esper_slot").
logger = logging.getLogger("esper_slot")

GRAD_DISABLED = 1  # the forward ran under torch.no_grad / inference_mode in train mode
FEATURES_NO_GRAD = 2  # the seed's output did not require grad
NO_TRAINABLE_PARAMS = 4  # no seed parameter requires grad

CAUSES = {
    GRAD_DISABLED: "the forward ran with gradients disabled (torch.no_grad or inference_mode) "
    "while the model was in train mode",
    FEATURES_NO_GRAD: "the seed's output did not require grad",
    NO_TRAINABLE_PARAMS: "no seed parameter requires grad: the seed's parameters are frozen "
    "(requires_grad=False), e.g. by a freeze() call or a checkpoint that restored them frozen",
}


@dataclass(frozen=True)
class GradFlowStatus:
    """What a slot's forward passes recorded.

    ok: False when the stage trains the seed and the most recent recorded forward pass could not
        send gradients to any seed parameter.
    expected: the stage trains the seed (TRAINING, BLENDING, FOSSILIZED), so gradients should flow.
    blocked_steps: train-mode forward passes since germination where they could not.
    """

    ok: bool
    expected: bool
    blocked_steps: int
    forward_passes: int = 0
    slot: str = ""
    stage: str = ""
    causes: tuple[str, ...] = field(default_factory=tuple)
    # Train-mode forward passes since germination whose seed output held NaN or Inf (the STE
    # hides them in TRAINING); logged once per episode (esper_slot.telemetry.SeedOutputProbe).
    seed_output_non_finite: int = 0


class GradFlowProbe(nn.Module):
    """Buffers and logic of one slot's grad-flow status. Its buffers are not saved in
    state_dicts: they describe this run, not the model."""

    _KEEP = (1, 1, 0)  # passes and blocked accumulate; the last pass's reasons are replaced
    counts: Tensor
    keep: Tensor
    deltas: Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("counts", torch.zeros(3, dtype=torch.int64), persistent=False)
        self.register_buffer("keep", torch.tensor(self._KEEP, dtype=torch.int64), persistent=False)
        # Row r: the update for reason bits r (0 = healthy).
        deltas = [[1, int(r != 0), r] for r in range(8)]
        self.register_buffer("deltas", torch.tensor(deltas, dtype=torch.int64), persistent=False)
        self._warned = False  # a warning was logged for the current blocked episode

    def record(self, seed_features: Tensor, seed: nn.Module) -> None:
        """Called in forward, train mode only. Every branch is decided from metadata at trace
        time; the device sees two tiny in-place ops and no sync."""
        reasons = 0
        if not torch.is_grad_enabled():
            reasons |= GRAD_DISABLED
        if not seed_features.requires_grad:
            reasons |= FEATURES_NO_GRAD
        if not any(p.requires_grad for p in seed.parameters()):
            reasons |= NO_TRAINABLE_PARAMS
        with torch.no_grad():
            self.counts.mul_(self.keep).add_(self.deltas[reasons])

    def reset(self) -> None:
        with torch.no_grad():
            self.counts.zero_()
        self._warned = False

    def status(self, slot: str, stage: str, expected: bool, counts=None,
               log: bool = True) -> GradFlowStatus:
        """Read the buffers (one sync, or none when ``counts`` were read in a batch), update the
        episode and log its one warning (when ``log``: e.g. only on rank 0)."""
        passes, blocked, last = self.counts.tolist() if counts is None else counts
        ok = not (expected and last != 0)
        causes = tuple(text for bit, text in CAUSES.items() if last & bit) if not ok else ()
        if ok:
            self._warned = False
        elif not self._warned:
            self._warned = True
            if log:
                logger.warning(
                    "slot %r (%s): gradients cannot reach the seed's parameters; %d of %d "
                    "train-mode forward passes since germination were blocked. Likely causes: "
                    "%s. Fix the cause (e.g. set requires_grad=True on the seed's parameters, or "
                    "run training forwards with grad enabled); this warning repeats only if flow "
                    "is blocked again after recovering.",
                    slot, stage, blocked, passes, "; ".join(causes),
                )
        return GradFlowStatus(ok=ok, expected=expected, blocked_steps=blocked,
                              forward_passes=passes, slot=slot, stage=stage, causes=causes)


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
        stacked = torch.stack([
            torch.cat([slots[i][1].grad_flow.counts, slots[i][1].seed_output.count])
            for i in indices]).tolist()
        for i, row in zip(indices, stacked):
            counts[i] = row
    return {name: slot.check_grad_flow(name=name, _counts=row)
            for (name, slot), row in zip(slots, counts)}


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
