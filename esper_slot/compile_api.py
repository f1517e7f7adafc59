"""esper_slot.compile: the one entry point for compiling a model with slots, whole
(compiled.SlotCompiledModule) or by regions (regions.RegionCompiledModule)."""

from __future__ import annotations

from torch import nn

from .compiled import SlotCompiledModule
from .regions import RegionCompiledModule, find_regions


def compile(
    model: nn.Module,
    *,
    regions=None,
    stage_graphs: bool = True,
    keep_structures: int = 2,
    **torch_compile_kwargs,
) -> SlotCompiledModule | RegionCompiledModule:
    """torch.compile(model, **torch_compile_kwargs) that survives any number of germinate/prune
    calls of any number of slots. Call the result like the model.

    regions=None (whole model, SlotCompiledModule): one compiled function per slot structure of
        the whole model, the ``keep_structures`` most recent kept (older ones' graphs evicted).
        Stage changes (TRAINING -> BLENDING -> FOSSILIZED), step(), set_alpha() cost no graph;
        each germinate()/prune() recompiles the whole model (at most one graph per train/eval
        mode; none when it returns to a kept structure).
    regions=Block, (BlockA, BlockB) or [module, ...] (RegionCompiledModule): every outermost
        instance of the class(es) that holds a SeedSlot, or the listed submodules, is compiled
        on its own; the rest of the model runs eagerly. A germinate()/prune() recompiles only
        the slot's region, and nothing when a region of the same structure was compiled before
        (regions of equal structure share graphs). ``keep_structures`` unused region structures
        are kept beside those in use.
    stage_graphs (regions only; default True): a region's graph may specialise on its slots'
        stage: TRAINING runs a plain straight-through estimator on a detached input where it
        isolates, BLENDING/FOSSILIZED the blend alone (no tensor-driven stage switch). Each
        TRAINING -> BLENDING change then compiles its region once (nothing for a structure
        compiled before). False keeps one graph for every stage, as the whole model does.

    Raises CompileBudgetError (naming the region, under regions) instead of torch's
    recompile-limit failure or silent eager fallback, and ValueError for bad arguments.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"esper_slot.compile takes an nn.Module, got {type(model).__name__}")
    if (
        isinstance(keep_structures, bool)
        or not isinstance(keep_structures, int)
        or (keep_structures < 1)
    ):
        raise ValueError(f"keep_structures must be an int >= 1, got {keep_structures!r}")
    if "model" in torch_compile_kwargs:
        raise ValueError("pass the model as the first argument only")
    if not isinstance(stage_graphs, bool):
        raise ValueError(f"stage_graphs must be True or False, got {stage_graphs!r}")
    if regions is None:
        return SlotCompiledModule(model, keep_structures, dict(torch_compile_kwargs))
    return RegionCompiledModule(
        model,
        find_regions(model, regions),
        keep_structures,
        dict(torch_compile_kwargs),
        stage_graphs,
    )
