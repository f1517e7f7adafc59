"""The four operators as benchmark cases: our call, the eager formula as esper-lite writes it,
the inputs, and the minimum bytes each pass must move.

Shapes are [8, numel / 8] (per-sample gate [8, 1]); alpha is a 0-d buffer that needs no
gradient (as in a slot); host and seed need gradients, and so does the gate (a gate network's
output). multiply's seed_input is host itself (no gradient isolation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

import kernels

OPS = ("ste", "add", "multiply", "gate")
BATCH = 8


def eager_ste(h, s, a, g):
    return h + (s - s.detach())


def eager_add(h, s, a, g):
    return torch.lerp(h, s, a.clamp(0, 1).to(h.dtype))


def eager_multiply(h, s, a, g):
    return h * (1 + a.clamp(0, 1).to(h.dtype) * torch.tanh(s - h))


def eager_gate(h, s, a, g):
    return torch.lerp(h, s, (a.clamp(0, 1) * g).clamp(0, 1).to(h.dtype))


OURS = {
    "ste": lambda h, s, a, g: kernels.ste(h, s),
    "add": lambda h, s, a, g: kernels.blend_add(h, s, a),
    "multiply": lambda h, s, a, g: kernels.blend_multiply(h, s, a, h),
    "gate": lambda h, s, a, g: kernels.blend_gate(h, s, a, g),
}
EAGER = {"ste": eager_ste, "add": eager_add, "multiply": eager_multiply, "gate": eager_gate}

# Input-sized tensors each pass must read or write at least once (alpha/gate are negligible):
#   fwd: read host and seed, write y (ste: nothing, y aliases host).
#   bwd: read g, write d host and d seed; multiply also reads host and seed (d seed needs them),
#        gate reads them for d gate. ste: nothing (the same gradient goes to both).
FWD_TENSORS = {"ste": 0, "add": 3, "multiply": 3, "gate": 3}
BWD_TENSORS = {"ste": 0, "add": 3, "multiply": 5, "gate": 5}


def min_bytes(op: str, numel: int, dtype: torch.dtype, pass_: str) -> int:
    tensors = FWD_TENSORS[op] + (BWD_TENSORS[op] if pass_ == "fwd+bwd" else 0)
    return tensors * numel * torch.tensor([], dtype=dtype).element_size()


@dataclass
class Inputs:
    host: torch.Tensor
    seed: torch.Tensor
    alpha: torch.Tensor
    gate: torch.Tensor
    grad: torch.Tensor

    def args(self):
        return self.host, self.seed, self.alpha, self.gate


def make_inputs(numel: int, dtype: torch.dtype, device, requires_grad: bool) -> Inputs:
    shape = (BATCH, numel // BATCH)
    host = torch.randn(shape, device=device, dtype=dtype).requires_grad_(requires_grad)
    seed = torch.randn(shape, device=device, dtype=dtype).requires_grad_(requires_grad)
    alpha = torch.tensor(0.3, device=device)
    gate = torch.rand(BATCH, 1, device=device).requires_grad_(requires_grad)
    return Inputs(host, seed, alpha, gate, torch.randn(shape, device=device, dtype=dtype))


def runner(fn: Callable, pass_: str, inputs: Inputs) -> Callable[[], object]:
    """A zero-argument call doing one pass of ``fn`` on ``inputs``."""
    if pass_ == "fwd":

        def run():
            with torch.no_grad():
                return fn(*inputs.args())

        return run
    wrt = [inputs.host, inputs.seed, inputs.gate]

    def run_bwd():
        y = fn(*inputs.args())
        return torch.autograd.grad(y, wrt, inputs.grad, allow_unused=True)

    return run_bwd


def saved_bytes(fn: Callable, inputs: Inputs) -> tuple[int, int]:
    """(bytes of all tensors saved for backward, bytes of those that are fresh allocations, not
    inputs), counting each storage once."""
    storages: dict[int, tuple[int, bool]] = {}
    input_ptrs = {t.untyped_storage().data_ptr() for t in inputs.args()}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = (storage.nbytes(), storage.data_ptr() not in input_ptrs)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs.args())
    return (sum(n for n, _ in storages.values()), sum(n for n, fresh in storages.values() if fresh))
