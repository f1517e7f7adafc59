"""Seed (and gate) factories by name, so a checkpoint can rebuild a seed in an empty slot.

    register_seed("conv3x3", lambda channels: nn.Conv2d(channels, channels, 3, padding=1))
    slot.germinate("conv3x3", seed_kwargs={"channels": 64})
    slot.germinate("conv_light")          # a built-in blueprint of the slot's topology

A name is either a user factory (called with ``seed_kwargs``, any topology) or one of
esper-lite's blueprints (blueprints.py: per topology, called with the slot's channel count and
``seed_kwargs``); a blueprint's name cannot be registered again. A checkpoint stores the name and
its JSON-able kwargs; loading it into a DORMANT slot builds the seed again. Seeds germinated as
module objects cannot be rebuilt that way: load their checkpoints into a slot where the same
seed was germinated first.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from torch import nn

from .blueprints import blueprint_names, build_blueprint, is_blueprint, is_blueprint_name

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_seed(name: str, factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``factory(**kwargs) -> nn.Module`` under ``name`` (for seeds and gate networks).
    Re-registering a name replaces it. Returns the factory, so it also works as a decorator
    helper."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a seed factory name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    if is_blueprint_name(name):
        raise ValueError(
            f"{name!r} is the name of a built-in blueprint (esper-lite's); "
            "register your factory under another name"
        )
    _FACTORIES[name] = factory
    return factory


def registered_seeds() -> tuple[str, ...]:
    return tuple(sorted(_FACTORIES))


def is_registered(name: str, topology: str | None = None) -> bool:
    """A user factory of that name, or a blueprint of that name for ``topology``."""
    return name in _FACTORIES or is_blueprint(topology, name)


def check_kwargs(kwargs, what: str) -> dict:
    """kwargs must be a dict with str keys that survives a JSON round trip unchanged."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{what} must be a dict with str keys, got {kwargs!r}")
    try:
        same = json.loads(json.dumps(kwargs)) == kwargs
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(
            f"{what} must hold only JSON values (str, int, float, bool, None, "
            f"lists and dicts of them), got {kwargs!r}"
        )
    return dict(kwargs)


def build(
    name: str, kwargs: dict, topology: str | None = None, channels: int | None = None
) -> nn.Module:
    """``factory(**kwargs)``, or for a blueprint of ``topology``
    ``blueprint(channels, **kwargs)``; any failure is a ValueError naming it and the kwargs."""
    if name in _FACTORIES:
        factory: Callable[..., nn.Module] = _FACTORIES[name]
        what = f"seed factory {name!r}"
    elif topology is not None and is_blueprint(topology, name):

        def factory(**kw):
            return build_blueprint(topology, name, channels, kw)

        what = f"{topology} blueprint {name!r}"
    else:
        where = (
            f"; {topology} blueprints: {list(blueprint_names(topology))}"
            if topology is not None
            else ""
        )
        raise ValueError(
            f"no seed factory is registered as {name!r} (registered: "
            f"{list(registered_seeds())}{where}); call esper_slot.register_seed "
            "first"
        )
    try:
        module = factory(**kwargs)
    except Exception as err:  # a factory's own error, e.g. kwargs it does not take
        raise ValueError(
            f"{what} failed with kwargs {kwargs!r}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(module, nn.Module):
        raise ValueError(f"{what} returned {type(module).__name__}, not an nn.Module")
    return module
