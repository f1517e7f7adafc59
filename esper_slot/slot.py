"""SeedSlot: where a host network grows a seed. ``features = slot(features)`` in the host's forward.

Stage by stage (see lifecycle.py):
    DORMANT, PRUNED   return host unchanged; no seed exists, nothing is called.
    TRAINING          the straight-through incubator, ste(host, seed(x), copy=True): the output
                      is host bit for bit while the seed trains on the full gradient.
    BLENDING          kernels.blend_{add,multiply,gate}(host, seed(x), alpha), alpha driven by
                      the alpha controller (alpha.py): ramps up, holds, retargets, ramps down.
    FOSSILIZED        the same blend at alpha = 1, for good.
x is host, isolated per stage: TRAINING isolates unless germinate(isolate_gradients=False);
BLENDING isolates a cnn and lets a transformer co-adapt unless start_blending says otherwise.
Isolated, no seed gradient reaches the host, so in TRAINING the host's gradients equal those of
the model without a seed, exactly. When both stages agree, x is host.detach() (or host); when
they differ, x is host through a gradient gate whose buffer flips at start_blending.

torch.compile: state that changes during training is tensor data, never Python state a compiled
graph guards or branches on. alpha is a 0-d buffer, ``incubating`` (True in TRAINING),
``isolating`` and ``seed_frozen`` (a scheduled prune's ramp-down) 0-d bool buffers, all updated in
place; the blend operators read the incubate flag at run time, the gradient gates the other two.
So TRAINING -> BLENDING -> FOSSILIZED, step(), set_alpha(), retarget(), schedule_prune() and the
default isolation switches never recompile, for any number of slots. Only structure specialises
a graph: whether a seed exists, its modules, the blend mode and the isolation kind (fixed from
germinate() to prune(), unless start_blending's isolate_gradients changes it), read by forward as
plain values (a bool and strs compared with ==, never identity tests, which torch.compile may
fold without a guard: pytorch/pytorch#196173), and the kind of alpha override in effect.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch
from torch import Tensor, nn

import kernels

if not hasattr(kernels, "blend_add"):  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"the top-level package 'kernels' found at {getattr(kernels, '__file__', None)} is not "
        "esper-slot's: another distribution with the same import name (e.g. Hugging Face's "
        "'kernels' on PyPI) overwrote or shadows it. esper-slot cannot share an environment "
        "with it: use a separate virtual environment, then reinstall esper-slot there."
    )

from . import registry
from .alpha import CURVES, DEFAULT_STEEPNESS, AlphaSchedule, check_ramp_args
from .blueprints import is_blueprint, zero_init_final_layer
from .discovery import named_slots  # noqa: F401  (re-exported)
from .events import emit
from .extra_state import SCHEMA_VERSION, VERSION_KEY, check_record, raise_if
from .gate import DefaultGate
from .gradient_gate import gradient_gate
from .lifecycle import COOLDOWN_STAGES, SEED_STAGES, BlendMode, LifecycleError, Stage, require_stage
from .metrics import SeedMetrics
from .probes import GradFlowProbe, GradFlowStatus, SeedOutputProbe

# topology -> whether BLENDING isolates the seed by default (TRAINING always does by default)
TOPOLOGIES = {"cnn": True, "transformer": False}
# esper-lite's cooldown after a prune: EMBARGOED for this many epochs, then RESETTING for one
DEFAULT_EMBARGO_EPOCHS = 5
RESETTING_EPOCHS = 1

_last_generation = 0  # the newest SeedSlot.generation handed out, process-wide
# Whether forward, while torch.compile traces it, may specialise on the stage (see forward):
# set by esper_slot.compile(regions=...) around its calls; whole-model graphs keep it False.
_stage_graphs = False


def set_stage_graphs(enabled: bool) -> bool:
    """Let (True) or forbid (False) compiled graphs to specialise on each slot's stage; returns
    the previous setting. Dynamo guards on it, so graphs made under either setting stay apart."""
    global _stage_graphs
    previous, _stage_graphs = _stage_graphs, bool(enabled)
    return previous


def structure_generation() -> int:
    """Grows whenever any slot changes structure (germinate, prune, load): one integer that
    esper_slot.compile compares per call to learn that a model may need other graphs."""
    return _last_generation


def _next_generation() -> int:
    global _last_generation
    _last_generation += 1
    return _last_generation


class _ZeroGradients(torch.autograd.Function):
    """y = x; the listed parameters get zero gradients (not None) without being used. A
    stage-specialised TRAINING graph skips a GATE slot's gate network, whose parameters the
    one-graph form (and eager) give zero gradients: this keeps that contract."""

    @staticmethod
    def forward(ctx, x, *params):
        ctx.shapes = [(p.shape, p.dtype, p.device) for p in params]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (
            grad,
            *(
                torch.zeros(shape, dtype=dtype, device=device)
                for shape, dtype, device in ctx.shapes
            ),
        )


class SeedSlot(nn.Module):
    """A slot for one seed at a point of the host's forward pass.

    Args:
        channels: the host features' channel count (dim 1 for cnn [B, C, H, W], the last dim for
            transformer [B, T, C]); checked on every forward.
        topology: "cnn" or "transformer"; sets whether BLENDING isolates the seed by default
            (cnn: True, transformer: False, as esper-lite); TRAINING isolates by default always.

    embargo: False (default): a pruned slot may germinate again at once. True: esper-lite's
        cooldown, EMBARGOED for 5 epochs then RESETTING for 1 (an int: that many EMBARGOED
        epochs); ``step_epoch()`` advances it, and germinate raises LifecycleError until the
        slot is DORMANT again.

    Seed metrics (``slot.metrics``, metrics.py) are host-side numbers that forward never
    reads: ``record_accuracy``, ``record_contribution`` and ``record_gradients`` feed them, stage
    changes rebase them, and they are saved in the slot's record. Lifecycle events go to
    ``esper_slot.LifecycleEvents`` subscribers (events.py).

    ``check_seed_output`` (default True): train-mode forwards count the passes whose seed output
    held NaN or Inf (the fused kernels flag it from the values they load; elsewhere one min/max
    reduction of it; see bench/NOTES.md for its cost), reported by check_grad_flow and
    GradientTelemetry.read(). Set it False to skip it.
    """

    _is_esper_seed_slot = True  # how discovery.named_slots recognises a slot

    # Buffers and submodules, declared for type checkers (nn.Module's __getattr__ is untyped).
    alpha: Tensor
    incubating: Tensor
    isolating: Tensor
    seed_frozen: Tensor
    overriding: Tensor
    alpha_override: Tensor
    alpha_override_per_sample: Tensor
    grad_flow: GradFlowProbe
    seed_output: SeedOutputProbe

    def __init__(self, channels: int, topology: str, *, embargo: bool | int = False):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {sorted(TOPOLOGIES)}, got {topology!r}")
        if isinstance(embargo, bool):
            embargo_epochs = DEFAULT_EMBARGO_EPOCHS if embargo else 0
        elif isinstance(embargo, int) and embargo >= 0:
            embargo_epochs = embargo
        else:
            raise ValueError(
                f"embargo must be True, False or an int >= 0 (epochs), got {embargo!r}"
            )
        self.channels = channels
        self.topology = topology
        self.embargo_epochs = embargo_epochs  # 0: no cooldown after a prune
        self.metrics = SeedMetrics()
        self.stage = Stage.DORMANT  # host-side only: forward never reads it
        self._blend = BlendMode.ADD.value  # forward compares this str by value
        self._seeded = False  # forward's "is there a seed" (a bool, never `seed is None`)
        # How forward isolates (structure, compared by value): "detach" when both stages
        # isolate, "none" when neither does, "gated" (the gradient gate, read at run time) when
        # TRAINING and BLENDING differ. A static detach skips the seed's input gradient, which a
        # closed gate computes and then zeroes (a whole backward-data pass of the seed's first
        # layer), so the gate is used only where the stages differ.
        self._isolation = "detach"
        self.generation = 0  # unique per structure this slot has had (see structure_generation)
        self._incubating_stage = False  # stage is TRAINING: host-side mirror of `incubating`
        self._structure_seen: tuple = (False,)  # compile_structure() when last announced
        self.isolate_training = True  # isolation per stage (the incubator's, and BLENDING's)
        self.isolate_blending = TOPOLOGIES[topology]
        self.prune_scheduled = False  # a ramp-down to 0 ends in prune()
        self._prune_reason: str | None = None  # a scheduled prune's reason, for its event
        self.schedule = AlphaSchedule()  # the alpha controller (host floats; see alpha.py)
        self.seed: nn.Module | None = None
        self.gate: nn.Module | None = None
        # How to rebuild the seed and gate from a checkpoint (see registry.py).
        self.seed_factory: str | None = None
        self.seed_kwargs: dict = {}
        self.gate_kind = "none"
        self.gate_factory: str | None = None
        self.gate_kwargs: dict = {}
        # Not persistent: both are saved in the slot's record (get_extra_state) as alpha/stage.
        self.register_buffer("alpha", torch.zeros(()), persistent=False)
        self.register_buffer("incubating", torch.zeros((), dtype=torch.bool), persistent=False)
        # Gradient gates (saved as isolate_*/prune_scheduled in the record).
        self.register_buffer("isolating", torch.ones((), dtype=torch.bool), persistent=False)
        self.register_buffer("seed_frozen", torch.zeros((), dtype=torch.bool), persistent=False)
        # Counterfactual passes (alpha_overridden): which override forward uses, and its value.
        # A number override is tensor data (`overriding` selects `alpha_override`), so ablating
        # slots one at a time never recompiles; a per-sample one changes forward's structure.
        self._override: str = "none"  # "none", "scalar" or "per_sample"; forward reads a bool
        self._per_sample_override = False
        self.register_buffer("overriding", torch.zeros((), dtype=torch.bool), persistent=False)
        self.register_buffer("alpha_override", torch.zeros(()), persistent=False)
        self.register_buffer("alpha_override_per_sample", torch.zeros(0), persistent=False)
        self.grad_flow = GradFlowProbe()
        self.seed_output = SeedOutputProbe()
        self.check_seed_output = True
        self.name = ""  # set by check_grad_flow(model) to the slot's qualified name
        self._rebuild_dtype: torch.dtype | None = None
        from .checkpoint import install_load_guard

        install_load_guard(self)

    # ---- forward ----

    @property
    def has_seed(self) -> bool:
        """A seed is in the slot (TRAINING, BLENDING or FOSSILIZED)."""
        return self._seeded

    @property
    def blend_mode(self) -> BlendMode:
        """How BLENDING mixes the seed in (ADD for a slot without a seed)."""
        return BlendMode(self._blend)

    @property
    def isolate_gradients(self) -> bool:
        """Whether the current stage keeps the seed's gradients out of the host: TRAINING's
        setting in TRAINING (and before a seed exists), BLENDING's in BLENDING and FOSSILIZED."""
        if self.stage in (Stage.BLENDING, Stage.FOSSILIZED):
            return self.isolate_blending
        return self.isolate_training

    @property
    def alpha_mode(self) -> str:
        """ "HOLD" (no ramp running), "UP" or "DOWN"."""
        return self.schedule.mode

    def forward(self, host: Tensor) -> Tensor:
        if not self._seeded:  # DORMANT or PRUNED (one compiled graph for both)
            return host
        self._check_features(host)
        if _stage_graphs and torch.compiler.is_compiling():
            return self._stage_forward(host)
        isolation = self._isolation
        if isolation == "detach":
            seed_input = host.detach()
        elif isolation == "gated":
            seed_input = gradient_gate(host, self.isolating)
        else:
            seed_input = host
        seed_module = self.seed
        assert seed_module is not None  # _seeded says so (a trace-time fact, no graph cost)
        seed = seed_module(seed_input)
        # The non-finite seed-output probe: inside the fused Triton kernels when they run (eager
        # on CUDA or the interpreter: from the seed values they load, no launch of its own),
        # else one min/max of the seed here (fused by Inductor into the blend's loop).
        probe = None
        if self.training:
            self.grad_flow.record(seed, seed_module)
            if self.check_seed_output:
                if (
                    not torch.compiler.is_compiling()
                    and kernels.active_backend(host.device) == "triton"
                ):
                    probe = torch.zeros(1, dtype=torch.int32, device=host.device)
                else:
                    self.seed_output.record(seed)
        seed = gradient_gate(seed, self.seed_frozen)
        # One call for TRAINING, BLENDING and FOSSILIZED: while `incubating` holds True the
        # operator is ste(host, seed, copy=True) (a copy, so in-place ops after the slot such as
        # ReLU(inplace=True) keep working); then it blends by alpha.
        flag = self.incubating
        if self._per_sample_override:
            alpha = self.alpha_override_per_sample.reshape((-1,) + (1,) * (host.dim() - 1))
        elif torch.compiler.is_compiling():
            alpha = torch.where(self.overriding, self.alpha_override, self.alpha)
        else:  # eager: no op for the common case
            alpha = self.alpha_override if self._override == "scalar" else self.alpha
        if torch.is_grad_enabled():
            # Snapshots for backward: step(), set_alpha() or a stage change between forward and
            # backward fill the buffers in place, and the operators save what they are given.
            alpha, flag = alpha.clone(), flag.clone()
        mode = self._blend
        if mode == "ADD":
            out = kernels.blend_add(host, seed, alpha, incubate=flag, nonfinite=probe)
        elif mode == "MULTIPLY":
            if isolation == "detach":  # host is read once
                out = kernels.blend_multiply_detached(
                    host, seed, alpha, incubate=flag, nonfinite=probe
                )
            else:
                seed_in = host if isolation == "none" else seed_input
                out = kernels.blend_multiply(
                    host, seed, alpha, seed_in, incubate=flag, nonfinite=probe
                )
        else:
            gate_module = self.gate
            assert gate_module is not None  # a GATE slot always has one
            gate = gradient_gate(gate_module(seed_input), self.seed_frozen)  # pruned with seed
            out = kernels.blend_gate(host, seed, alpha, gate, incubate=flag, nonfinite=probe)
        if probe is not None:
            with torch.no_grad():
                self.seed_output.count.add_(probe)
        return out

    def _stage_forward(self, host: Tensor) -> Tensor:
        """forward as a graph specialised on the stage (regional compilation only; see
        set_stage_graphs): the stage and its isolation are Python values here, which Dynamo
        guards on. TRAINING is ste(host, seed, copy=True) on a seed fed host.detach() where
        TRAINING isolates (no gradient gate computing the seed's input gradient only to zero it);
        a GATE slot's gate network is not run, its parameters get zero gradients as in the
        one-graph form. BLENDING and FOSSILIZED are the blend alone, with the gradient gates
        that freeze the seed and gate only during a scheduled prune's ramp-down. Values and
        gradients equal forward's other forms."""
        incubating = self._incubating_stage
        isolate = self.isolate_training if incubating else self.isolate_blending
        seed_input = host.detach() if isolate else host
        seed_module = self.seed
        assert seed_module is not None
        seed = seed_module(seed_input)
        if self.training:
            self.grad_flow.record(seed, seed_module)
            if self.check_seed_output:
                self.seed_output.record(seed)
        if incubating:
            out = kernels.ste(host, seed, copy=True)
            gate_module = self.gate
            if gate_module is not None and torch.is_grad_enabled():
                trainable = [p for p in gate_module.parameters() if p.requires_grad]
                if trainable:
                    out = _ZeroGradients.apply(out, *trainable)
            return out
        frozen = self.prune_scheduled  # the ramp-down's gradient gates, only while it runs
        if frozen:
            seed = gradient_gate(seed, self.seed_frozen)
        if self._per_sample_override:
            alpha = self.alpha_override_per_sample.reshape((-1,) + (1,) * (host.dim() - 1))
        else:
            alpha = torch.where(self.overriding, self.alpha_override, self.alpha)
        if torch.is_grad_enabled():
            alpha = alpha.clone()  # a snapshot for backward, as in forward
        mode = self._blend
        if mode == "ADD":
            return kernels.blend_add(host, seed, alpha)
        if mode == "MULTIPLY":
            if isolate:
                return kernels.blend_multiply_detached(host, seed, alpha)
            return kernels.blend_multiply(host, seed, alpha, host)
        gate_module = self.gate
        assert gate_module is not None
        gate = gate_module(seed_input)
        if frozen:
            gate = gradient_gate(gate, self.seed_frozen)
        return kernels.blend_gate(host, seed, alpha, gate)

    def compile_structure(self, stage_graphs: bool = True) -> tuple:
        """What a regionally compiled graph of this slot specialises on: whether it holds a
        seed, the blend mode, the isolation kind, and with ``stage_graphs`` whether it is in
        TRAINING, whether the current stage isolates, and whether a scheduled prune ramps
        down. (The seed's own modules are part of the region's signature.)"""
        if not self._seeded:
            return (False,)
        stage = (
            (self._incubating_stage, self.isolate_gradients, self.prune_scheduled)
            if stage_graphs
            else ()
        )
        return (True, self._blend, self._isolation, *stage)

    @contextmanager
    def alpha_overridden(self, value):
        """Inside the block, a seeded slot blends with ``value`` instead of its own alpha: a
        number in [0, 1], or a per-sample tensor of shape [B] (values in [0, 1], any floating
        dtype, batched counterfactuals). In TRAINING the output is the host anyway; an empty slot
        ignores it. The slot's alpha, ramp and record are untouched. Under torch.compile each
        override kind (none, number, per-sample) compiles once; values change without
        recompiling (a per-sample override of another batch size recompiles, as any shape).
        A number override is tensor data: overriding any subset of slots, one at a time or
        together, shares one graph; a per-sample override compiles one per slot using it."""
        if self._override != "none":
            raise LifecycleError(
                f"{self._label()}: alpha is already overridden; leave that "
                "block first (overrides do not nest)"
            )
        if isinstance(value, Tensor):
            if (
                value.dim() != 1
                or not value.is_floating_point()
                or value.numel() == 0
                or value.device != self.alpha.device
            ):
                raise ValueError(
                    f"a per-sample alpha override must be a 1-D floating tensor [B] on "
                    f"{self.alpha.device}, got dtype {value.dtype}, shape {list(value.shape)} "
                    f"on {value.device}"
                )
            if not bool(((value >= 0) & (value <= 1)).all()):
                raise ValueError("a per-sample alpha override must hold values in [0, 1]")
            kind, values = "per_sample", value.detach().to(self.alpha.dtype)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            kind, values = "scalar", torch.tensor(float(value), dtype=self.alpha.dtype)
        else:
            raise ValueError(
                f"alpha override must be a number in [0, 1] or a [B] tensor, got {value!r}"
            )
        # In place (compiled graphs read the new values; replacing a buffer would invalidate
        # them): only a per-sample override of a new batch size gets a new buffer.
        name = "alpha_override" if kind == "scalar" else "alpha_override_per_sample"
        with torch.no_grad():
            if getattr(self, name).shape == values.shape:
                getattr(self, name).copy_(values)
            else:
                setattr(self, name, values.to(self.alpha.device).clone())
        self._override = kind
        self._per_sample_override = kind == "per_sample"
        with torch.no_grad():
            self.overriding.fill_(kind == "scalar")
        try:
            yield self
        finally:
            self._override = "none"
            self._per_sample_override = False
            with torch.no_grad():
                self.overriding.fill_(False)

    def _check_features(self, host: Tensor) -> None:
        dim = 1 if self.topology == "cnn" else -1
        if host.dim() < 2 or host.shape[dim] != self.channels:
            raise ValueError(
                f"{self._label()}: expected {self.topology} features with {self.channels} "
                f"channels in dim {dim}, got shape {tuple(host.shape)}"
            )

    # ---- lifecycle ----

    def germinate(
        self,
        seed: nn.Module | str,
        blend: BlendMode = BlendMode.ADD,
        gate: nn.Module | str | None = None,
        isolate_gradients: bool | None = None,
        *,
        seed_kwargs: dict | None = None,
        gate_kwargs: dict | None = None,
    ) -> None:
        """Put ``seed`` in the slot in TRAINING (the incubator).

        seed: an nn.Module, or the name of a factory registered with esper_slot.register_seed,
            called with ``seed_kwargs`` (JSON values); only named seeds can be rebuilt by
            loading a checkpoint into an empty slot.
        blend: how BLENDING will mix it in. gate: the gate network for BlendMode.GATE (input: the
            seed's input; output: [B, 1, ..., 1] in [0, 1]), a module or a registered factory
            name (with ``gate_kwargs``); None builds DefaultGate.
        isolate_gradients: whether TRAINING keeps the seed's gradients out of the host. None
            (default) isolates, for every topology: the incubator must not disturb the host;
            False lets the seed co-adapt from the start.
        The seed and gate are moved to the slot's device (its alpha buffer's).
        """
        self._refuse_during_cooldown()
        require_stage("germinate", self.stage, self._label())
        if not isinstance(seed, (nn.Module, str)):
            raise ValueError(
                f"seed must be an nn.Module or a registered factory name, got {type(seed).__name__}"
            )
        if not isinstance(blend, BlendMode):
            raise ValueError(f"blend must be a BlendMode, got {blend!r}")
        if gate is not None and blend != BlendMode.GATE:
            raise ValueError(f"a gate network is only used with BlendMode.GATE, not {blend.name}")
        if gate is not None and not isinstance(gate, (nn.Module, str)):
            raise ValueError(
                f"gate must be an nn.Module or a registered factory name, got {type(gate).__name__}"
            )
        if isolate_gradients is not None and not isinstance(isolate_gradients, bool):
            raise ValueError(
                f"isolate_gradients must be True, False or None, got {isolate_gradients!r}"
            )
        seed_kwargs = registry.check_kwargs(seed_kwargs or {}, "seed_kwargs")
        gate_kwargs = registry.check_kwargs(gate_kwargs or {}, "gate_kwargs")
        seed_factory = seed if isinstance(seed, str) else None
        gate_factory = gate if isinstance(gate, str) else None
        if isinstance(seed, str):
            seed = registry.build(seed, seed_kwargs, self.topology, self.channels)
            if blend == BlendMode.MULTIPLY and is_blueprint(self.topology, seed_factory or ""):
                # esper-lite's rule for MULTIPLY: the blueprint's last affine layer starts at 0
                zero_init_final_layer(seed, allow_missing=True)
        gate_kind = "none"
        gate_module: nn.Module | None = None  # a gate is only given with BlendMode.GATE
        if blend == BlendMode.GATE:
            gate_kind = "factory" if gate_factory else "custom" if gate is not None else "default"
            gate_module = (
                registry.build(gate, gate_kwargs)
                if isinstance(gate, str)
                else DefaultGate(self.channels, self.topology)
                if gate is None
                else gate
            )
        device = self.alpha.device
        self._install(
            seed.to(device), gate_module.to(device) if gate_module is not None else None, blend
        )
        self.seed_factory, self.seed_kwargs = seed_factory, seed_kwargs if seed_factory else {}
        self.gate_kind, self.gate_factory = gate_kind, gate_factory
        self.gate_kwargs = gate_kwargs if gate_factory else {}
        self.isolate_training = True if isolate_gradients is None else isolate_gradients
        self._isolation = ""  # set below, inside this structure's generation
        self.isolate_blending = TOPOLOGIES[self.topology]
        self._update_isolation()
        self._reset_schedule()
        self.grad_flow.reset()
        previous = self.stage
        self.metrics = SeedMetrics()
        self._enter(Stage.TRAINING)
        self._emit("germinated", previous)

    def start_blending(
        self,
        steps: int,
        curve: str = "linear",
        steepness: float = DEFAULT_STEEPNESS,
        target: float = 1.0,
        isolate_gradients: bool | None = None,
    ) -> None:
        """Enter BLENDING with alpha = 0 and ramp it to ``target`` over ``steps`` calls of
        step() (steps = 0: at once), on ``curve`` ("linear", "cosine" or "sigmoid", whose
        ``steepness`` is the logistic's slope), exactly as esper-lite's AlphaController.

        isolate_gradients: whether BLENDING keeps the seed's gradients out of the host. None:
            the topology's default (cnn isolated, transformer co-adapting); a bool overrides.
            Switching it costs no recompile (a gradient gate driven by a buffer)."""
        require_stage("start_blending", self.stage, self._label())
        check_ramp_args(target, steps, curve, steepness)
        if isolate_gradients is not None and not isinstance(isolate_gradients, bool):
            raise ValueError(
                f"isolate_gradients must be True, False or None, got {isolate_gradients!r}"
            )
        schedule = AlphaSchedule()
        schedule.retarget(target, steps, curve, steepness)
        self.schedule = schedule
        self.isolate_blending = (
            TOPOLOGIES[self.topology] if isolate_gradients is None else isolate_gradients
        )
        self._update_isolation()
        self._set_alpha(schedule.alpha)
        self._change_stage(Stage.BLENDING)

    def retarget(
        self, target: float, steps: int, curve: str | None = None, steepness: float | None = None
    ) -> None:
        """Ramp from the current alpha to ``target`` over ``steps`` calls of step(); curve and
        steepness default to the last ramp's. Only when the ramp has finished (HOLD)."""
        require_stage("retarget", self.stage, self._label())
        check_ramp_args(target, steps, curve, steepness)
        if self.schedule.mode != "HOLD":
            raise LifecycleError(
                f"{self._label()}.retarget() needs the ramp to have finished (alpha mode HOLD), "
                f"but it is {self.schedule.mode} at step {self.schedule.steps_done} of "
                f"{self.schedule.steps_total} (alpha {self.schedule.alpha:.6g}): call step() "
                "until alpha_mode is 'HOLD', or set_alpha()"
            )
        self.schedule.retarget(target, steps, curve, steepness)
        self._set_alpha(self.schedule.alpha)

    def step(self) -> float:
        """Advance the alpha ramp one step; returns the new alpha (unchanged at HOLD). At the
        end of a scheduled prune's ramp-down the slot prunes itself and returns 0.0."""
        require_stage("step", self.stage, self._label())
        self.schedule.step()
        if self.prune_scheduled and self.schedule.mode == "HOLD":
            self.prune(reason=self._prune_reason or "scheduled_prune", initiator="schedule")
            return 0.0
        self._set_alpha(self.schedule.alpha)
        return self.schedule.alpha

    def set_alpha(self, value: float) -> None:
        """Set alpha directly (BLENDING only), in [0, 1]; stops any ramp (HOLD)."""
        require_stage("set_alpha", self.stage, self._label())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {value!r}")
        self._refuse_if_pruning("set_alpha")
        self.schedule.hold(float(value))
        self._set_alpha(self.schedule.alpha)

    def schedule_prune(
        self, steps: int, curve: str = "linear", *, reason: str | None = None
    ) -> None:
        """Ramp alpha down to 0 over ``steps`` calls of step(), then prune (stage PRUNED, output
        == host) on the step that reaches 0; steps = 0 or alpha already 0 prunes now. Works at
        any alpha, mid-ramp included. While it ramps down the seed's parameters get zero
        gradients, and so does a GATE slot's gate network (gradient gates on their outputs: no
        recompile); an optimizer with momentum or weight decay still moves them unless you freeze
        them yourself. A sigmoid ramp-down uses esper-lite's steepness, 12. ``reason`` is the
        prune's, in its "pruned" event (default "scheduled_prune")."""
        require_stage("schedule_prune", self.stage, self._label())
        if curve is None:
            raise ValueError(f"curve must be one of {CURVES}, got None")
        check_ramp_args(0.0, steps, curve, None)
        self._refuse_if_pruning("schedule_prune")
        if steps == 0 or self.schedule.alpha == 0.0:
            self.prune(reason=reason or "scheduled_prune", initiator="schedule")
            return
        self.schedule.mode = "HOLD"  # a running ramp is replaced by the ramp-down
        self.schedule.retarget(0.0, steps, curve, DEFAULT_STEEPNESS)  # esper-lite's sigmoid
        self.prune_scheduled = True
        self._prune_reason = reason
        self._set_alpha(self.schedule.alpha)
        self._change_stage(Stage.BLENDING)

    def fossilize(self) -> None:
        """Make the seed permanent. Needs alpha == 1.0 at HOLD (a finished ramp to 1)."""
        require_stage("fossilize", self.stage, self._label())
        schedule = self.schedule
        if schedule.alpha != 1.0 or schedule.mode != "HOLD" or self.prune_scheduled:
            raise LifecycleError(
                f"{self._label()}.fossilize() needs alpha 1.0 at HOLD, but alpha is "
                f"{schedule.alpha:.6g} with mode {schedule.mode} (step {schedule.steps_done} of "
                f"{schedule.steps_total}{', a prune scheduled' if self.prune_scheduled else ''})"
                ": ramp to 1.0 and step() until alpha_mode is 'HOLD', or set_alpha(1.0)"
            )
        self._change_stage(Stage.FOSSILIZED)
        self._emit("fossilized", Stage.BLENDING)

    def _refuse_if_pruning(self, action: str) -> None:
        if self.prune_scheduled:
            raise LifecycleError(
                f"{self._label()}.{action}(): a prune is scheduled (alpha "
                f"{self.schedule.alpha:.6g}, ramping down); it ends in prune()"
            )

    def prune(self, *, reason: str | None = None, initiator: str = "user") -> None:
        """Remove the seed (and gate): the slot returns host unchanged again. ``reason`` and
        ``initiator`` go into the "pruned" event. The seed's metrics stay readable until the
        next germinate (or the end of an embargo's cooldown)."""
        require_stage("prune", self.stage, self._label())
        blueprint, alpha = self.seed_factory, self.schedule.alpha
        self._install(None, None, BlendMode.ADD)
        self._forget_seed_source()
        self._reset_schedule()
        self.grad_flow.reset()
        self._prune_reason = None
        previous = self.stage
        self._change_stage(Stage.PRUNED, alpha=alpha, blueprint=blueprint)
        self._emit(
            "pruned",
            previous,
            alpha=alpha,
            blueprint=blueprint,
            reason=reason or "user",
            initiator=initiator,
        )

    # ---- metrics, epochs and the embargo ----

    def record_accuracy(self, accuracy: float) -> None:
        """Record an evaluation (e.g. the epoch's validation accuracy, in percent as
        esper-lite's gates expect): one epoch for the seed's metrics. A slot without a seed
        records nothing (a controller may call it on every slot)."""
        if self.stage in SEED_STAGES:
            self.metrics.record_accuracy(accuracy)

    def record_contribution(self, contribution: float) -> None:
        """Record a counterfactual contribution (accuracy minus accuracy with this slot's alpha
        forced to 0, see esper_slot.ablated) and update its trend."""
        if self.stage not in SEED_STAGES:
            raise LifecycleError(
                f"{self._label()}.record_contribution(): the slot holds no seed "
                f"(stage {self.stage.name})"
            )
        self.metrics.record_contribution(contribution)

    def record_gradients(self, stats) -> None:
        """Record a SlotGradientStats (GradientTelemetry.read()[name]): its esper-lite ratio
        becomes ``metrics.seed_gradient_norm_ratio`` when it collected any step."""
        if self.stage in SEED_STAGES and stats.steps > 0:
            self.metrics.record_gradient_ratio(stats.ratio)

    def step_epoch(self) -> None:
        """One epoch of an embargo's cooldown (a no-op without an embargo or outside it), as
        esper-lite's step_epoch: PRUNED -> EMBARGOED; each epoch in EMBARGOED counts, and after
        ``embargo`` of them RESETTING; one epoch there, then DORMANT with fresh metrics. It does
        not move alpha (step() does)."""
        if not self.embargo_epochs or self.stage not in COOLDOWN_STAGES:
            return
        if self.stage == Stage.PRUNED:
            self._change_stage(Stage.EMBARGOED)
            return
        self.metrics.tick()
        if self.stage == Stage.EMBARGOED:
            if self.metrics.epochs_in_current_stage >= self.embargo_epochs:
                self._change_stage(Stage.RESETTING)
        elif self.metrics.epochs_in_current_stage >= RESETTING_EPOCHS:
            self._change_stage(Stage.DORMANT)
            self.metrics = SeedMetrics()

    def cooldown_epochs_left(self) -> int:
        """step_epoch() calls before the slot can germinate again (0: it can now)."""
        if not self.embargo_epochs or self.stage not in COOLDOWN_STAGES:
            return 0
        done = self.metrics.epochs_in_current_stage
        if self.stage == Stage.PRUNED:
            return 1 + self.embargo_epochs + RESETTING_EPOCHS
        if self.stage == Stage.EMBARGOED:
            return self.embargo_epochs - done + RESETTING_EPOCHS
        return RESETTING_EPOCHS - done

    def _refuse_during_cooldown(self) -> None:
        left = self.cooldown_epochs_left()
        if left:
            raise LifecycleError(
                f"{self._label()}.germinate(): the slot is {self.stage.name}, in the embargo "
                f"after its prune ({self.embargo_epochs} epochs EMBARGOED, then "
                f"{RESETTING_EPOCHS} RESETTING): {left} more step_epoch() call(s) before it can "
                "germinate again"
            )

    def _change_stage(
        self, stage: Stage, alpha: float | None = None, blueprint: str | None = None
    ) -> None:
        """A stage change by a lifecycle call: the stage, the metrics' stage baseline, and the
        "stage_changed" event."""
        previous = self.stage
        self._enter(stage)
        if stage != previous:
            self.metrics.stage_changed(previous == Stage.TRAINING and stage == Stage.BLENDING)
            self._emit("stage_changed", previous, alpha=alpha, blueprint=blueprint)

    def emit_gate_result(self, result) -> None:
        """Announce a quality gate's result for this slot to the LifecycleEvents hubs
        (esper_slot.gates.advance calls it): a "gate_evaluated" event from the current stage."""
        self._emit("gate_evaluated", self.stage, gate=result, to_stage=None)

    def _emit(
        self,
        kind: str,
        previous: Stage | None,
        *,
        alpha: float | None = None,
        blueprint: str | None = None,
        to_stage: str | None = "",
        **fields,
    ) -> None:
        metrics = self.metrics
        emit(
            self,
            kind,
            from_stage=None if previous is None else previous.name,
            to_stage=self.stage.name if to_stage == "" else to_stage,
            alpha=self.schedule.alpha if alpha is None else alpha,
            epoch=metrics.epochs_total,
            blueprint=blueprint if blueprint is not None else self.seed_factory,
            improvement=metrics.total_improvement,
            contribution=metrics.counterfactual_contribution,
            **fields,
        )

    def _reset_schedule(self) -> None:
        self.schedule = AlphaSchedule()
        self.prune_scheduled = False
        self._set_alpha(0.0)

    def _forget_seed_source(self) -> None:
        self.seed_factory, self.seed_kwargs = None, {}
        self.gate_kind, self.gate_factory, self.gate_kwargs = "none", None, {}

    def _update_isolation(self) -> None:
        """Set forward's isolation structure from the two stages' settings; a change is a new
        structure (a new graph): only an isolate_gradients at start_blending that turns a
        uniform setting into a mixed one or back costs one."""
        kind = (
            "detach"
            if self.isolate_training and self.isolate_blending
            else "none"
            if not (self.isolate_training or self.isolate_blending)
            else "gated"
        )
        if kind != self._isolation:
            self._isolation = kind
            if self._seeded:
                self.generation = _next_generation()

    def _install(self, seed: nn.Module | None, gate: nn.Module | None, blend: BlendMode) -> None:
        """Set the slot's structure: what compiled graphs specialise on."""
        self.seed, self.gate = seed, gate
        self._seeded = seed is not None
        self._blend = blend.value
        self.generation = _next_generation()
        self.seed_output.new_seed(self.generation)

    def _enter(self, stage: Stage) -> None:
        """Set the stage and its tensor form (in place: compiled graphs read the new value)."""
        self.stage = stage
        self._incubating_stage = stage == Stage.TRAINING
        structure = self.compile_structure()
        if structure != self._structure_seen:  # regional stage graphs change: tell the
            self._structure_seen = structure  # wrappers (not `generation`: whole-model
            _next_generation()  # graphs stay as they are)
        for flag, value in (
            (self.incubating, stage == Stage.TRAINING),
            (self.isolating, self.isolate_gradients),
            (self.seed_frozen, self.prune_scheduled),
        ):
            if bool(flag) != value:  # only on change: a fill bumps the version autograd checks
                with torch.no_grad():
                    flag.fill_(value)

    def _set_alpha(self, value: float) -> None:
        with torch.no_grad():
            self.alpha.fill_(value)  # in place: compiled graphs read the new value, no recompile

    # ---- checkpoints: see extra_state.py (the record) and checkpoint.py (model-wide loading) ----

    def get_extra_state(self) -> dict:
        """The slot's record: primitives only, the same keys in every stage."""
        return {
            VERSION_KEY: SCHEMA_VERSION,
            "stage": self.stage.name,
            **self.schedule.fields(),
            "prune_scheduled": self.prune_scheduled,
            "blend_mode": self.blend_mode.name,
            "topology": self.topology,
            "channels": self.channels,
            "isolate_training": self.isolate_training,
            "isolate_blending": self.isolate_blending,
            "seed_factory": self.seed_factory,
            "seed_kwargs": dict(self.seed_kwargs),
            "gate_kind": self.gate_kind,
            "gate_factory": self.gate_factory,
            "gate_kwargs": dict(self.gate_kwargs),
            "metrics": self.metrics.to_record(),
            "embargo_epochs": self.embargo_epochs,
        }

    def check_record(self, state) -> list[str]:
        """Every problem with ``state`` as this slot's record ([] when it can be applied)."""
        return check_record(
            state,
            slot=self._label(),
            channels=self.channels,
            topology=self.topology,
            has_seed=self.seed is not None,
            has_gate=self.gate is not None,
        )

    def set_extra_state(self, state) -> None:
        """Validate the whole record, then apply it. A bad record raises CheckpointError naming
        every problem, and the slot is left exactly as it was."""
        raise_if(
            self.check_record(state),
            self._label(),
            state.get(VERSION_KEY) if isinstance(state, dict) else None,
        )
        stage = Stage[state["stage"]]
        blend = BlendMode[state["blend_mode"]]
        seed, gate = self.seed, self.gate
        if stage in SEED_STAGES:  # build what is missing before changing anything
            try:
                if seed is None:
                    seed = self._rebuilt(
                        registry.build(
                            state["seed_factory"],
                            state["seed_kwargs"],
                            self.topology,
                            self.channels,
                        )
                    )
                if state["gate_kind"] == "none":
                    gate = None
                elif gate is None or self.seed is None:
                    gate = self._rebuilt(
                        DefaultGate(self.channels, self.topology)
                        if state["gate_kind"] == "default"
                        else registry.build(state["gate_factory"], state["gate_kwargs"])
                    )
            except ValueError as err:
                raise_if([str(err)], self._label(), state[VERSION_KEY])
        else:
            seed = gate = None
        self._install(seed, gate, blend)
        self.isolate_training = state["isolate_training"]
        self.isolate_blending = state["isolate_blending"]
        self._update_isolation()
        self.prune_scheduled = state["prune_scheduled"]
        self.schedule = AlphaSchedule.from_fields(state)
        self._enter(stage)
        self.seed_factory, self.seed_kwargs = state["seed_factory"], dict(state["seed_kwargs"])
        self.gate_kind, self.gate_factory = state["gate_kind"], state["gate_factory"]
        self.gate_kwargs = dict(state["gate_kwargs"])
        self.metrics = SeedMetrics.from_record(state["metrics"])
        self.embargo_epochs = state["embargo_epochs"]
        self._prune_reason = None
        self._set_alpha(self.schedule.alpha)
        self.grad_flow.reset()

    def _rebuilt(self, module: nn.Module) -> nn.Module:
        """A module rebuilt from a factory, on the slot's device and in the saved dtype."""
        return module.to(device=self.alpha.device, dtype=self._rebuild_dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A seed rebuilt during this load takes the dtype its saved parameters have.
        self._rebuild_dtype = next(
            (
                v.dtype
                for k, v in state_dict.items()
                if k.startswith(prefix + "seed.") and torch.is_tensor(v) and v.is_floating_point()
            ),
            None,
        )
        try:
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        finally:
            self._rebuild_dtype = None

    # ---- grad-flow status ----

    def check_grad_flow(self, name: str | None = None, _counts=None) -> GradFlowStatus:
        """Read this slot's grad-flow buffers (outside any compiled region), log ONE warning on
        the "esper_slot" logger per blocked episode, and return the status."""
        if name:
            self.name = name
        expected = self.stage in SEED_STAGES
        counts = (
            _counts
            if _counts is not None
            else torch.cat([self.grad_flow.counts, self.seed_output.count]).tolist()
        )
        status = self.grad_flow.status(self._label(), self.stage.name, expected, counts[:3])
        bad = self.seed_output.check(self._label(), counts[3], counts[0])
        return dataclasses.replace(status, seed_output_non_finite=bad)

    def _label(self) -> str:
        return self.name or f"SeedSlot({self.channels}, {self.topology!r})"

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, topology={self.topology!r}, stage={self.stage.name}, "
            f"blend={self.blend_mode.name}, isolate_gradients={self.isolate_gradients}"
        )
