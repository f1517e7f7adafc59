"""esper_slot: a compile-safe slot module for morphogenetic training.

    slot = SeedSlot(channels=64, topology="cnn")       # in the host: features = slot(features)
    slot.germinate(seed_module)                        # TRAINING: the incubator
    slot.start_blending(steps=1000); slot.step()       # BLENDING: alpha ramps 0 -> 1
    slot.fossilize()                                   # FOSSILIZED: the seed is permanent
    check_grad_flow(model)                             # always-on grad-flow status
"""

from .gate import DefaultGate
from .grad_flow import GradFlowMonitor, GradFlowStatus, check_grad_flow
from .lifecycle import BlendMode, LifecycleError, Stage
from .slot import SeedSlot

__all__ = [
    "BlendMode",
    "DefaultGate",
    "GradFlowMonitor",
    "GradFlowStatus",
    "LifecycleError",
    "SeedSlot",
    "Stage",
    "check_grad_flow",
]
