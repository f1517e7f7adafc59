"""Seed metrics: what a lifecycle controller knows about a slot's seed, kept on the host.

Forward never reads them: they are plain Python numbers, updated by the user's evaluation (one
``slot.record_accuracy(acc)`` per epoch, say, with the validation accuracy in percent as
esper-lite uses it), a counterfactual measurement (``slot.record_contribution(c)``) and gradient
telemetry (``slot.record_gradients(stats)``), and by the slot's own stage changes. They follow
esper-lite's ``SeedMetrics`` (kasmina/slot.py at 2016337e) field for field where esper-lite has
the field, with its update rules:

- ``record_accuracy``: the first call sets the initial accuracy and the stage-start baseline;
  every call sets the current accuracy, raises the best (which starts at 0.0, as esper-lite's),
  and counts one epoch in total and in the current stage.
- every stage change sets the stage-start baseline to the current accuracy and the stage's
  epochs to 0; entering BLENDING from TRAINING records the accuracy at blending start.
- each epoch of an embargo's cooldown (``slot.step_epoch()``) counts one epoch in total and in
  the stage, as esper-lite's ``step_epoch`` does.
- ``record_contribution``: the counterfactual contribution, and its trend as esper-lite's EMA,
  ``velocity = 0.7 velocity + 0.3 (new - previous)`` from the second measurement on.

Saved in the slot's record (``to_record``/``from_record``), field by field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# the record's keys, in order: every field below
_FLOAT = (
    "initial_accuracy",
    "current_accuracy",
    "best_accuracy",
    "accuracy_at_stage_start",
    "accuracy_at_blending_start",
    "contribution_velocity",
)
_INT = ("epochs_total", "epochs_in_current_stage")
_OPTIONAL_FLOAT = (
    "counterfactual_contribution",
    "previous_contribution",
    "seed_gradient_norm_ratio",
)
_BOOL = ("blending_started",)


@dataclass
class SeedMetrics:
    """One slot's seed metrics (esper-lite's names in brackets where they differ).

    epochs_total, epochs_in_current_stage: epochs recorded (``record_accuracy`` calls and
        cooldown epochs) since germination, and since the last stage change.
    initial_accuracy [initial_val_accuracy], current_accuracy [current_val_accuracy],
    best_accuracy [best_val_accuracy]: the first, latest and highest recorded accuracy.
    accuracy_at_stage_start, accuracy_at_blending_start: the current accuracy when the stage
        began, and when BLENDING began (``blending_started`` says whether it has).
    counterfactual_contribution: the latest measured contribution (None: never measured);
        previous_contribution [_prev_contribution]: the value the next measurement's change is
        taken from (esper-lite keeps it apart; it equals the latest measurement);
        contribution_velocity: the trend, an EMA of the changes.
    seed_gradient_norm_ratio: esper-lite's G2 gradient ratio from the latest recorded gradient
        statistics (None: never measured).
    """

    epochs_total: int = 0
    epochs_in_current_stage: int = 0
    initial_accuracy: float = 0.0
    current_accuracy: float = 0.0
    best_accuracy: float = 0.0
    accuracy_at_stage_start: float = 0.0
    accuracy_at_blending_start: float = 0.0
    blending_started: bool = False
    counterfactual_contribution: float | None = None
    previous_contribution: float | None = None
    contribution_velocity: float = 0.0
    seed_gradient_norm_ratio: float | None = None

    # ---- what esper-lite derives ----

    @property
    def total_improvement(self) -> float:
        return self.current_accuracy - self.initial_accuracy

    @property
    def improvement_since_stage_start(self) -> float:
        return self.current_accuracy - self.accuracy_at_stage_start

    @property
    def blending_delta(self) -> float:
        """Accuracy change since BLENDING began (0.0 before it did); host drift included, so
        not a causal measure (that is counterfactual_contribution)."""
        return (
            self.current_accuracy - self.accuracy_at_blending_start
            if (self.blending_started)
            else 0.0
        )

    # ---- updates ----

    def record_accuracy(self, accuracy: float) -> None:
        accuracy = _finite(accuracy, "accuracy")
        if self.epochs_total == 0:
            self.initial_accuracy = accuracy
            self.accuracy_at_stage_start = accuracy
        self.current_accuracy = accuracy
        self.best_accuracy = max(self.best_accuracy, accuracy)
        self.epochs_total += 1
        self.epochs_in_current_stage += 1

    def record_contribution(self, contribution: float) -> None:
        contribution = _finite(contribution, "contribution")
        if self.previous_contribution is not None:
            self.contribution_velocity = 0.7 * self.contribution_velocity + 0.3 * (
                contribution - self.previous_contribution
            )
        self.previous_contribution = contribution
        self.counterfactual_contribution = contribution

    def record_gradient_ratio(self, ratio: float) -> None:
        self.seed_gradient_norm_ratio = _finite(ratio, "gradient ratio")

    def tick(self) -> None:
        """One epoch of a cooldown, where no accuracy is recorded."""
        self.epochs_total += 1
        self.epochs_in_current_stage += 1

    def stage_changed(self, from_training_to_blending: bool) -> None:
        self.accuracy_at_stage_start = self.current_accuracy
        self.epochs_in_current_stage = 0
        if from_training_to_blending:
            self.accuracy_at_blending_start = self.current_accuracy
            self.blending_started = True

    # ---- the record ----

    def to_record(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict) -> SeedMetrics:
        return cls(**{f.name: record[f.name] for f in fields(cls)})


def record_problems(record) -> list[str]:
    """Every problem with ``record`` as a SeedMetrics record ([] when it is one)."""
    if not isinstance(record, dict):
        return [f"field 'metrics' is a {type(record).__name__}, must be a dict"]
    names = [f.name for f in fields(SeedMetrics)]
    problems = [f"metrics: missing field {n!r}" for n in names if n not in record]
    problems += [f"metrics: unknown field {n!r}" for n in record if n not in names]
    for name in names:
        if name not in record:
            continue
        v = record[name]
        ok = (
            _is_number(v)
            if name in _FLOAT
            else (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
            if name in _INT
            else (v is None or _is_number(v))
            if name in _OPTIONAL_FLOAT
            else isinstance(v, bool)
        )
        if not ok:
            want = (
                "a finite number"
                if name in _FLOAT
                else "an int >= 0"
                if name in _INT
                else "a finite number or None"
                if name in _OPTIONAL_FLOAT
                else "a bool"
            )
            problems.append(f"metrics: field {name!r} is {v!r}, must be {want}")
    return problems


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _finite(value, what: str) -> float:
    if hasattr(value, "item"):  # a 0-d tensor (one transfer; call it outside compiled code)
        value = value.item()
    if not _is_number(value):
        raise ValueError(f"a seed's {what} must be a finite number, got {value!r}")
    return float(value)
