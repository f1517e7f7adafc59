"""SeedSlot: where a host network grows a seed. ``features = slot(features)`` in the host's forward.

Stage by stage (see lifecycle.py):
    DORMANT, PRUNED   return host unchanged; no seed exists, nothing is called.
    TRAINING          the straight-through incubator, ste(host, seed(x), copy=True): the output
                      is host bit for bit while the seed trains on the full gradient.
    BLENDING          kernels.blend_{add,multiply,gate}(host, seed(x), alpha): alpha ramps 0 -> 1.
    FOSSILIZED        the same blend at alpha = 1, for good.
x is host, or host.detach() when ``isolate_gradients`` is on (then no seed gradient reaches the
host, and in TRAINING the host's gradients equal those of the model without a seed, exactly).

torch.compile: state that changes during training is tensor data, never Python state a compiled
graph guards or branches on. alpha is a 0-d buffer and ``incubating`` a 0-d bool buffer (True in
TRAINING), both updated in place; the blend operators read the flag at run time and act as the
straight-through incubator while it is set. So TRAINING -> BLENDING -> FOSSILIZED, step() and
set_alpha() never recompile, for any number of slots. Only structure specialises a graph: whether
a seed exists, its modules, the blend mode and isolation, all fixed from germinate() to prune(),
and forward reads them as plain values (a bool and a str compared with ==, never identity tests,
which torch.compile may fold without a guard: pytorch/pytorch#196173).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import kernels

from . import registry
from .extra_state import SCHEMA_VERSION, VERSION_KEY, check_record, raise_if
from .gate import DefaultGate
from .grad_flow import GradFlowProbe, GradFlowStatus
from .lifecycle import (
    CURVES,
    SEED_STAGES,
    BlendMode,
    Stage,
    ramp_alpha,
    require_stage,
)

TOPOLOGIES = {"cnn": True, "transformer": False}  # topology -> default isolate_gradients

_last_generation = 0  # the newest SeedSlot.generation handed out, process-wide


def structure_generation() -> int:
    """Grows whenever any slot changes structure (germinate, prune, load): one integer that
    esper_slot.compile compares per call to learn that a model may need other graphs."""
    return _last_generation


def _next_generation() -> int:
    global _last_generation
    _last_generation += 1
    return _last_generation


class SeedSlot(nn.Module):
    """A slot for one seed at a point of the host's forward pass.

    Args:
        channels: the host features' channel count (dim 1 for cnn [B, C, H, W], the last dim for
            transformer [B, T, C]); checked on every forward.
        topology: "cnn" or "transformer"; sets the default of isolate_gradients at germination
            (cnn: True, transformer: False).
    """

    def __init__(self, channels: int, topology: str):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {sorted(TOPOLOGIES)}, got {topology!r}")
        self.channels = channels
        self.topology = topology
        self.stage = Stage.DORMANT  # host-side only: forward never reads it
        self._blend = BlendMode.ADD.value  # forward compares this str by value
        self._seeded = False  # forward's "is there a seed" (a bool, never `seed is None`)
        self.generation = 0  # unique per structure this slot has had (see structure_generation)
        self.isolate_gradients = TOPOLOGIES[topology]
        self.seed: nn.Module | None = None
        self.gate: nn.Module | None = None
        self.ramp_steps = 0
        self.ramp_step = 0
        self.ramp_curve = "linear"
        # How to rebuild the seed and gate from a checkpoint (see registry.py).
        self.seed_factory: str | None = None
        self.seed_kwargs: dict = {}
        self.gate_kind = "none"
        self.gate_factory: str | None = None
        self.gate_kwargs: dict = {}
        # Not persistent: both are saved in the slot's record (get_extra_state) as alpha/stage.
        self.register_buffer("alpha", torch.zeros(()), persistent=False)
        self.register_buffer("incubating", torch.zeros((), dtype=torch.bool), persistent=False)
        self.grad_flow = GradFlowProbe()
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

    def forward(self, host: Tensor) -> Tensor:
        if not self._seeded:  # DORMANT or PRUNED (one compiled graph for both)
            return host
        self._check_features(host)
        seed_input = host.detach() if self.isolate_gradients else host
        seed = self.seed(seed_input)
        if self.training:
            self.grad_flow.record(seed, self.seed)
        # One call for TRAINING, BLENDING and FOSSILIZED: while `incubating` holds True the
        # operator is ste(host, seed, copy=True) (a copy, so in-place ops after the slot such as
        # ReLU(inplace=True) keep working); then it blends by alpha.
        flag = self.incubating
        mode = self._blend
        if mode == "ADD":
            return kernels.blend_add(host, seed, self.alpha, incubate=flag)
        if mode == "MULTIPLY":
            if self.isolate_gradients:
                return kernels.blend_multiply_detached(host, seed, self.alpha, incubate=flag)
            return kernels.blend_multiply(host, seed, self.alpha, host, incubate=flag)
        return kernels.blend_gate(host, seed, self.alpha, self.gate(seed_input), incubate=flag)

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
        isolate_gradients: None derives it from the topology (cnn: True, transformer: False);
            a bool overrides.
        The seed and gate are moved to the slot's device (its alpha buffer's).
        """
        require_stage("germinate", self.stage, self._label())
        if not isinstance(seed, (nn.Module, str)):
            raise ValueError(f"seed must be an nn.Module or a registered factory name, got "
                             f"{type(seed).__name__}")
        if not isinstance(blend, BlendMode):
            raise ValueError(f"blend must be a BlendMode, got {blend!r}")
        if gate is not None and blend != BlendMode.GATE:
            raise ValueError(f"a gate network is only used with BlendMode.GATE, not {blend.name}")
        if gate is not None and not isinstance(gate, (nn.Module, str)):
            raise ValueError(f"gate must be an nn.Module or a registered factory name, got "
                             f"{type(gate).__name__}")
        if isolate_gradients is not None and not isinstance(isolate_gradients, bool):
            raise ValueError(f"isolate_gradients must be True, False or None, got "
                             f"{isolate_gradients!r}")
        seed_kwargs = registry.check_kwargs(seed_kwargs or {}, "seed_kwargs")
        gate_kwargs = registry.check_kwargs(gate_kwargs or {}, "gate_kwargs")
        seed_factory = seed if isinstance(seed, str) else None
        gate_factory = gate if isinstance(gate, str) else None
        seed = registry.build(seed, seed_kwargs) if seed_factory else seed
        gate_kind = "none"
        if blend == BlendMode.GATE:
            gate_kind = "factory" if gate_factory else "custom" if gate is not None else "default"
            if gate_factory:
                gate = registry.build(gate_factory, gate_kwargs)
            elif gate is None:
                gate = DefaultGate(self.channels, self.topology)
        device = self.alpha.device
        self._install(seed.to(device), gate.to(device) if gate is not None else None, blend)
        self.seed_factory, self.seed_kwargs = seed_factory, seed_kwargs if seed_factory else {}
        self.gate_kind, self.gate_factory = gate_kind, gate_factory
        self.gate_kwargs = gate_kwargs if gate_factory else {}
        self.isolate_gradients = (
            TOPOLOGIES[self.topology] if isolate_gradients is None else isolate_gradients
        )
        self._set_alpha(0.0)
        self.ramp_steps, self.ramp_step, self.ramp_curve = 0, 0, "linear"
        self.grad_flow.reset()
        self._enter(Stage.TRAINING)

    def start_blending(self, steps: int, curve: str = "linear") -> None:
        """Enter BLENDING with alpha = 0; ``steps`` calls of step() bring it to exactly 1.0
        (steps = 0: alpha is 1.0 at once). curve: "linear" or "sigmoid"."""
        require_stage("start_blending", self.stage, self._label())
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
        self.ramp_steps, self.ramp_step, self.ramp_curve = steps, 0, curve
        self._set_alpha(ramp_alpha(0, steps, curve))
        self._enter(Stage.BLENDING)

    def step(self) -> float:
        """Advance the ramp one step; returns the new alpha. Stays at 1.0 once reached (the
        stage changes only with fossilize())."""
        require_stage("step", self.stage, self._label())
        self.ramp_step = min(self.ramp_step + 1, self.ramp_steps)
        value = ramp_alpha(self.ramp_step, self.ramp_steps, self.ramp_curve)
        self._set_alpha(value)
        return value

    def set_alpha(self, value: float) -> None:
        """Set alpha directly (BLENDING only), in [0, 1]."""
        require_stage("set_alpha", self.stage, self._label())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {value!r}")
        self._set_alpha(float(value))

    def fossilize(self) -> None:
        """Make the seed permanent: alpha = 1 for good."""
        require_stage("fossilize", self.stage, self._label())
        self._set_alpha(1.0)
        self.ramp_step = self.ramp_steps
        self._enter(Stage.FOSSILIZED)

    def prune(self) -> None:
        """Remove the seed (and gate): the slot returns host unchanged again."""
        require_stage("prune", self.stage, self._label())
        self._install(None, None, BlendMode.ADD)
        self._forget_seed_source()
        self._set_alpha(0.0)
        self.ramp_steps, self.ramp_step = 0, 0
        self.grad_flow.reset()
        self._enter(Stage.PRUNED)

    def _forget_seed_source(self) -> None:
        self.seed_factory, self.seed_kwargs = None, {}
        self.gate_kind, self.gate_factory, self.gate_kwargs = "none", None, {}

    def _install(self, seed: nn.Module | None, gate: nn.Module | None, blend: BlendMode) -> None:
        """Set the slot's structure: what compiled graphs specialise on."""
        self.seed, self.gate = seed, gate
        self._seeded = seed is not None
        self._blend = blend.value
        self.generation = _next_generation()

    def _enter(self, stage: Stage) -> None:
        """Set the stage and its tensor form (in place: compiled graphs read the new value)."""
        self.stage = stage
        with torch.no_grad():
            self.incubating.fill_(stage == Stage.TRAINING)

    def _set_alpha(self, value: float) -> None:
        with torch.no_grad():
            self.alpha.fill_(value)  # in place: compiled graphs read the new value, no recompile

    # ---- checkpoints: see extra_state.py (the record) and checkpoint.py (model-wide loading) ----

    def get_extra_state(self) -> dict:
        """The slot's record: primitives only, the same keys in every stage."""
        return {
            VERSION_KEY: SCHEMA_VERSION,
            "stage": self.stage.name,
            "alpha": float(self.alpha.item()),
            "ramp_step": self.ramp_step,
            "ramp_steps": self.ramp_steps,
            "ramp_curve": self.ramp_curve,
            "blend_mode": self.blend_mode.name,
            "topology": self.topology,
            "channels": self.channels,
            "isolate_gradients": self.isolate_gradients,
            "seed_factory": self.seed_factory,
            "seed_kwargs": dict(self.seed_kwargs),
            "gate_kind": self.gate_kind,
            "gate_factory": self.gate_factory,
            "gate_kwargs": dict(self.gate_kwargs),
        }

    def check_record(self, state) -> list[str]:
        """Every problem with ``state`` as this slot's record ([] when it can be applied)."""
        return check_record(state, slot=self._label(), channels=self.channels,
                            topology=self.topology, has_seed=self.seed is not None,
                            has_gate=self.gate is not None)

    def set_extra_state(self, state) -> None:
        """Validate the whole record, then apply it. A bad record raises CheckpointError naming
        every problem, and the slot is left exactly as it was."""
        raise_if(self.check_record(state), self._label(),
                 state.get(VERSION_KEY) if isinstance(state, dict) else None)
        stage = Stage[state["stage"]]
        blend = BlendMode[state["blend_mode"]]
        seed, gate = self.seed, self.gate
        if stage in SEED_STAGES:  # build what is missing before changing anything
            try:
                if seed is None:
                    seed = self._rebuilt(
                        registry.build(state["seed_factory"], state["seed_kwargs"]))
                if state["gate_kind"] == "none":
                    gate = None
                elif gate is None or self.seed is None:
                    gate = self._rebuilt(
                        DefaultGate(self.channels, self.topology)
                        if state["gate_kind"] == "default"
                        else registry.build(state["gate_factory"], state["gate_kwargs"]))
            except ValueError as err:
                raise_if([str(err)], self._label(), state[VERSION_KEY])
        else:
            seed = gate = None
        self._install(seed, gate, blend)
        self._enter(stage)
        self.isolate_gradients = state["isolate_gradients"]
        self.ramp_step, self.ramp_steps = state["ramp_step"], state["ramp_steps"]
        self.ramp_curve = state["ramp_curve"]
        self.seed_factory, self.seed_kwargs = state["seed_factory"], dict(state["seed_kwargs"])
        self.gate_kind, self.gate_factory = state["gate_kind"], state["gate_factory"]
        self.gate_kwargs = dict(state["gate_kwargs"])
        self._set_alpha(float(state["alpha"]))
        self.grad_flow.reset()

    def _rebuilt(self, module: nn.Module) -> nn.Module:
        """A module rebuilt from a factory, on the slot's device and in the saved dtype."""
        return module.to(device=self.alpha.device, dtype=self._rebuild_dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A seed rebuilt during this load takes the dtype its saved parameters have.
        self._rebuild_dtype = next(
            (v.dtype for k, v in state_dict.items()
             if k.startswith(prefix + "seed.") and torch.is_tensor(v) and v.is_floating_point()),
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
        return self.grad_flow.status(self._label(), self.stage.name, expected, _counts)

    def _label(self) -> str:
        return self.name or f"SeedSlot({self.channels}, {self.topology!r})"

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, topology={self.topology!r}, stage={self.stage.name}, "
                f"blend={self.blend_mode.name}, isolate_gradients={self.isolate_gradients}")


def named_slots(model: nn.Module, *, display: bool = False) -> list[tuple[str, SeedSlot]]:
    """Every SeedSlot in ``model`` with its qualified name. ``display``: names as in the plain
    model (torch.compile's "_orig_mod." removed, "<root>" for the model itself); otherwise the
    exact module path, which prefixes the slot's state-dict keys."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, SeedSlot):
            if display:
                name = ".".join(part for part in name.split(".") if part != "_orig_mod")
                name = name or "<root>"
            found.append((name, module))
    return found
