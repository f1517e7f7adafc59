"""esper-lite's 16 seed blueprints (commit 2016337e, ``src/esper/kasmina/blueprints``), per
topology, with the same modules, state_dict keys, parameter counts, init and forward.

    cnn:         noop norm attention depthwise bottleneck conv_small conv_light conv_heavy
    transformer: noop norm lora lora_large attention flex_attention mlp_small mlp

A slot builds one by name: ``SeedSlot(64, "cnn").germinate("conv_light")`` calls
``build_blueprint("cnn", "conv_light", 64, seed_kwargs)``. A name belongs to its topology only
("depthwise" is not a transformer blueprint). Keyword arguments are esper-lite's, with its
defaults (esper-lite's slot passes none): cnn ``attention``/``bottleneck`` ``reduction=4``;
``lora`` ``rank=8``, ``lora_large`` ``rank=32``; ``attention``/``flex_attention``
``n_head=4`` (dim % n_head == 0); ``mlp_small`` ``expansion=2``, ``mlp`` ``expansion=4``, both
``checkpoint=False``. Any other keyword is esper-lite's ValueError.

At birth (before any slot rule): cnn ``noop``, ``norm``, ``bottleneck``, ``conv_small`` and
every transformer blueprint (``noop`` is nn.Identity) are the identity; cnn ``attention``
(squeeze-excitation) scales every channel by sigmoid(3.0); ``depthwise``, ``conv_light`` and
``conv_heavy`` have no zero-init and are not the identity. A slot germinated with
BlendMode.MULTIPLY also zeroes the last affine layer (``zero_init_final_layer``), as esper-lite's
does.

This package imports only torch: it sits below the slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from . import cnn, transformer

# topology -> blueprint name -> factory(dim, **kwargs)
BLUEPRINTS: dict[str, dict[str, Callable[..., nn.Module]]] = {
    "cnn": cnn.BLUEPRINTS,
    "transformer": transformer.BLUEPRINTS,
}

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WRAPPER_PARTS = ("module", "_orig_mod")  # DDP's and torch.compile's attribute names


def blueprint_names(topology: str) -> tuple[str, ...]:
    """The blueprint names of ``topology``, sorted (empty for an unknown topology)."""
    return tuple(sorted(BLUEPRINTS.get(topology, {})))


def is_blueprint(topology: str | None, name: str) -> bool:
    return topology is not None and name in BLUEPRINTS.get(topology, {})


def is_blueprint_name(name: str) -> bool:
    """Whether ``name`` is a blueprint of any topology."""
    return any(name in names for names in BLUEPRINTS.values())


def build_blueprint(topology: str, name: str, channels: int, kwargs: dict) -> nn.Module:
    """esper-lite's ``BlueprintRegistry.create(topology, name, channels, **kwargs)``.

    Raises ValueError for an unknown topology or name (listing the topology's names), a
    non-positive channel count, kwargs the blueprint does not take (esper-lite's message) or
    values it cannot build with; ImportError for ``flex_attention`` where torch has no
    FlexAttention."""
    if topology not in BLUEPRINTS:
        raise ValueError(
            f"no blueprints for topology {topology!r}; topologies: {sorted(BLUEPRINTS)}"
        )
    if not is_blueprint(topology, name):
        raise ValueError(
            f"no {topology} blueprint named {name!r}; {topology} blueprints: "
            f"{list(blueprint_names(topology))}"
        )
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(
            f"{topology} blueprint {name!r} needs a positive int channel count, got {channels!r}"
        )
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(
            f"{topology} blueprint {name!r}: kwargs must be a dict with str keys, got {kwargs!r}"
        )
    try:
        return BLUEPRINTS[topology][name](channels, **kwargs)
    except (ValueError, ImportError):
        raise
    except Exception as err:  # e.g. rank="8", n_head=0, a second `dim`
        raise ValueError(
            f"{topology} blueprint {name!r} cannot be built with {channels} "
            f"channels and kwargs {kwargs!r}: {type(err).__name__}: {err}"
        ) from err


def find_final_affine_layer(module: nn.Module) -> tuple[str, nn.Module] | None:
    """esper-lite's rule: the last nn.Linear/Conv1d/Conv2d/Conv3d in ``named_modules()``
    order, as (name, layer); None if there is none."""
    final: tuple[str, nn.Module] | None = None
    for name, child in module.named_modules():
        if isinstance(child, _AFFINE):
            final = (name, child)
    return final


def zero_init_final_layer(module: nn.Module, *, allow_missing: bool = False) -> None:
    """Zero the weight and bias (if any) of ``module``'s final affine layer
    (``find_final_affine_layer``), in place, as esper-lite's germinate does for MULTIPLY:
    e.g. cnn attention's ``fc.2`` (its bias 3.0 becomes 0: gate 0.5), conv_heavy's
    ``enhance.1.conv``, lora's ``up``. A module with none: left as it is if ``allow_missing``,
    else ValueError."""
    found = find_final_affine_layer(module)
    if found is None:
        if allow_missing:
            return
        raise ValueError(f"No affine layer (Linear/Conv*) found in module {type(module).__name__}")
    name, layer = found
    weight: Any = getattr(layer, "weight", None)
    if weight is None:
        raise ValueError(f"Final affine layer {name!r} has no weight tensor")
    nn.init.zeros_(weight)
    bias: Any = getattr(layer, "bias", None)
    if bias is not None:
        nn.init.zeros_(bias)


def migrate_seed_weights(
    state_dict: Mapping[str, Any], slots: Mapping[str, str]
) -> dict[str, Tensor]:
    """The seed weights of an esper-lite model's state dict, under this package's names.

    ``state_dict``: a whole esper-lite ``MorphogeneticModel`` state dict, whose slots are
    ``self.seed_slots`` (an nn.ModuleDict keyed by slot id, "r0c0", ...), so a seed's weights
    sit at ``seed_slots.<slot_id>.seed.<rest>`` (leading ``module.`` / ``_orig_mod.`` of a
    DDP-wrapped or compiled model, and ``_orig_mod`` parts elsewhere, are ignored). Every other
    key (the host, ``_extra_state``, a GATE slot's ``alpha_schedule.*`` network) is skipped.

    ``slots``: esper-lite slot id -> the qualified module name of the SeedSlot that takes it
    here ("blocks.0.slot"; "" for a model that is itself the slot).

    Returns ``{f"{ours}.seed.{rest}": tensor}`` (``seed.{rest}`` for ""), in ``state_dict``
    order; the tensors themselves, not copies, with esper-lite's shapes. A blueprint has the same
    keys and shapes here (same name, same channel count), so these load into a slot holding that
    blueprint: germinate it first (``germinate(blueprint_id)``, with esper-lite's channels), or
    load the slot's record migrated by ``migrate_extra_state(..., seed_factory=blueprint_id)``,
    then ``model.load_state_dict(host_weights | migrated)``. The slot supplies the rest of its
    state (its record and buffers); nothing here checks shapes against a model.

    Raises ValueError for a slot id with seed weights that ``slots`` does not map, two ids with
    weights mapped to the same slot, or a non-tensor value under a seed key. An id mapped but
    without seed weights (an empty esper-lite slot, or a parameter-free seed such as noop)
    contributes nothing."""
    for slot_id, ours in slots.items():
        if not isinstance(slot_id, str) or not isinstance(ours, str):
            raise ValueError(
                f"slots maps esper-lite slot ids (str) to module names (str), got "
                f"{slot_id!r}: {ours!r}"
            )
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    seen: dict[str, str] = {}  # our slot -> the esper-lite id whose weights it took
    for key, value in state_dict.items():
        parts = key.split(".")
        while parts and parts[0] in _WRAPPER_PARTS:
            parts = parts[1:]
        parts = [p for p in parts if p != "_orig_mod"]
        if len(parts) < 4 or parts[0] != "seed_slots" or parts[2] != "seed":
            continue
        slot_id, rest = parts[1], ".".join(parts[3:])
        if slot_id not in slots:
            if slot_id not in unmapped:
                unmapped.append(slot_id)
            continue
        if not isinstance(value, Tensor):
            raise ValueError(f"{key!r} holds a {type(value).__name__}, not a tensor")
        ours = slots[slot_id]
        if seen.setdefault(ours, slot_id) != slot_id:
            raise ValueError(
                f"esper-lite slots {seen[ours]!r} and {slot_id!r} both map to {ours!r}"
            )
        new = f"{ours}.seed.{rest}" if ours else f"seed.{rest}"
        if new in out:
            raise ValueError(f"two keys map to {new!r} (one is {key!r})")
        out[new] = value
    if unmapped:
        raise ValueError(
            f"esper-lite slots {unmapped} hold seed weights but are not in slots "
            f"(mapped: {sorted(slots)})"
        )
    return out


__all__ = [
    "BLUEPRINTS",
    "blueprint_names",
    "build_blueprint",
    "find_final_affine_layer",
    "is_blueprint",
    "is_blueprint_name",
    "migrate_seed_weights",
    "zero_init_final_layer",
]
