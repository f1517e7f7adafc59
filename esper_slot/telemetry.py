"""Per-slot gradient telemetry for a lifecycle controller, accumulated on the device.

    telemetry = esper_slot.GradientTelemetry(model)        # once
    loss.backward(); telemetry.collect(); opt.step()        # every step (or inside a compiled step)
    stats = telemetry.read()                                # e.g. once per epoch: one transfer

What a controller reads per slot (esper-lite's G2 gate and health signals, ``SlotGradientStats``):
the RMS over collected steps of the seed's, its gate's and the host's gradient L2 norm, their
parameter counts, esper-lite's seed-to-host ratio, counts of vanishing, exploding and non-finite
parameter gradients, a health score, and how many forward passes saw a non-finite seed output.

The norms (norms.py) are precise without copies: each gradient's norm scaled by its max-abs
value, accumulated across steps as BLAS-style (scale, sum of squares) pairs, so norms from 1e-30
to 1e30 neither overflow nor underflow in float32.

torch.compile: collect() has no ``.item()`` and no graph break. Every accumulator is a float32 or
int64 tensor with at least one dimension, never a 0-d float64 one (torch.compile silently drops
in-place updates of those on a CPU). ``every`` is counted in a tensor, so it never recompiles.

This module sits below the slot: it finds slots through ``discovery`` and never imports the slot
module. The slot's in-forward recorders (grad flow, seed output) are in probes.py; one collected
step's accumulation is in telemetry_step.py.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .discovery import named_slots
from .telemetry_step import (
    EXPLODING,
    GATE,
    HOST,
    NON_FINITE,
    SEED,
    SEED_TENSORS,
    STEPS,
    VANISHING,
    collect_step,
    collect_step_cpu,
    compiled_collect_step,
)

logger = logging.getLogger("esper_slot")

DEFAULT_VANISHING = 1e-7  # esper-lite's vanishing threshold (per parameter-gradient norm)
# esper-lite's exploding threshold at 2016337e (simic/telemetry/gradient_collector.py):
# 10 x DEFAULT_TRAINING_MAX_GRAD_NORM, its gradient clip norm of 1.0. (5.0 was an older comment
# of its; the code then multiplied a clip norm of 5.0, i.e. 50.)
DEFAULT_EXPLODING = 10.0
RATIO_EPS = 1e-8  # esper-lite's epsilon in the seed/host ratio


@dataclass(frozen=True)
class SlotGradientStats:
    """One slot's gradient statistics over the steps collected since the last reset.

    seed_grad_norm, gate_grad_norm, host_grad_norm: sqrt(mean over collected steps of the squared
        L2 norm of that group's gradients that step), i.e. the RMS of the per-step norms.
        Non-finite parameter gradients are left out of the norms and counted in ``non_finite``.
    seed_param_count, gate_param_count, host_param_count: elements of the parameters whose
        gradients were collected (at the latest collected step).
    steps: collected steps (since the last reset, or since the slot's seed changed).
    ratio: esper-lite's G2 ratio, (seed_norm / sqrt(n_seed)) / (host_norm / sqrt(n_host) + 1e-8),
        0.0 when either norm is below 1e-8 or either count is 0.
    vanishing, exploding: seed parameter gradients (tensor x step) whose norm was below the
        vanishing threshold, or above the exploding threshold or non-finite.
    non_finite: seed and gate parameter gradients (tensor x step) holding NaN or Inf.
    seed_output_non_finite: train-mode forward passes whose seed output held NaN or Inf.
    health: esper-lite's score, 1 - 0.5 v - 0.8 e clamped to [0, 1], with v and e the vanishing
        and exploding fractions of the seed's collected parameter gradients; 1.0 with none
        collected, and 0.0 whenever the seed's output was non-finite.
    """

    slot: str
    stage: str
    seed_grad_norm: float
    gate_grad_norm: float
    host_grad_norm: float
    seed_param_count: int
    gate_param_count: int
    host_param_count: int
    steps: int
    ratio: float
    vanishing: int
    exploding: int
    non_finite: int
    seed_output_non_finite: int
    health: float


def esper_lite_ratio(seed_norm: float, n_seed: int, host_norm: float, n_host: int) -> float:
    """esper-lite's ``DualGradientStats.normalized_ratio``."""
    if host_norm < RATIO_EPS or seed_norm < RATIO_EPS or n_host == 0 or n_seed == 0:
        return 0.0
    return (seed_norm / math.sqrt(n_seed)) / (host_norm / math.sqrt(n_host) + RATIO_EPS)


# ---- the user-facing collector ----


class GradientTelemetry:
    """Per-slot gradient statistics, accumulated on the device with no host sync.

    Args:
        model: the model holding the slots (compiled or not).
        host_params: the host's parameters; default: every parameter of ``model`` that belongs
            to no slot's seed or gate (recomputed when a slot's seed changes).
        every: collect() does its work on every ``every``-th call only (counted in a tensor).
        vanishing, exploding: per-parameter gradient-norm thresholds (esper-lite's defaults).
        compile: how an eager collect() runs its math: True through an internal torch.compile
            (fused: two reads of each gradient, nothing written; seconds of compile per model
            structure), False eagerly over bounded chunks (a few small ops per gradient, a
            256 KB scratch). None (default): True on a GPU, False on a CPU. Either way no
            gradient is copied whole, and the numbers agree to ~1e-6.

    Call collect() after backward and before the optimizer step (and before zero_grad), eagerly
    or inside a torch.compile(fullgraph=True) training step. A slot whose seed changes
    (germinate, prune, a checkpoint load) starts its statistics afresh at its next collected
    step; read() returns every slot of the model, seeded or not.
    """

    def __init__(
        self,
        model: nn.Module,
        host_params=None,
        every: int = 1,
        vanishing: float = DEFAULT_VANISHING,
        exploding: float = DEFAULT_EXPLODING,
        compile: bool | None = None,
    ):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        for name, value in (("vanishing", vanishing), ("exploding", exploding)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if vanishing >= exploding:
            raise ValueError(f"vanishing ({vanishing}) must be below exploding ({exploding})")
        self.model = model
        self.slots = named_slots(model, display=True)
        if not self.slots:
            raise ValueError("the model has no SeedSlot: there is nothing to collect for")
        self.every, self.vanishing, self.exploding = every, float(vanishing), float(exploding)
        if compile is not None and not isinstance(compile, bool):
            raise ValueError(f"compile must be True, False or None, got {compile!r}")
        self._host_params = None if host_params is None else list(host_params)
        if self._host_params is not None and not all(
            isinstance(p, Tensor) for p in self._host_params
        ):
            raise ValueError("host_params must be an iterable of parameters (tensors)")
        device = next((b.device for _, s in self.slots for b in s.buffers()), torch.device("cpu"))
        n = len(self.slots)
        self.state = {
            "scale": torch.zeros(n, 3, device=device),
            "ssq": torch.zeros(n, 3, device=device),
            "counts": torch.zeros(n, 5, dtype=torch.int64, device=device),
            "numel": torch.zeros(n, 3, dtype=torch.int64, device=device),
            "seen": torch.zeros(n, dtype=torch.int64, device=device),
        }
        self.compile = device.type != "cpu" if compile is None else compile
        self.calls = torch.zeros(1, dtype=torch.int64, device=device)
        self._eager_calls = 0  # mirrors self.calls for eager calls (resynchronised by read())
        self._cache_key: tuple[int, ...] | None = None
        self._groups: tuple[list[list[Tensor]], list[list[Tensor]], list[Tensor]] | None = None

    # ---- collection ----

    def _param_groups(self, compiling: bool):
        """(seed params per slot, gate params per slot, host params), cached per structure in
        eager calls. Traced, the walk runs once per graph (and a cache write would be a side
        effect that costs a recompile)."""
        key = None if compiling else tuple(slot.generation for _, slot in self.slots)
        if compiling or key != self._cache_key or self._groups is None:
            seeds: list[list[Tensor]] = [
                list(slot.seed.parameters()) if slot.seed is not None else []
                for _, slot in self.slots
            ]
            gates: list[list[Tensor]] = [
                list(slot.gate.parameters()) if slot.gate is not None else []
                for _, slot in self.slots
            ]
            if self._host_params is not None:
                host = self._host_params
            else:
                owned = {id(p) for group in seeds + gates for p in group}
                host = [p for p in self.model.parameters() if id(p) not in owned]
            if compiling:
                return seeds, gates, host
            self._groups, self._cache_key = (seeds, gates, host), key
        return self._groups

    def collect(self) -> None:
        """Accumulate this step's gradients (every ``every``-th call). No sync, no graph
        break; inside a compiled step it is traced into the step's graph."""
        compiling = torch.compiler.is_compiling()
        with torch.no_grad():
            self.calls.add_(1)
        take = None
        if compiling:
            if self.every > 1:
                take = self.calls % self.every == 0
        else:
            self._eager_calls += 1
            if self._eager_calls % self.every:
                return
        seeds, gates, host = self._param_groups(compiling)
        args = (
            self.state,
            [[p.grad for p in group if p.grad is not None] for group in seeds],
            [[p.grad for p in group if p.grad is not None] for group in gates],
            [p.grad for p in host if p.grad is not None],
            [slot.seed_output.seed_id for _, slot in self.slots],
            take,
            self.vanishing,
            self.exploding,
        )
        if compiling or (not self.compile and self.state["scale"].is_cuda):
            collect_step(*args)
        elif not self.compile:
            collect_step_cpu(*args[:5], self.vanishing, self.exploding)
        else:  # one graph per structure; a long run sees many: lift the recompile limit here
            with torch._dynamo.config.patch(
                recompile_limit=max(torch._dynamo.config.recompile_limit, 1024)
            ):
                compiled_collect_step()(*args)

    # ---- reading ----

    def read(self, reset: bool = True) -> dict[str, SlotGradientStats]:
        """Every slot's statistics since the last reset, by qualified name: one device-to-host
        transfer for all slots. ``reset`` zeroes the accumulators afterwards (and starts the
        next count of non-finite seed outputs). Logs ONE warning per slot per episode of
        non-finite seed outputs on the "esper_slot" logger."""
        state = self.state
        probes = torch.cat(
            [
                torch.cat([slot.seed_output.count, slot.grad_flow.counts[:1]]).to(
                    state["scale"].device
                )
                for _, slot in self.slots
            ]
        )
        flat = torch.cat(
            [
                state["scale"].flatten().double(),
                state["ssq"].flatten().double(),
                state["counts"].flatten().double(),
                state["numel"].flatten().double(),
                probes.double(),
                self.calls.double(),
            ]
        ).tolist()
        n = len(self.slots)
        scale, ssq = flat[: 3 * n], flat[3 * n : 6 * n]
        counts, numel = flat[6 * n : 11 * n], flat[11 * n : 14 * n]
        outputs, calls = flat[14 * n : 16 * n], int(flat[16 * n])
        out = {}
        for i, (name, slot) in enumerate(self.slots):
            c = [int(v) for v in counts[5 * i : 5 * i + 5]]
            steps = c[STEPS]
            norms = [_rms(scale[3 * i + k], ssq[3 * i + k], steps) for k in range(3)]
            n_seed, n_gate, n_host = (int(v) for v in numel[3 * i : 3 * i + 3])
            seen_outputs, passes = int(outputs[2 * i]), int(outputs[2 * i + 1])
            bad_outputs = seen_outputs - slot.seed_output._baseline
            slot.seed_output.check(name, seen_outputs, passes)
            out[name] = SlotGradientStats(
                slot=name,
                stage=slot.stage.name,
                seed_grad_norm=norms[SEED],
                gate_grad_norm=norms[GATE],
                host_grad_norm=norms[HOST],
                seed_param_count=n_seed,
                gate_param_count=n_gate,
                host_param_count=n_host,
                steps=steps,
                ratio=esper_lite_ratio(norms[SEED], n_seed, norms[HOST], n_host),
                vanishing=c[VANISHING],
                exploding=c[EXPLODING],
                non_finite=c[NON_FINITE],
                seed_output_non_finite=bad_outputs,
                health=_health(c, bad_outputs),
            )
            if reset:
                slot.seed_output._baseline = seen_outputs
        self._eager_calls = calls
        if reset:
            with torch.no_grad():
                for key in ("scale", "ssq", "counts"):
                    state[key].zero_()
        return out


def _rms(scale: float, ssq: float, steps: int) -> float:
    if steps == 0 or scale == 0.0:
        return 0.0
    return scale * math.sqrt(ssq / steps)


def _health(counts: list[int], bad_outputs: int) -> float:
    if bad_outputs:
        return 0.0
    tensors = counts[SEED_TENSORS]
    if tensors == 0:
        return 1.0
    health = 1.0 - 0.5 * counts[VANISHING] / tensors - 0.8 * counts[EXPLODING] / tensors
    return min(1.0, max(0.0, health))
