"""esper-lite's lifecycle quality gates G0-G5 as a policy object over our slot.

    gates = QualityGates()                                   # esper-lite's defaults, strict
    result = gates.check(GateInputs.from_slot(slot, gradients=stats), "BLENDING")
    result = advance(slot, Stage.BLENDING, gates, gradients=stats, steps=20)  # check, then move

``QualityGates.check`` decides as esper-lite's ``QualityGates.check_gate`` (kasmina/slot.py at
2016337e, lines 655-1028) does, check string for check string and in its order, strict and
permissive, including the rules this module considers questionable (``corrected=True`` fixes them;
see QualityGates). tests/slot/test_gates.py replays esper-lite's own recorded decisions
(tests/fixtures/esper-lite-gate-decisions.json) against it.

Gate <-> target stage (esper-lite's stage names; esper-lite has no G4 since SHADOWING went):

    GERMINATED  G0  seed_id and blueprint_id present
    TRAINING    G1  the seed is GERMINATED
    BLENDING    G2  strict: improvement, epochs in stage, seed gradient ratio;
                    permissive: epochs in stage, no exploding gradients, gradient health
    HOLDING     G3  alpha target full and reached at HOLD (strict also: epochs in stage)
    FOSSILIZED  G5  counterfactual measured, seed healthy (strict also: contribution)

Any other stage is refused with esper-lite's ValueError. A target may also be an
``esper_slot.Stage`` member, taken by its name: Stage.TRAINING is esper-lite's TRAINING (G1),
Stage.BLENDING G2, Stage.FOSSILIZED G5 (Stage.DORMANT and Stage.PRUNED raise); HOLDING (G3) and
GERMINATED (G0), which our lifecycle has no stage for, are named by string.

Our lifecycle against esper-lite's: our germinate() goes DORMANT -> TRAINING at once (esper-lite
passes through GERMINATED under G0 and G1), and esper-lite's HOLDING is our BLENDING once the ramp
has finished at alpha 1.0 (``GateInputs.from_slot`` reports it as "HOLDING").

This module sits below the slot: it never imports esper_slot.slot at run time.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from .gate_inputs import (
    ALPHA_MODES,
    ESPER_LITE_STAGES,
    GATE_OF_TARGET,
    GateInputs,
    GateResult,
    target_name,
)
from .lifecycle import Stage
from .telemetry import SlotGradientStats

if TYPE_CHECKING:
    from .slot import SeedSlot

G3_ALPHA_EPS = 1e-6  # the literal tolerance in esper-lite's _check_g3
# corrected=True: an accuracy difference within this of the threshold counts as reaching it
# (differences of percentages near 60-100 carry ~1e-14 of rounding; this is far above that and
# far below any meaningful improvement).
IMPROVEMENT_REL_TOL = 1e-9
IMPROVEMENT_ABS_TOL = 1e-12

__all__ = [
    "ALPHA_MODES",
    "ESPER_LITE_STAGES",
    "GATE_OF_TARGET",
    "GateInputs",
    "GateResult",
    "QualityGates",
    "advance",
    "target_name",
]


def _gate_of(target: str | Stage) -> tuple[str, str]:
    name = target_name(target)
    if name not in GATE_OF_TARGET:  # esper-lite's _get_gate_level message
        raise ValueError(
            f"No gate defined for target stage {name}. "
            f"Valid gated stages: {', '.join(GATE_OF_TARGET)}"
        )
    return name, GATE_OF_TARGET[name]


class QualityGates:
    """esper-lite's ``QualityGates``: one gate per target stage, strict or permissive.

    permissive: esper-lite's permissive mode (structural and safety checks only, for RL that
        learns the quality thresholds from rewards); False (strict) is its class default.
    min_training_improvement (strict G2), min_blending_epochs (G2, strict G3),
    min_seed_gradient_ratio (strict G2), min_gradient_health_for_blending (permissive G2):
        esper-lite's constructor arguments, with its leyline defaults.
    min_fossilize_contribution (strict G5): esper-lite's module constant
        DEFAULT_MIN_FOSSILIZE_CONTRIBUTION, made a parameter (rendered as esper-lite renders the
        constant, ``str(float)``: "..._below_1.0%").
    alpha_tolerance (G3, both modes): esper-lite hard-codes 1e-6 in _check_g3 (``alpha_target
        >= 1 - eps``, ``|alpha - alpha_target| <= eps``). Here it is a parameter and always
        used, corrected or not: its default is esper-lite's 1e-6, so default decisions are
        esper-lite's, and a tolerance someone sets is never silently ignored.

    Not copied: esper-lite's ``min_probation_stability``, which it stores and no gate reads.

    corrected=False (default) decides exactly as esper-lite, including three rules this module
    considers wrong; corrected=True fixes them:

    1. Strict G2 never reads gradient telemetry, so it passes a seed whose gradients are
       exploding (only permissive G2 checks for them). Corrected: when ``gradients`` were
       measured (``steps > 0``), strict G2 appends ``"exploding_gradients"`` to the failed
       checks if ``exploding > 0``, else ``"no_exploding_gradients"`` to the passed ones (after
       esper-lite's three checks, with permissive G2's strings); unmeasured gradients add no
       check (strict G2's ratio check already fails a seed never measured).
    2. G3's hard-coded 1e-6 tolerance: addressed by ``alpha_tolerance`` above, in both settings
       of ``corrected``.
    3. Strict G2 compares the improvement (a difference of two accuracies) to its threshold with
       a bare ``>=``, so rounding fails an improvement of exactly 0.5 points: 64.27 - 63.77 is
       0.4999999999999929 in floats. Corrected: an improvement within a relative 1e-9 of the
       threshold (``math.isclose``, absolute 1e-12) passes, reported as esper-lite reports a
       pass (``global_improvement_0.50%``).
    """

    def __init__(
        self,
        permissive: bool = False,
        *,
        min_training_improvement: float = 0.5,
        min_blending_epochs: int = 10,
        min_seed_gradient_ratio: float = 0.10,
        min_gradient_health_for_blending: float = 0.7,
        min_fossilize_contribution: float = 1.0,
        alpha_tolerance: float = G3_ALPHA_EPS,
        corrected: bool = False,
    ):
        for name, value in (
            ("min_training_improvement", min_training_improvement),
            ("min_seed_gradient_ratio", min_seed_gradient_ratio),
            ("min_gradient_health_for_blending", min_gradient_health_for_blending),
            ("min_fossilize_contribution", min_fossilize_contribution),
            ("alpha_tolerance", alpha_tolerance),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value))
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if alpha_tolerance < 0:
            raise ValueError(f"alpha_tolerance must be >= 0, got {alpha_tolerance!r}")
        if isinstance(min_blending_epochs, bool) or not isinstance(min_blending_epochs, int):
            raise ValueError(f"min_blending_epochs must be an int, got {min_blending_epochs!r}")
        self.permissive = bool(permissive)
        self.min_training_improvement = float(min_training_improvement)
        self.min_blending_epochs = min_blending_epochs
        self.min_seed_gradient_ratio = float(min_seed_gradient_ratio)
        self.min_gradient_health_for_blending = float(min_gradient_health_for_blending)
        self.min_fossilize_contribution = float(min_fossilize_contribution)
        self.alpha_tolerance = float(alpha_tolerance)
        self.corrected = bool(corrected)

    def __repr__(self) -> str:
        return (
            f"QualityGates(permissive={self.permissive}, corrected={self.corrected}, "
            f"min_training_improvement={self.min_training_improvement}, "
            f"min_blending_epochs={self.min_blending_epochs}, "
            f"min_seed_gradient_ratio={self.min_seed_gradient_ratio}, "
            f"min_gradient_health_for_blending={self.min_gradient_health_for_blending}, "
            f"min_fossilize_contribution={self.min_fossilize_contribution}, "
            f"alpha_tolerance={self.alpha_tolerance})"
        )

    def check(self, inputs: GateInputs, target: str | Stage) -> GateResult:
        """The gate for entering ``target`` (esper-lite's stage name or a Stage member).
        ValueError for a stage without a gate, with esper-lite's message."""
        name, gate = _gate_of(target)
        check = {"G0": self._g0, "G1": self._g1, "G2": self._g2, "G3": self._g3, "G5": self._g5}[
            gate
        ]
        return check(inputs, name)

    # ---- the gates, each esper-lite's _check_gN ----

    def _g0(self, s: GateInputs, target: str) -> GateResult:
        ok: list[str] = []
        bad: list[str] = []
        (ok if s.seed_id else bad).append("seed_id_present" if s.seed_id else "seed_id_missing")
        (ok if s.blueprint_id else bad).append(
            "blueprint_id_present" if s.blueprint_id else "blueprint_id_missing"
        )
        passed = not bad
        return GateResult(
            "G0",
            target,
            passed,
            tuple(ok),
            tuple(bad),
            1.0 if passed else 0.0,
            "Germination gate" if passed else "Missing required fields",
        )

    def _g1(self, s: GateInputs, target: str) -> GateResult:
        passed = s.stage == "GERMINATED"
        return GateResult(
            "G1",
            target,
            passed,
            ("germinated",) if passed else (),
            () if passed else ("not_germinated",),
            1.0 if passed else 0.0,
            "Ready for training" if passed else "Not germinated",
        )

    def _improvement_ok(self, improvement: float) -> bool:
        threshold = self.min_training_improvement
        if improvement >= threshold:
            return True
        return self.corrected and math.isclose(
            improvement, threshold, rel_tol=IMPROVEMENT_REL_TOL, abs_tol=IMPROVEMENT_ABS_TOL
        )

    def _g2(self, s: GateInputs, target: str) -> GateResult:
        ok: list[str] = []
        bad: list[str] = []
        m = s.metrics
        improvement = m.improvement_since_stage_start
        epochs = m.epochs_in_current_stage
        score = min(1.0, improvement / 5.0) if improvement > 0 else 0.0
        grads = s.gradients
        measured = grads is not None and grads.steps > 0
        if self.permissive:
            if epochs >= self.min_blending_epochs:
                ok.append(f"trained_{epochs}_epochs")
            else:
                bad.append(f"insufficient_training_{epochs}_of_{self.min_blending_epochs}")
            if grads is None or not measured:
                bad.append("gradient_health_not_measured")
            elif grads.exploding > 0:
                bad.append("exploding_gradients")  # health is not checked then
            else:
                ok.append("no_exploding_gradients")
                health = grads.health
                need = self.min_gradient_health_for_blending
                if health >= need:
                    ok.append(f"gradient_health_{health:.2f}")
                else:
                    bad.append(f"gradient_health_low_{health:.2f}_need_{need:.2f}")
            passed = not bad
            return GateResult(
                "G2",
                target,
                passed,
                tuple(ok),
                tuple(bad),
                score,
                f"Permissive G2 Safety: {'PASS' if passed else 'FAIL'}",
            )
        if self._improvement_ok(improvement):
            ok.append(f"global_improvement_{improvement:.2f}%")
        else:
            bad.append(f"global_improvement_insufficient_{improvement:.2f}%")
        if epochs >= self.min_blending_epochs:
            ok.append("seed_ready")
        else:
            bad.append("seed_not_ready")
        ratio = m.seed_gradient_norm_ratio
        if ratio is None:
            bad.append("gradient_stats_never_measured")
        elif ratio >= self.min_seed_gradient_ratio:
            ok.append(f"seed_gradient_active_{ratio:.2f}")
        else:
            bad.append(f"seed_gradient_low_{ratio:.2f}")
        if self.corrected and grads is not None and measured:
            if grads.exploding > 0:
                bad.append("exploding_gradients")
            else:
                ok.append("no_exploding_gradients")
        return GateResult(
            "G2", target, not bad, tuple(ok), tuple(bad), score, f"Improvement: {improvement:.2f}%"
        )

    def _g3(self, s: GateInputs, target: str) -> GateResult:
        ok: list[str] = []
        bad: list[str] = []
        eps = self.alpha_tolerance
        if s.alpha_target >= 1.0 - eps:
            ok.append("alpha_target_full")
        else:
            bad.append(f"alpha_target_not_full_{s.alpha_target:.2f}")
        if s.alpha_mode == "HOLD" and abs(s.alpha - s.alpha_target) <= eps:
            ok.append("alpha_target_reached")
        else:
            bad.append(
                f"alpha_not_at_target_{s.alpha:.2f}_target_{s.alpha_target:.2f}_mode_{s.alpha_mode}"
            )
        if self.permissive:
            return GateResult(
                "G3",
                target,
                not bad,
                tuple(ok),
                tuple(bad),
                s.alpha,
                "Permissive G3: alpha completion only",
            )
        epochs = s.metrics.epochs_in_current_stage
        if epochs >= self.min_blending_epochs:
            ok.append("blending_complete")
        else:
            bad.append(f"blending_incomplete_{epochs}")
        return GateResult("G3", target, not bad, tuple(ok), tuple(bad), s.alpha)

    def _g5(self, s: GateInputs, target: str) -> GateResult:
        contribution = s.metrics.counterfactual_contribution
        if contribution is None:  # both modes: no fallback
            return GateResult("G5", target, False, (), ("counterfactual_not_available",), 0.0)
        ok = [f"counterfactual_available_{contribution:.2f}%"]
        bad: list[str] = []
        (ok if s.healthy else bad).append("healthy" if s.healthy else "unhealthy")
        score = min(1.0, contribution / 10.0) if contribution > 0 else 0.0
        if self.permissive:
            return GateResult(
                "G5",
                target,
                not bad,
                tuple(ok),
                tuple(bad),
                score,
                f"Permissive G5: {contribution:.2f}% contribution (no threshold)",
            )
        need = self.min_fossilize_contribution
        if contribution >= need:
            ok.append(f"sufficient_contribution_{contribution:.2f}%")
        else:
            bad.append(f"insufficient_contribution_{contribution:.2f}%_below_{need}%")
        return GateResult("G5", target, not bad, tuple(ok), tuple(bad), score)


# advance(): the esper-lite stage the seed must be in for each transition we can make.
_ADVANCE_FROM = {
    "BLENDING": ("TRAINING",),
    "HOLDING": ("BLENDING", "HOLDING"),
    "FOSSILIZED": ("HOLDING",),
}


def advance(
    slot: SeedSlot,
    target: str | Stage,
    gates: QualityGates,
    *,
    gradients: SlotGradientStats | None = None,
    contribution: float | None = None,
    healthy: bool = True,
    **transition_kwargs,
) -> GateResult:
    """Check the gate for ``slot`` entering ``target``, then make the transition if it passed,
    as esper-lite's ``SeedSlot.advance_stage`` does; returns the gate's result either way.

    target: "BLENDING"/Stage.BLENDING (G2, then ``slot.start_blending(**transition_kwargs)``),
        "HOLDING" (G3; nothing to call: our ramp reaches HOLD by itself, so this only reports
        whether esper-lite would let the seed into HOLDING), "FOSSILIZED"/Stage.FOSSILIZED (G5,
        then ``slot.fossilize()``). Any other target raises ValueError (our germinate() enters
        TRAINING directly, so G0 and G1 have no transition here: check them with
        ``gates.check``); transition_kwargs are only for BLENDING (TypeError otherwise).
    gradients, healthy: as in GateInputs.from_slot. contribution: when given, used as the
        counterfactual contribution for this check instead of the slot's metrics (which are
        not changed).

    Every check is announced as a "gate_evaluated" lifecycle event (esper_slot.events) before the
    transition's own events. A failed gate returns its result and changes nothing. As in
    esper-lite, a seedless slot gives ``G0`` failed with ``no_active_seed``, and a passed gate
    whose transition the slot's stage does not allow (BLENDING only from TRAINING, HOLDING from
    BLENDING, FOSSILIZED from HOLDING, esper-lite's stage names as from_slot reports them) gives
    the gate failed with ``transition_failed``, slot unchanged. Errors of the transition itself (a
    bad start_blending argument) propagate.
    """
    name = target_name(target)
    if name not in _ADVANCE_FROM:
        raise ValueError(
            f"advance() makes the BLENDING, HOLDING and FOSSILIZED transitions, not {name}"
            + (
                ": our germinate() enters TRAINING directly; check G0/G1 with gates.check()"
                if name in ("GERMINATED", "TRAINING")
                else ": use prune() or schedule_prune()"
                if name == "PRUNED"
                else ""
            )
        )
    if transition_kwargs and name != "BLENDING":
        raise TypeError(
            f"advance() to {name} takes no transition arguments, got {sorted(transition_kwargs)}"
        )
    if not slot.has_seed:
        return GateResult("G0", name, False, (), ("no_active_seed",))
    inputs = GateInputs.from_slot(slot, gradients=gradients, healthy=healthy)
    if contribution is not None:
        if (
            isinstance(contribution, bool)
            or not isinstance(contribution, (int, float))
            or not (math.isfinite(contribution))
        ):
            raise ValueError(f"contribution must be a finite number, got {contribution!r}")
        inputs = replace(
            inputs, metrics=replace(inputs.metrics, counterfactual_contribution=contribution)
        )
    result = gates.check(inputs, name)
    slot.emit_gate_result(result)  # a "gate_evaluated" event, before any transition
    if not result.passed:
        return result
    if inputs.stage not in _ADVANCE_FROM[name]:
        return GateResult(result.gate, name, False, (), ("transition_failed",))
    if name == "BLENDING":
        slot.start_blending(**transition_kwargs)
    elif name == "FOSSILIZED":
        slot.fossilize()
    return result
