"""Regional compilation: esper_slot.compile(model, regions=...), where a slot's germinate or
prune recompiles one block, not the whole model.

Why. Whole-model compilation (compiled.SlotCompiledModule) retraces the entire model whenever a
slot changes structure: in a 12-block GPT-2 that is the time of a thousand or more training
steps per germinate or prune, growing with depth. PyTorch's recipe for regional compilation
(``for block in blocks: block.compile()``) fails here at once: instances of one class share a
code object, so one 8-entry graph cache (pytorch/pytorch#171593), and a block per structure soon
fills it.

What it does. Each region (a module holding slots: every instance of the given classes, or the
given instances) runs through a compiled function chosen by the region's *structure signature*
(its module tree, its tensors' shapes and dtypes, and its slots' structure). Each signature gets
a function of its own, so a code object with its own cache and recompile budget. Regions with
equal signatures share that function, and so its graphs: Dynamo's guards accept the call of any
block of the same structure (parameters are graph inputs), so 12 identical blocks compile once,
and germinating the same seed architecture in a second block compiles nothing. The rest of the
model runs eagerly.

Per call the wrapper compares one integer (``slot.structure_generation()``), points each
region's ``_compiled_call_impl`` (nn.Module's own hook for Module.compile) at its dispatcher for
the duration of the call, and each region call reads one counter after it runs. The model itself
is left as it was: called directly, it runs eagerly.

When regions that share a signature need graphs of their own after all (a block whose forward
reads a per-instance attribute, say a layer index), the shared cache fills; a region whose call
then fits none of its graphs moves to a function of its own. Only a region whose own function is
full raises CompileBudgetError, naming the region.

Stage specialisation. Under regions a stage change may specialise the region's graph (see
``stage_graphs``): SeedSlot then runs TRAINING as a plain straight-through estimator with a static
``detach`` where TRAINING isolates, skipping a closed gradient gate's wasted input gradient and a
GATE slot's unused gate network; BLENDING and FOSSILIZED run the blend alone. Each
start_blending (and each return to TRAINING by a prune and germinate) then compiles the region
once, unless a region of that structure was compiled before.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import contextmanager

from torch import nn

from .compiled import (
    CompileBudgetError,
    _Structure,
    budget_message,
    compiled_graphs,
)
from .discovery import named_slots
from .slot import set_stage_graphs, structure_generation

logger = logging.getLogger(__name__)


def _call_region(module, *args, **kwargs):
    # nn.Module's own call path (hooks, then forward), not module(...): while the wrapper runs,
    # module(...) is the region's dispatcher.
    return module._call_impl(*args, **kwargs)


def region_signature(module: nn.Module, stage_graphs: bool) -> tuple:
    """What decides whether two regions can share compiled graphs: the module tree (names and
    classes), every parameter's and buffer's name, shape and dtype, and each slot's structure
    (with ``stage_graphs``, its stage's too). Regions with equal signatures normally trace to
    the same graph; Dynamo's guards decide."""
    modules = tuple((name, type(m)) for name, m in module.named_modules())
    tensors = tuple(
        (name, tuple(t.shape), t.dtype)
        for name, t in (*module.named_parameters(), *module.named_buffers())
    )
    slots = tuple((name, s.compile_structure(stage_graphs)) for name, s in named_slots(module))
    return (type(module), modules, tensors, slots)


class _Region:
    """One region: its module, the function it runs through, and the call that dispatches."""

    def __init__(self, name: str, module: nn.Module, owner: RegionCompiledModule):
        self.name = name
        self.module = module
        self.owner = owner
        self.signature: tuple | None = None
        self.private = False  # its graphs proved its own: no sharing with equal signatures
        self.structure: _Structure | None = None

    @property
    def key(self) -> tuple:
        assert self.signature is not None
        return (self.signature, self.name) if self.private else (self.signature,)

    def __call__(self, *args, **kwargs):
        structure = self.structure
        assert structure is not None
        if structure.full and not structure.fits(self.module, args, kwargs):
            structure = self.owner._overflow(self, args, kwargs)
        before = compiled_graphs()
        out = structure.compiled(self.module, *args, **kwargs)
        if compiled_graphs() != before:
            structure.after_compile()
            structure.compiled_for.add(self.name)
        return out


class RegionCompiledModule(nn.Module):
    """What esper_slot.compile(model, regions=...) returns: call it like the model. The model
    is ``_orig_mod`` (state-dict keys carry the "_orig_mod." prefix, as torch.compile's), and
    attribute lookups that the wrapper does not have go to the model.

    ``regions``: the (qualified name, module) pairs compiled; ``structures_compiled``: functions
    made so far (one per distinct region structure); ``structures_evicted``: unused ones dropped.
    """

    def __init__(
        self,
        model: nn.Module,
        regions: list[tuple[str, nn.Module]],
        keep_structures: int,
        compile_kwargs: dict,
        stage_graphs: bool,
    ):
        super().__init__()
        self._orig_mod = model
        self._compile_kwargs = compile_kwargs
        self._keep = keep_structures
        self._stage_graphs = stage_graphs
        self._regions = [_Region(name, module, self) for name, module in regions]
        self._structures: OrderedDict[tuple, _Structure] = OrderedDict()
        self._generation_seen = -1
        self.structures_compiled = 0
        self.structures_evicted = 0

    @property
    def regions(self) -> list[tuple[str, nn.Module]]:
        return [(r.name, r.module) for r in self._regions]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_orig_mod":
                raise
            return getattr(self._orig_mod, name)

    def forward(self, *args, **kwargs):
        generation = structure_generation()
        if generation != self._generation_seen:  # some slot somewhere changed structure
            self._refresh()
            self._generation_seen = generation
        with self._installed():
            return self._orig_mod(*args, **kwargs)

    @contextmanager
    def _installed(self):
        """Each region's calls go to its dispatcher while the model runs (nn.Module.__call__
        uses ``_compiled_call_impl`` when set, as Module.compile does); restored after."""
        regions = self._regions
        before = [r.module.__dict__.get("_compiled_call_impl") for r in regions]
        for region in regions:
            region.module.__dict__["_compiled_call_impl"] = region
        previous = set_stage_graphs(self._stage_graphs)
        try:
            yield
        finally:
            set_stage_graphs(previous)
            for region, old in zip(regions, before):
                region.module.__dict__["_compiled_call_impl"] = old

    def _refresh(self) -> None:
        """Give every region the function of its current signature; drop unused old ones."""
        for region in self._regions:
            signature = region_signature(region.module, self._stage_graphs)
            if signature != region.signature or region.structure is None:
                region.signature = signature
                region.structure = self._structure(region.key)
        in_use = {r.key for r in self._regions}
        unused = [k for k in self._structures if k not in in_use]
        for key in unused[: max(0, len(unused) - self._keep)]:  # oldest first
            self._structures.pop(key).evict()
            self.structures_evicted += 1
            logger.debug("evicted the compiled graphs of region structure %s", key)

    def _structure(self, key: tuple) -> _Structure:
        structure = self._structures.pop(key, None)
        if structure is None:
            structure = _Structure(key, self._compile_kwargs, body=_call_region, tag="region")
            self.structures_compiled += 1
        self._structures[key] = structure  # most recently used last
        return structure

    def _overflow(self, region: _Region, args, kwargs) -> _Structure:
        """The region's function is full and none of its graphs fits this call: when other
        regions compiled graphs into it, move this region to a function of its own; else (its
        own graphs fill it) raise CompileBudgetError."""
        structure = region.structure
        assert structure is not None
        if not region.private and structure.compiled_for - {region.name}:
            logger.info(
                "region %s needs graphs of its own (regions of its signature share "
                "none): it gets its own compiled function",
                region.name,
            )
            region.private = True
            region.structure = self._structure(region.key)
            return region.structure
        raise CompileBudgetError(budget_message(f"region {region.name!r}", structure.limit))


def find_regions(model: nn.Module, regions) -> list[tuple[str, nn.Module]]:
    """The (qualified name, module) pairs ``regions`` designates in ``model``: every outermost
    instance of the class(es) that holds a SeedSlot, or the listed instances (each a submodule
    of ``model``, none inside another). Raises ValueError for anything else."""
    names = {id(m): name for name, m in model.named_modules()}
    if isinstance(regions, type) or (isinstance(regions, tuple) and regions):
        classes = regions if isinstance(regions, tuple) else (regions,)
        if not all(isinstance(c, type) and issubclass(c, nn.Module) for c in classes):
            raise ValueError(
                f"regions must be an nn.Module subclass, a tuple of them, or a "
                f"list of module instances, got {regions!r}"
            )
        found = [
            (name, m)
            for name, m in model.named_modules()
            if isinstance(m, classes) and named_slots(m)
        ]
        found = [(n, m) for n, m in found if not _inside_another(n, [o for o, _ in found])]
        if not found:
            raise ValueError(
                f"regions={_describe(classes)}: no instance in the model holds a "
                "SeedSlot; pass the class of the blocks that contain the slots"
            )
    elif isinstance(regions, (list, tuple)) and regions:
        found = []
        for module in regions:
            if not isinstance(module, nn.Module) or id(module) not in names:
                raise ValueError(
                    f"regions: {type(module).__name__} object is not a submodule "
                    "of the model; list module instances taken from the model"
                )
            found.append((names[id(module)], module))
        if len({id(m) for _, m in found}) != len(found):
            raise ValueError("regions: a module is listed twice")
        for name, _ in found:
            if _inside_another(name, [n for n, _ in found]):
                raise ValueError(
                    f"regions: {name or '<root>'!r} lies inside another listed "
                    "region; regions must not nest"
                )
    else:
        raise ValueError(
            f"regions must be an nn.Module subclass, a tuple of them, or a "
            f"non-empty list of module instances, got {regions!r}"
        )
    covered = [n for n, _ in found]
    outside = [
        name for name, _ in named_slots(model) if not _inside_another(name, covered, strict=False)
    ]
    if outside:
        logger.warning(
            "esper_slot.compile: slots outside every region run eagerly: %s", ", ".join(outside)
        )
    return found


def _inside_another(name: str, others: Iterable[str], strict: bool = True) -> bool:
    """Whether ``name`` lies inside one of ``others`` (itself excluded when ``strict``)."""
    for other in others:
        if strict and other == name:
            continue
        if other == "" or name == other or name.startswith(other + "."):
            return True
    return False


def _describe(classes: tuple) -> str:
    return classes[0].__name__ if len(classes) == 1 else str(tuple(c.__name__ for c in classes))
