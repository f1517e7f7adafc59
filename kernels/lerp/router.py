"""route_lerp: every way a blend_add / blend_gate call can run, decided in one function."""

from __future__ import annotations

from torch import Tensor

from .._backend import INTERPRET, eager_cpu, tracing_formulas
from .._checks import check_lerp
from .._incubate import Incubating
from .._layout import needs_grad
from .._probe import check_nonfinite, probe_outside_op
from .cpu_fast import eager_lerp, fast_cpu_lerp
from .ops import BlendLerp
from .torch_path import BlendLerpEager, BlendLerpFormulas, blend


def route_lerp(
    op: str,
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    gate: Tensor | None,
    incubate: Tensor | None,
    nonfinite: Tensor | None,
) -> Tensor:
    """Run blend_add (``op == "blend_add"``, gate None) or blend_gate. The routes, in the order
    they are tried; the first that applies runs the call:

    1. Fast CPU dispatch (cpu_fast.fast_cpu_lerp): no incubate flag, no probe, not under
       TRITON_INTERPRET=1, plain contiguous CPU tensors, seed of host's dtype and strides, a
       one-element alpha needing no gradient, no gate or a per-sample float32/float64 gate of
       host's dtype: torch.lerp with native autograd, before any validation. Why: the slot's
       commonest eager CPU call, where the checks (~3 us) and the route selection (~5 us)
       cost as much as the blend at 64K elements; one ~3 us condition replaces both
       (bench/NOTES.md, "Eager CPU: the end-to-end step"). It returns route 4b's bits.
    2. Validation (_checks.check_lerp, _probe.check_nonfinite): a ValueError for a bad
       argument, before autograd records anything; a tensor passed twice becomes a view.
    3. The non-finite probe outside the op (_probe.probe_outside_op): with ``nonfinite`` on the
       eager CPU path or while torch.compile traces, one min/max of the seed here; no op then
       sees the probe. Why: there the blend runs as native ops or formulas, not a kernel that
       could probe the values it loads.
    4. Eager CPU (_backend.eager_cpu: a CPU tensor, no interpreter, not tracing):
       a. the incubate flag holds True: _incubate.Incubating, ste(host, seed, copy=True) with
          zero coefficient gradients. Contract: the incubate flag (host's bits, a NaN seed
          cannot leak); the CPU flag is read for free.
       b. seed cast to host's dtype (the contract's cast; autograd casts its gradient back),
          then torch.lerp with native autograd (cpu_fast.eager_lerp) wherever that gives the
          contract's bits: a number weight, or a float32/float64 host; copied into host's
          layout when host and seed are dense in different layouts. Why: no Function's Python
          and no op dispatch (BlendLerp's Python backward measured ~300 us per call in the
          eager transformer step; bench/NOTES.md, "The eager CPU path" and "Eager CPU: the
          end-to-end step").
       c. everything else (a tensor weight with a bfloat16/float16 host: a per-sample gate, a
          learned or per-sample alpha; a host or seed that is not dense):
          torch_path.BlendLerpEager (the PyTorch path as a Function, no op boundary), or
          torch_path.blend alone when nothing needs a gradient. Contract: float32 compute with
          one rounding to host's dtype, which torch.lerp cannot give with a low-precision
          tensor weight (it rounds the weight to that dtype); only inputs saved for backward;
          host's layout. The cost, measured (docs/operators.md): 0.4-0.5x of the bfloat16
          eager formula, which rounds the weight and every op to bfloat16. Native autograd on
          float32 copies is faster below ~80K elements, but keeps both copies for backward.
    5. The probed op: ``nonfinite`` given off the eager CPU path (CUDA, or the interpreter):
       BlendLerp over esper_slot::blend_lerp_fwd_probed, whose Triton kernel sets the probe
       from the seed values it loads (no extra pass).
    6. The compile-path formulas: torch.compile is tracing and compile_path() == "formulas":
       torch_path.BlendLerpFormulas, tensor ops Inductor fuses with the neighbouring ops.
    7. The registered ops: ops.BlendLerp over esper_slot::blend_lerp_fwd / _bwd. The Triton
       kernels on CUDA (and on CPU under the interpreter), the PyTorch path elsewhere (devices
       without Triton, and torch.compile with compile_path() == "opaque" on a CPU).

    Every route gives the contract of api.blend_add / api.blend_gate (and the same bits where
    the tests say so: tests/operators/test_eager_cpu_paths.py, test_reference.py).
    """
    if (
        incubate is None
        and nonfinite is None
        and not INTERPRET
        and (gate is not None or op == "blend_add")
    ):
        fast = fast_cpu_lerp(host, seed, alpha, gate)
        if fast is not None:
            return fast
    host, seed, alpha, gate = check_lerp(op, host, seed, alpha, gate, incubate)
    check_nonfinite(op, host, nonfinite)
    nonfinite = probe_outside_op(host, seed, nonfinite)
    if eager_cpu(host):
        if incubate is not None and incubate.item():  # a CPU flag: reading it is free
            return Incubating.apply(host, seed, alpha, gate)
        if seed.dtype != host.dtype:
            seed = seed.to(host.dtype)
        out = eager_lerp(host, seed, alpha, gate)
        if out is not None:
            return out
        if needs_grad(host, seed, alpha, gate):
            return BlendLerpEager.apply(host, seed, alpha, gate)
        return blend(host, seed, alpha, gate)
    if nonfinite is not None:
        return BlendLerp.apply(host, seed, alpha, gate, incubate, nonfinite)
    if tracing_formulas():
        return BlendLerpFormulas.apply(host, seed, alpha, gate, incubate)
    return BlendLerp.apply(host, seed, alpha, gate, incubate)
