"""route_multiply: every way a blend_multiply / blend_multiply_detached call can run, decided in
one function."""

from __future__ import annotations

from torch import Tensor

from .._backend import eager_cpu, tracing_formulas
from .._checks import check_multiply
from .._incubate import Incubating
from .._layout import needs_grad, same_dense_layout
from .._probe import check_nonfinite, probe_outside_op
from .cpu_fast import BlendMultiplyEagerCpu, eager_values, native_applies, native_multiply
from .ops import BlendMultiply
from .torch_path import BlendMultiplyEager, BlendMultiplyFormulas


def route_multiply(
    op: str,
    host: Tensor,
    seed: Tensor,
    alpha: Tensor,
    seed_input: Tensor | None,
    tied_grad: bool,
    incubate: Tensor | None,
    nonfinite: Tensor | None,
) -> Tensor:
    """Run blend_multiply. seed_input None stands for host's values (read once): host itself
    (tied_grad: its gradient joins host's) or host.detach() (blend_multiply_detached). The
    routes, in the order they are tried; the first that applies runs the call:

    1. Validation (_checks.check_multiply, _probe.check_nonfinite): a ValueError for a bad
       argument, before autograd records anything; a tensor passed twice becomes a view.
       (No fast dispatch before it, unlike route_lerp: tanh, not the checks, dominates a
       multiply call.)
    2. The non-finite probe outside the op (_probe.probe_outside_op): with ``nonfinite`` on the
       eager CPU path or while torch.compile traces, one min/max of the seed here; no op then
       sees the probe. Why: there the blend runs as native ops or formulas, not a kernel that
       could probe the values it loads.
    3. Eager CPU (_backend.eager_cpu: a CPU tensor, no interpreter, not tracing):
       a. the incubate flag holds True: _incubate.Incubating, ste(host, seed, copy=True) with
          zero gradients to alpha and seed_input. Contract: the incubate flag; the CPU flag is
          read for free.
       b. seed (or seed_input) in a layout other than host's, or not dense:
          torch_path.BlendMultiplyEager, the PyTorch path without an op boundary. Contract:
          host's layout (the shortcuts below assume one shared dense layout).
       c. nothing needs a gradient: cpu_fast.eager_values (tanh, one addcmul, one rounding).
       d. float32/float64, below cpu_fast.NATIVE_BELOW elements, a scalar alpha needing no
          gradient: cpu_fast.native_multiply, native autograd. Why: below ~45K elements the
          Function's ~50 us of Python costs more than native autograd's extra backward passes
          (measured, bench/NOTES.md "Eager CPU: the end-to-end step").
       e. otherwise: cpu_fast.BlendMultiplyEagerCpu, which keeps tanh for backward. Why: tanh
          is compute-bound on a CPU; recomputing it loses to the eager formula. Contract kept:
          float32 compute, one rounding to host's dtype.
    4. The probed op: ``nonfinite`` given off the eager CPU path (CUDA, or the interpreter):
       BlendMultiply over esper_slot::blend_multiply_fwd_probed, whose Triton kernel sets the
       probe from the seed values it loads (no extra pass).
    5. The compile-path formulas: torch.compile is tracing and compile_path() == "formulas":
       torch_path.BlendMultiplyFormulas, tensor ops Inductor fuses with the neighbouring ops.
    6. The registered ops: ops.BlendMultiply over esper_slot::blend_multiply_fwd / _bwd. The
       Triton kernels on CUDA (and on CPU under the interpreter), the PyTorch path elsewhere
       (devices without Triton, and torch.compile with compile_path() == "opaque" on a CPU).
    """
    host, seed, alpha, seed_input = check_multiply(op, host, seed, alpha, seed_input, incubate)
    check_nonfinite(op, host, nonfinite)
    nonfinite = probe_outside_op(host, seed, nonfinite)
    if eager_cpu(host):
        if incubate is not None and incubate.item():  # a CPU flag: reading it is free
            return Incubating.apply(host, seed, alpha, seed_input)
        if not same_dense_layout(host, seed) or not (
            seed_input is None or same_dense_layout(host, seed_input)
        ):
            return BlendMultiplyEager.apply(host, seed, alpha, seed_input, tied_grad)
        if not needs_grad(host, seed, alpha, seed_input):
            return eager_values(host, seed, alpha, seed_input)[0]
        if native_applies(host, seed, alpha, seed_input):
            return native_multiply(host, seed, alpha, seed_input, tied_grad)
        return BlendMultiplyEagerCpu.apply(host, seed, alpha, seed_input, tied_grad)
    if nonfinite is not None:
        return BlendMultiply.apply(host, seed, alpha, seed_input, tied_grad, incubate, nonfinite)
    if tracing_formulas():
        return BlendMultiplyFormulas.apply(host, seed, alpha, seed_input, tied_grad, incubate)
    return BlendMultiply.apply(host, seed, alpha, seed_input, tied_grad, incubate)
