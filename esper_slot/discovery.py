"""Finding a model's slots without importing the slot module.

The model-wide helpers (grad-flow checks, telemetry, checkpoints, compile, distributed) need the
slots of a model, and the slot module needs some of them: so slots are recognised here by a
class attribute that SeedSlot sets, and this module imports nothing of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # for the annotations only: no import of the slot module at run time
    from .slot import SeedSlot

SLOT_MARKER = "_is_esper_seed_slot"


def is_slot(module: nn.Module) -> bool:
    """Whether ``module`` is a SeedSlot (or a subclass)."""
    return bool(getattr(type(module), SLOT_MARKER, False))


def named_slots(model: nn.Module, *, display: bool = False) -> list[tuple[str, SeedSlot]]:
    """Every SeedSlot in ``model`` with its qualified name, in module order. ``display``: names
    as in the plain model (torch.compile's "_orig_mod." removed, "<root>" for the model
    itself); otherwise the exact module path, which prefixes the slot's state-dict keys."""
    found = []
    for name, module in model.named_modules():
        if is_slot(module):
            if display:
                name = ".".join(part for part in name.split(".") if part != "_orig_mod")
                name = name or "<root>"
            found.append((name, module))  # a SeedSlot, by its marker
    return found
