"""The alpha controller: pure scheduling of a slot's blend weight, step for step esper-lite's
``AlphaController`` (kasmina/alpha_controller.py), with a steepness for the sigmoid curve.

A ramp goes from ``start`` (the alpha when it was set) to ``target`` over ``steps_total`` calls of
``step()``; after ``done`` calls, with ``t = done / steps_total``::

    alpha = clamp01(start + (target - start) * progress(t))

    linear:   progress(t) = t
    cosine:   progress(t) = (1 - cos(pi t)) / 2
    sigmoid:  progress(t) = (s(t) - s(0)) / (s(1) - s(0)),  s(t) = 1 / (1 + exp(-k (t - 1/2)))
              (k the steepness; t itself if s(1) == s(0))

then clamped monotone (UP: within [start, target]; DOWN: within [target, start]); the last step
snaps to ``target`` exactly and the mode becomes HOLD. A new ramp may only start from HOLD.
Everything is float64 host arithmetic: no tensor, nothing a compiled graph sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CURVES = ("linear", "cosine", "sigmoid")
MODES = ("HOLD", "UP", "DOWN")
DEFAULT_STEEPNESS = 12.0


def clamp01(value: float) -> float:
    return max(0.0, min(1.0, value))


def _logistic(z: float) -> float:
    """1 / (1 + exp(-z)), esper-lite's expression bit for bit, and 0.0 where exp(-z) would
    overflow a float (a steepness past ~1400) instead of raising."""
    return 1.0 / (1.0 + (math.exp(-z) if -z < 709.0 else math.inf))


def curve_progress(t: float, curve: str, steepness: float = DEFAULT_STEEPNESS) -> float:
    """How far along a ramp is at time ``t`` in [0, 1] (clamped), from 0.0 to 1.0."""
    t = max(0.0, min(1.0, t))
    if curve == "linear":
        return t
    if curve == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * t))
    if curve == "sigmoid":
        raw = _logistic(steepness * (t - 0.5))
        raw0 = _logistic(steepness * (0.0 - 0.5))
        raw1 = _logistic(steepness * (1.0 - 0.5))
        if raw1 == raw0:
            return t
        return (raw - raw0) / (raw1 - raw0)
    raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")


def check_ramp_args(target, steps, curve, steepness) -> None:
    """ValueError naming the first bad ramp argument (None means "keep" for curve/steepness)."""
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, float))
        or not (0.0 <= target <= 1.0)
    ):
        raise ValueError(f"target must be a number in [0, 1], got {target!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if curve is not None and curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    if steepness is not None and (
        isinstance(steepness, bool)
        or not isinstance(steepness, (int, float))
        or not math.isfinite(steepness)
        or steepness <= 0
    ):
        raise ValueError(f"steepness must be a finite number > 0, got {steepness!r}")


@dataclass
class AlphaSchedule:
    """One slot's alpha and its ramp. ``mode`` is "HOLD" (no ramp running), "UP" or "DOWN"."""

    alpha: float = 0.0
    start: float = 0.0
    target: float = 0.0
    mode: str = "HOLD"
    curve: str = "linear"
    steepness: float = DEFAULT_STEEPNESS
    steps_total: int = 0
    steps_done: int = 0

    def retarget(
        self, target: float, steps: int, curve: str | None = None, steepness: float | None = None
    ) -> None:
        """Ramp from the current alpha to ``target`` over ``steps`` calls of step() (0: at once).
        Only from HOLD (ValueError otherwise; the slot turns it into a LifecycleError)."""
        if self.mode != "HOLD":
            raise ValueError(
                f"a new ramp can only start from HOLD; the ramp is {self.mode} "
                f"at step {self.steps_done} of {self.steps_total}"
            )
        check_ramp_args(target, steps, curve, steepness)
        target = clamp01(float(target))
        self.start, self.target = self.alpha, target
        if curve is not None:
            self.curve = curve
        if steepness is not None:
            self.steepness = float(steepness)
        self.steps_total, self.steps_done = steps, 0
        if target > self.alpha:
            self.mode = "UP"
        elif target < self.alpha:
            self.mode = "DOWN"
        else:
            self.mode, self.alpha = "HOLD", target
        if steps == 0:
            self.alpha, self.mode = target, "HOLD"

    def step(self) -> bool:
        """Advance one tick; True when this tick reached the target (snap, then HOLD)."""
        if self.mode == "HOLD" or self.steps_total == 0:
            return False
        self.steps_done += 1
        if self.steps_done >= self.steps_total:
            self.steps_done = self.steps_total
            self.alpha, self.mode = self.target, "HOLD"
            return True
        t = self.steps_done / max(self.steps_total, 1)
        value = self.start + (self.target - self.start) * curve_progress(
            t, self.curve, self.steepness
        )
        self.alpha = clamp01(value)
        if self.mode == "UP":
            self.alpha = min(max(self.alpha, self.start), self.target)
        elif self.mode == "DOWN":
            self.alpha = max(min(self.alpha, self.start), self.target)
        return False

    def hold(self, alpha: float) -> None:
        """Set alpha and stop any ramp (set_alpha)."""
        self.alpha = self.start = self.target = float(alpha)
        self.mode, self.steps_total, self.steps_done = "HOLD", 0, 0

    def fields(self) -> dict:
        """The schedule as checkpoint-record fields (see extra_state.py)."""
        return {
            "alpha": self.alpha,
            "alpha_start": self.start,
            "alpha_target": self.target,
            "alpha_mode": self.mode,
            "alpha_curve": self.curve,
            "alpha_steepness": self.steepness,
            "alpha_steps_total": self.steps_total,
            "alpha_steps_done": self.steps_done,
        }

    @classmethod
    def from_fields(cls, record: dict) -> AlphaSchedule:
        return cls(
            alpha=float(record["alpha"]),
            start=float(record["alpha_start"]),
            target=float(record["alpha_target"]),
            mode=record["alpha_mode"],
            curve=record["alpha_curve"],
            steepness=float(record["alpha_steepness"]),
            steps_total=record["alpha_steps_total"],
            steps_done=record["alpha_steps_done"],
        )
