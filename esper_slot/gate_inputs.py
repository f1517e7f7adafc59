"""What the quality gates read and return, in esper-lite's terms: GateInputs (a seed's state
under esper-lite's meaning, from our slot or given field by field), GateResult (one decision),
and esper-lite's stage names with the gate of each gated target. esper_slot.gates holds the gates
themselves (QualityGates) and advance().

This module sits below the slot: it never imports esper_slot.slot at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .lifecycle import Stage
from .metrics import SeedMetrics
from .telemetry import SlotGradientStats

if TYPE_CHECKING:
    from .slot import SeedSlot

# esper-lite's SeedStage names, in its order, and the gate of each gated target.
ESPER_LITE_STAGES = (
    "UNKNOWN",
    "DORMANT",
    "GERMINATED",
    "TRAINING",
    "BLENDING",
    "HOLDING",
    "FOSSILIZED",
    "PRUNED",
    "EMBARGOED",
    "RESETTING",
)
GATE_OF_TARGET = {
    "GERMINATED": "G0",
    "TRAINING": "G1",
    "BLENDING": "G2",
    "HOLDING": "G3",
    "FOSSILIZED": "G5",
}
ALPHA_MODES = ("HOLD", "UP", "DOWN")


@dataclass(frozen=True)
class GateResult:
    """One gate decision. ``gate`` is "G0".."G5", ``target`` esper-lite's name of the stage the
    seed would enter; ``checks_passed``/``checks_failed`` and ``message`` are esper-lite's strings
    in its order, ``score`` its 0-1 confidence."""

    gate: str
    target: str
    passed: bool
    checks_passed: tuple[str, ...] = ()
    checks_failed: tuple[str, ...] = ()
    score: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class GateInputs:
    """Everything a gate reads, in our types, under esper-lite's meaning.

    seed_id, blueprint_id: G0 (present = non-empty). stage: esper-lite's stage name of the seed
        (G1 passes only for "GERMINATED").
    metrics: improvement_since_stage_start and epochs_in_current_stage (G2, G3),
        seed_gradient_norm_ratio (strict G2; None = never measured), counterfactual_contribution
        (G5; None = not measured).
    gradients: the slot's gradient statistics (permissive G2; strict G2 when corrected). None or
        ``steps == 0`` is esper-lite's unmeasured telemetry (our health is 1.0 with nothing
        collected; esper-lite's is None), ``exploding > 0`` its has_exploding, ``health`` its
        gradient_health.
    alpha, alpha_target, alpha_mode ("HOLD"/"UP"/"DOWN"): the alpha controller (G3).
    healthy: esper-lite's SeedState.is_healthy (G5).
    """

    seed_id: str = ""
    blueprint_id: str = ""
    stage: str = "DORMANT"
    metrics: SeedMetrics = field(default_factory=SeedMetrics)
    gradients: SlotGradientStats | None = None
    alpha: float = 0.0
    alpha_target: float = 0.0
    alpha_mode: str = "HOLD"
    healthy: bool = True

    def __post_init__(self):
        if self.stage not in ESPER_LITE_STAGES:
            raise ValueError(
                f"stage must be one of esper-lite's stages {ESPER_LITE_STAGES}, got {self.stage!r}"
            )
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(f"alpha_mode must be one of {ALPHA_MODES}, got {self.alpha_mode!r}")

    @classmethod
    def from_slot(
        cls,
        slot: SeedSlot,
        gradients: SlotGradientStats | None = None,
        healthy: bool = True,
        seed_id: str | None = None,
    ) -> GateInputs:
        """esper-lite's view of ``slot``, with a copy of its ``metrics`` (so later updates do
        not change these inputs).

        stage: our stage's name, except BLENDING with the ramp finished at alpha 1.0 (mode HOLD,
            alpha == target == 1.0, no prune scheduled) is "HOLDING": esper-lite enters HOLDING
            only through G3, which needs a full target, so a ramp held at a partial target is
            still BLENDING. Our slot is never "GERMINATED" (germinate enters TRAINING).
        blueprint_id: the slot's seed factory name, else the seed's class name ("" without a
            seed). seed_id: the given one, else the slot's name ("" until check_grad_flow or a
            compile names it).
        gradients, healthy: passed through (the slot holds neither).
        """
        metrics = getattr(slot, "metrics", None)
        if not isinstance(metrics, SeedMetrics):
            raise AttributeError(
                f"{type(slot).__name__} has no SeedMetrics 'metrics' attribute (got "
                f"{type(metrics).__name__}): the gates read the seed's metrics from it"
            )
        schedule = slot.schedule
        stage = slot.stage.name
        if (
            slot.stage == Stage.BLENDING
            and not slot.prune_scheduled
            and schedule.mode == "HOLD"
            and schedule.alpha == schedule.target == 1.0
        ):
            stage = "HOLDING"
        if slot.seed_factory:
            blueprint = slot.seed_factory
        else:
            blueprint = type(slot.seed).__name__ if slot.seed is not None else ""
        return cls(
            seed_id=slot.name if seed_id is None else seed_id,
            blueprint_id=blueprint,
            stage=stage,
            metrics=replace(metrics),
            gradients=gradients,
            alpha=schedule.alpha,
            alpha_target=schedule.target,
            alpha_mode=schedule.mode,
            healthy=healthy,
        )


def target_name(target: str | Stage) -> str:
    """esper-lite's stage name for ``target`` (a name, or a Stage member by its name)."""
    if isinstance(target, Stage):
        return target.name
    if not isinstance(target, str):
        raise TypeError(
            f"target must be a stage name or an esper_slot.Stage, got {type(target).__name__}"
        )
    if target not in ESPER_LITE_STAGES:
        raise ValueError(
            f"unknown stage {target!r}; esper-lite's stages: {', '.join(ESPER_LITE_STAGES)}"
        )
    return target
