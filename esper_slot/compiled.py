"""esper_slot.compile: torch.compile for a model with slots, for a whole run of lifecycles.

Why it exists. A compiled graph specialises on each slot's structure (whether it holds a seed,
the seed's modules, the blend mode, isolation). Stage changes, alpha ramps and retargets are
tensor data and never recompile, but every germinate() and prune() of any slot gives the model a
new structure, and so a new graph per train/eval mode. torch.compile keeps every graph of a
function in one cache limited to ``torch._dynamo.config.recompile_limit`` (8) entries: a host
with several slots reaches it after a handful of germinate/prune calls, and then raises
``FailOnRecompileLimitHit`` (fullgraph=True) or silently runs eager from then on.

What it does. ``esper_slot.compile(model, **torch_compile_kwargs)`` compiles the model once per
structure: each structure gets a function of its own (a fresh code object, so a cache of its
own), holding only that structure's graphs (train, eval, and whatever the inputs need). When a
slot changes structure, the wrapper switches function; it keeps the most recent
``keep_structures`` of them (a pruned slot often returns the model to a structure it just had)
and evicts the graphs of older ones. Per call it costs one integer comparison
(``slot.structure_generation()``) on top of torch.compile's own dispatch.

If one structure alone would need more graphs than the recompile limit (inputs of ever new
shapes or dtypes, say), the wrapper raises CompileBudgetError naming the fix, before torch.compile
would raise or fall back to eager.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch._dynamo.utils import counters

from .slot import named_slots, structure_generation

logger = logging.getLogger(__name__)

try:  # clears a code object's compiled graphs (what torch._dynamo.reset does for all of them)
    from torch._C._dynamo.eval_frame import reset_code as _reset_code
except ImportError:  # pragma: no cover - other torch versions: dropping the function suffices
    _reset_code = None  # type: ignore[assignment]


# Older torch (2.11 seen): torch.compile has no recompile_limit argument, and Dynamo's recursive
# dict-tag guards skip every parameter's tensor guards while the module's dicts are unchanged,
# so a compiled model does not recompile when a parameter's requires_grad flips. The graph's
# gradients stay right (the autograd engine skips frozen parameters), but what was read at trace
# time (the grad-flow probe's "no seed parameter requires grad") goes stale. Torch 2.13 guards
# requires_grad by default. Both are set per call, where Dynamo reads them (when it compiles).
_COMPILE_TAKES_RECOMPILE_LIMIT = "recompile_limit" in inspect.signature(torch.compile).parameters
_DICT_TAG_GUARDS = bool(getattr(torch._dynamo.config, "use_recursive_dict_tags_for_guards", False))


def _split_compile_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """(what torch.compile takes, the Dynamo config to patch around each call)."""
    kwargs = dict(kwargs)
    config = {"use_recursive_dict_tags_for_guards": False} if _DICT_TAG_GUARDS else {}
    if not _COMPILE_TAKES_RECOMPILE_LIMIT and "recompile_limit" in kwargs:
        config["recompile_limit"] = kwargs.pop("recompile_limit")
    return kwargs, config


class CompileBudgetError(RuntimeError):
    """One slot structure needs more compiled graphs than the recompile limit allows."""


def _call(module, *args, **kwargs):
    return module(*args, **kwargs)


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process: it moves only when some call compiled."""
    return counters["stats"]["unique_graphs"]


# Numbers the functions' code objects process-wide: Dynamo keeps per-function state by code
# name (its automatic-dynamic shape record among it), so two wrappers' functions named alike
# would make each other's input shapes look dynamic, and compile slower symbolic-shape graphs.
_serials = itertools.count(1)


class _Structure:
    """The compiled function of one slot structure (its own code object, so its own cache and
    its own recompile budget). ``body`` is what the compiled function runs on its arguments;
    ``full`` says the cache holds ``limit`` graphs (kept up to date by ``after_compile``)."""

    def __init__(self, key: tuple, compile_kwargs: dict, body=_call, tag: str = "structure"):
        code = body.__code__.replace(co_name=f"esper_slot_{tag}_{next(_serials)}")
        self.key = key
        self.function = types.FunctionType(code, body.__globals__, code.co_name)
        self.limit = compile_kwargs.get("recompile_limit") or torch._dynamo.config.recompile_limit
        self.full = False
        self.compiled_for: set[str] = set()  # regions whose calls compiled graphs here
        kwargs, config = _split_compile_kwargs(compile_kwargs)
        compiled = torch.compile(self.function, **kwargs)
        if config:

            def call(*args, **kw):
                with torch._dynamo.config.patch(**config):
                    return compiled(*args, **kw)

            self.compiled: Callable[..., Any] = call
        else:
            self.compiled = compiled

    def entries(self) -> list:
        return torch._dynamo.eval_frame._debug_get_cache_entry_list(self.function.__code__)

    def after_compile(self) -> None:
        """Call when a call through this structure may have compiled a graph."""
        self.full = len(self.entries()) >= self.limit

    def fits(self, module, args, kwargs) -> bool:
        """Whether a graph in the cache accepts this call (its guards pass)."""
        frame = {"module": module, "args": args, "kwargs": kwargs}
        return any(entry.guard_manager.check(frame) for entry in self.entries())

    def evict(self) -> None:
        if _reset_code is not None:
            _reset_code(self.function.__code__)


def budget_message(where: str, limit: int) -> str:
    return (
        f"esper_slot.compile: {where} already has {limit} compiled graphs (the recompile limit) "
        "and this call fits none of them, so torch.compile would raise FailOnRecompileLimitHit "
        "or fall back to eager. Slot structure changes do not count here (each structure has "
        "its own budget): the calls themselves differ, e.g. new input shapes or dtypes, grad "
        "mode, or frozen parameters. Fix: esper_slot.compile(model, recompile_limit=N) with a "
        "larger N, or dynamic=True when input shapes vary; TORCH_LOGS=recompiles shows what "
        "changed."
    )


class SlotCompiledModule(nn.Module):
    """What esper_slot.compile returns: call it like the model. The model is ``_orig_mod`` (as
    in torch.compile's wrapper), so state dicts carry the "_orig_mod." prefix that
    esper_slot.load_state_dict(..., from_wrapped=True) and strip_wrapper_prefixes remove, and
    attribute lookups that the wrapper does not have go to the model."""

    def __init__(self, model: nn.Module, keep_structures: int, compile_kwargs: dict):
        super().__init__()
        self._orig_mod = model
        self._compile_kwargs = compile_kwargs
        self._keep = keep_structures
        self._structures: OrderedDict[tuple, _Structure] = OrderedDict()
        self._current: _Structure | None = None
        self._generation_seen = -1
        self.structures_compiled = 0  # structures this wrapper has made a function for
        self.structures_evicted = 0

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_orig_mod":
                raise
            return getattr(self._orig_mod, name)

    def structure_key(self) -> tuple:
        """Each slot's structure: its generation while it holds a seed, None while empty (so a
        slot pruned back to empty is the structure it had before germination)."""
        return tuple(
            (name, slot.generation if slot.has_seed else None)
            for name, slot in named_slots(self._orig_mod)
        )

    def forward(self, *args, **kwargs):
        generation = structure_generation()
        if generation != self._generation_seen:  # some slot somewhere changed structure
            self._switch(self.structure_key())
            self._generation_seen = generation
        current = self._current
        assert current is not None
        if current.full and not current.fits(self._orig_mod, args, kwargs):
            raise CompileBudgetError(
                budget_message("the model's current slot structure", current.limit)
            )
        before = compiled_graphs()
        out = current.compiled(self._orig_mod, *args, **kwargs)
        if compiled_graphs() != before:
            current.after_compile()
        return out

    def _switch(self, key: tuple) -> None:
        if self._current is not None and self._current.key == key:
            return
        structure = self._structures.pop(key, None)
        if structure is None:
            structure = _Structure(key, self._compile_kwargs)
            self.structures_compiled += 1
        self._structures[key] = structure  # most recent last
        while len(self._structures) > self._keep:
            _, old = self._structures.popitem(last=False)
            old.evict()
            self.structures_evicted += 1
            logger.debug("evicted the compiled graphs of slot structure %s", old.key)
        self._current = structure
