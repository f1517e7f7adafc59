"""Seed (and gate) factories by name, so a checkpoint can rebuild a seed in an empty slot.

    register_seed("conv3x3", lambda channels: nn.Conv2d(channels, channels, 3, padding=1))
    slot.germinate("conv3x3", seed_kwargs={"channels": 64})

A checkpoint stores the factory's name and its JSON-able kwargs; loading it into a DORMANT slot
calls the factory again. Seeds germinated as module objects cannot be rebuilt that way: load
their checkpoints into a slot where the same seed was germinated first.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from torch import nn

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_seed(name: str, factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``factory(**kwargs) -> nn.Module`` under ``name`` (for seeds and gate networks).
    Re-registering a name replaces it. Returns the factory, so it also works as a decorator
    helper."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a seed factory name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory
    return factory


def registered_seeds() -> tuple[str, ...]:
    return tuple(sorted(_FACTORIES))


def is_registered(name: str) -> bool:
    return name in _FACTORIES


def check_kwargs(kwargs, what: str) -> dict:
    """kwargs must be a dict with str keys that survives a JSON round trip unchanged."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{what} must be a dict with str keys, got {kwargs!r}")
    try:
        same = json.loads(json.dumps(kwargs)) == kwargs
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{what} must hold only JSON values (str, int, float, bool, None, "
                         f"lists and dicts of them), got {kwargs!r}")
    return dict(kwargs)


def build(name: str, kwargs: dict) -> nn.Module:
    """``factory(**kwargs)``; any failure is a ValueError naming the factory and kwargs."""
    if name not in _FACTORIES:
        raise ValueError(f"no seed factory is registered as {name!r} (registered: "
                         f"{list(registered_seeds())}); call esper_slot.register_seed first")
    try:
        module = _FACTORIES[name](**kwargs)
    except Exception as err:  # a factory's own error, e.g. kwargs it does not take
        raise ValueError(f"seed factory {name!r} failed with kwargs {kwargs!r}: "
                         f"{type(err).__name__}: {err}") from err
    if not isinstance(module, nn.Module):
        raise ValueError(f"seed factory {name!r} returned {type(module).__name__}, not an "
                         "nn.Module")
    return module
