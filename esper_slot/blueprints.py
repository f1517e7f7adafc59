"""esper-lite's seed blueprints (placeholder: filled in by the blueprint work)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# topology -> blueprint name -> factory(dim, **kwargs)
BLUEPRINTS: dict[str, dict[str, Callable[..., nn.Module]]] = {"cnn": {}, "transformer": {}}


def blueprint_names(topology: str) -> tuple[str, ...]:
    return tuple(sorted(BLUEPRINTS.get(topology, {})))


def is_blueprint(topology: str | None, name: str) -> bool:
    return topology is not None and name in BLUEPRINTS.get(topology, {})


def is_blueprint_name(name: str) -> bool:
    return any(name in names for names in BLUEPRINTS.values())


def build_blueprint(topology: str, name: str, channels: int, kwargs: dict) -> nn.Module:
    if not is_blueprint(topology, name):
        raise ValueError(f"no {topology} blueprint named {name!r}")
    return BLUEPRINTS[topology][name](channels, **kwargs)


def zero_init_final_layer(module: nn.Module, *, allow_missing: bool = False) -> None:
    """Zero the weight and bias of ``module``'s last Linear/Conv layer (placeholder)."""
    final = None
    for child in module.modules():
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            final = child
    if final is None:
        if allow_missing:
            return
        raise ValueError(f"no Linear/Conv layer in {type(module).__name__}")
    nn.init.zeros_(final.weight)
    if final.bias is not None:
        nn.init.zeros_(final.bias)
