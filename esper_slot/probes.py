"""The slot's in-forward recorders: whether gradients can reach the seed (GradFlowProbe) and
whether the seed's output held NaN or Inf (SeedOutputProbe).

Both record inside the slot's forward and must stay compile-safe: no graph break, no host-device
sync, no logging; each applies a small in-place update to a buffer. Reading happens outside the
compiled region (grad_flow.check_grad_flow, GradFlowMonitor, GradientTelemetry.read): one
device-to-host read, and at most ONE warning per slot per episode on the "esper_slot" logger.
Their buffers describe this run, not the model: they are not saved in state_dicts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

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

    def status(
        self, slot: str, stage: str, expected: bool, counts=None, log: bool = True
    ) -> GradFlowStatus:
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
                    slot,
                    stage,
                    blocked,
                    passes,
                    "; ".join(causes),
                )
        return GradFlowStatus(
            ok=ok,
            expected=expected,
            blocked_steps=blocked,
            forward_passes=passes,
            slot=slot,
            stage=stage,
            causes=causes,
        )


class SeedOutputProbe(nn.Module):
    """How many train-mode forward passes saw a NaN or Inf in the seed's output, recorded in
    forward without a sync or a graph break: one min/max reduction over the seed's output (NaN
    propagates through it) and an in-place add to an int64 [1] buffer. ``seed_id`` changes
    whenever the slot's seed does, so readers can tell one seed's numbers from the next one's.
    Not saved in state_dicts."""

    count: Tensor
    seed_id: Tensor

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(1, dtype=torch.int64), persistent=False)
        self.register_buffer("seed_id", torch.zeros(1, dtype=torch.int64), persistent=False)
        self._reported = 0  # the count at the last check
        self._passes = 0  # the slot's forward passes at the last check
        self._warned = False  # warned in this episode (it ends after clean passes)
        self._baseline = 0  # the count at GradientTelemetry's last reset

    def record(self, seed_output: Tensor) -> None:
        # min and max propagate NaN and hold any Inf: one fused reduction (linalg.vector_norm
        # with ord=inf is ~20x slower on a CPU, and Inductor does not fuse it).
        if seed_output.numel() == 0:
            return
        low, high = torch.aminmax(seed_output.detach())
        if seed_output.is_cpu and not torch.compiler.is_compiling():  # reading is free here
            if not (math.isfinite(low.item()) and math.isfinite(high.item())):
                with torch.no_grad():
                    self.count.add_(1)
            return
        with torch.no_grad():
            self.count.add_(~(torch.isfinite(low) & torch.isfinite(high)))

    def new_seed(self, seed_id: int) -> None:
        """The slot's seed changed (germinate, prune, a checkpoint load): start afresh."""
        self.reset()
        with torch.no_grad():
            self.seed_id.fill_(seed_id)

    def reset(self) -> None:
        with torch.no_grad():
            self.count.zero_()
        self._reported, self._passes, self._warned, self._baseline = 0, 0, False, 0

    def check(self, slot: str, count: int, passes: int, log: bool = True) -> int:
        """Episode bookkeeping for a read ``count`` (and the slot's train-mode forward
        ``passes``, from its grad-flow counters): ONE warning on the "esper_slot" logger when
        new non-finite passes appear, none again until a check that follows clean passes."""
        if count > self._reported:
            if not self._warned and log:
                logger.warning(
                    "slot %r: the seed's output held NaN or Inf in %d forward pass(es) (%d in "
                    "all since germination). In TRAINING the host output hides it; blending "
                    "would pass it on. Check the seed (initialisation, learning rate, a division "
                    "or log inside it); this warning repeats only after clean passes.",
                    slot,
                    count - self._reported,
                    count,
                )
            self._warned = True
        elif passes > self._passes:  # passes ran since the last check, all of them clean
            self._warned = False
        self._reported, self._passes = count, passes
        return count
