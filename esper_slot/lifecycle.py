"""The slot lifecycle: stages, blend modes and legal transitions (the alpha ramp: alpha.py).

    DORMANT ──germinate──▶ TRAINING ──start_blending──▶ BLENDING ──fossilize──▶ FOSSILIZED
       ▲                      │                             │  (alpha 1.0 at HOLD)
       └──── germinate ── PRUNED ◀──── prune, or the end of a scheduled prune's ramp-down

With an embargo (SeedSlot(..., embargo=True), esper-lite's cooldown), a pruned slot cannot
germinate until step_epoch() has taken it through the cooldown:

    PRUNED ──step_epoch──▶ EMBARGOED ──(N epochs)──▶ RESETTING ──(1 epoch)──▶ DORMANT
"""

from __future__ import annotations

import enum


class Stage(enum.Enum):
    DORMANT = "DORMANT"  # no seed: output is host
    TRAINING = "TRAINING"  # incubator: output is host (ste), the seed learns
    BLENDING = "BLENDING"  # output blends host and seed, alpha ramps 0 -> 1
    FOSSILIZED = "FOSSILIZED"  # alpha = 1 for good; the seed is permanent
    PRUNED = "PRUNED"  # seed removed: output is host again
    EMBARGOED = "EMBARGOED"  # an embargo's cooldown after a prune: no germinate yet
    RESETTING = "RESETTING"  # the cooldown's last epoch, then DORMANT


class BlendMode(enum.Enum):
    ADD = "ADD"  # kernels.blend_add
    MULTIPLY = "MULTIPLY"  # kernels.blend_multiply
    GATE = "GATE"  # kernels.blend_gate, with a per-sample gate network


class LifecycleError(RuntimeError):
    """A lifecycle method was called in a stage that does not allow it."""


# Stages that run the seed, and so train it: the grad-flow check expects gradients there.
SEED_STAGES = frozenset({Stage.TRAINING, Stage.BLENDING, Stage.FOSSILIZED})
# A pruned slot's cooldown under an embargo (PRUNED is its first step).
COOLDOWN_STAGES = frozenset({Stage.PRUNED, Stage.EMBARGOED, Stage.RESETTING})

ALLOWED_FROM = {
    "germinate": (Stage.DORMANT, Stage.PRUNED),
    "start_blending": (Stage.TRAINING,),
    "step": (Stage.BLENDING,),
    "set_alpha": (Stage.BLENDING,),
    "retarget": (Stage.BLENDING,),
    "schedule_prune": (Stage.BLENDING,),
    "fossilize": (Stage.BLENDING,),
    "prune": (Stage.TRAINING, Stage.BLENDING),
}


def require_stage(action: str, stage: Stage, slot_name: str) -> None:
    allowed = ALLOWED_FROM[action]
    if stage not in allowed:
        names = " or ".join(s.name for s in allowed)
        hint = {
            "germinate": "prune() the current seed first (a FOSSILIZED seed is permanent)",
            "prune": "a FOSSILIZED seed is permanent; a slot without a seed has nothing to prune",
            "schedule_prune": "a FOSSILIZED seed is permanent; in TRAINING, prune() at once",
        }.get(action, f"call it in stage {names}")
        raise LifecycleError(
            f"{slot_name}.{action}() needs stage {names}, but the slot is {stage.name}: {hint}"
        )
