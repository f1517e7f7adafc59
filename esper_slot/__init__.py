"""esper_slot: a compile-safe slot module for morphogenetic training.

slot = SeedSlot(channels=64, topology="cnn")       # in the host: features = slot(features)
slot.germinate(seed_module)                        # TRAINING: the incubator
slot.start_blending(steps=1000); slot.step()       # BLENDING: alpha ramps 0 -> 1 (alpha.py)
slot.fossilize()                                   # FOSSILIZED at alpha 1.0 (or schedule_prune)
with ablated(model): ...                           # counterfactual: alpha forced to 0
check_grad_flow(model)                             # always-on grad-flow status
telemetry = GradientTelemetry(model); telemetry.collect(); telemetry.read()  # per-slot grads
save_checkpoint(model, path); load_checkpoint(model, path)   # strict, atomic, versioned
step_fn = esper_slot.compile(model, fullgraph=True)  # torch.compile for whole lifecycles
step_fn = esper_slot.compile(model, regions=Block, fullgraph=True)  # a block per event
"""

__version__ = "0.1.0"  # the single source: pyproject.toml reads it (tool.setuptools.dynamic)

from . import distributed
from .checkpoint import (
    load_checkpoint,
    load_state_dict,
    read_checkpoint,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from .compile_api import compile
from .compiled import CompileBudgetError, SlotCompiledModule
from .counterfactual import ablated
from .events import LifecycleEvent, LifecycleEvents, log_events
from .extra_state import SCHEMA_VERSION, CheckpointError
from .gate import DefaultGate
from .grad_flow import GradFlowMonitor, GradFlowStatus, check_grad_flow
from .lifecycle import BlendMode, LifecycleError, Stage
from .metrics import SeedMetrics
from .migration import migrate_extra_state
from .optim import OptimizerUpkeep
from .regions import RegionCompiledModule
from .registry import register_seed, registered_seeds
from .slot import SeedSlot
from .telemetry import GradientTelemetry, SlotGradientStats

__all__ = [
    "SCHEMA_VERSION",
    "BlendMode",
    "CheckpointError",
    "CompileBudgetError",
    "DefaultGate",
    "GradFlowMonitor",
    "GradFlowStatus",
    "GradientTelemetry",
    "LifecycleError",
    "LifecycleEvent",
    "LifecycleEvents",
    "OptimizerUpkeep",
    "RegionCompiledModule",
    "SeedMetrics",
    "SeedSlot",
    "SlotCompiledModule",
    "SlotGradientStats",
    "Stage",
    "__version__",
    "ablated",
    "check_grad_flow",
    "compile",
    "distributed",
    "load_checkpoint",
    "load_state_dict",
    "log_events",
    "migrate_extra_state",
    "read_checkpoint",
    "register_seed",
    "registered_seeds",
    "save_checkpoint",
    "strip_wrapper_prefixes",
]
