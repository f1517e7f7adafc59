"""The operator calls a SeedSlot makes, with the argument dtypes a model under autocast gives them,
each against the float64 oracle (or, while incubating, the straight-through estimator).

The other operator tests give alpha and gate the host's dtype. A slot does not: its alpha is a
float32 buffer of shape [1] with no gradient, and its gate is the gate network's per-sample output
with a gradient, in the host's dtype under bfloat16 autocast or in float32 without it. Add to that
the ``incubate`` flag (None, clear or set) and the ``nonfinite`` probe, as SeedSlot.forward passes
them. These are the kernel specialisations the compile and checkpoint layers reach through whole
models (docs/testing.md), tested here at the operator layer, where the interpreter pass runs."""

from __future__ import annotations

import pytest
import torch

from tests.support.cases import make_case
from tests.support.checks import oracle, tolerance

SHAPE = (4, 6, 10)
FLAGS = {"no flag": None, "blending": False, "incubating": True}
# (op, host dtype, gate dtype): the gate's dtype matters only for the gate op.
CALLS = [
    ("add", torch.bfloat16, None),
    ("add", torch.float32, None),
    ("gate", torch.bfloat16, torch.bfloat16),
    ("gate", torch.bfloat16, torch.float32),
    ("gate", torch.float32, torch.float32),
    ("multiply_tied", torch.bfloat16, None),
    ("multiply_tied", torch.float32, None),
    ("multiply_detached", torch.bfloat16, None),
    ("multiply_detached", torch.float32, None),
]


def slot_call(op, dtype, gate_dtype, device):
    """make_case's call with the slot's coefficients: alpha float32 [1] without a gradient, the
    gate per-sample in gate_dtype with one."""
    case = make_case(op, SHAPE, dtype, device, alpha="one", gate="per_sample")
    args = list(case.args)
    args[2] = args[2].detach().float()
    if op == "gate":
        args[3] = args[3].detach().to(gate_dtype).requires_grad_()
    case.args = tuple(args)
    return case


@pytest.mark.parametrize("probed", [False, True], ids=["", "probed"])
@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize(
    "op, dtype, gate_dtype",
    CALLS,
    ids=[f"{op}-{str(d)[6:]}" + (f"-gate {str(g)[6:]}" if g else "") for op, d, g in CALLS],
)
def test_slot_call_matches_its_oracle(op, dtype, gate_dtype, flag, probed, device):
    case = slot_call(op, dtype, gate_dtype, device)
    incubate = None if FLAGS[flag] is None else torch.tensor(FLAGS[flag], device=device)
    probe = torch.zeros(1, dtype=torch.int32, device=device) if probed else None
    wanted = [a for a in case.args if a.requires_grad]
    grad = torch.randn(SHAPE, dtype=dtype, device=device)

    y = case.ours(*case.args, incubate=incubate, nonfinite=probe)
    grads = torch.autograd.grad(y, wanted, grad)

    host = case.args[0]
    assert y.dtype == dtype and y.shape == host.shape
    if probed:
        assert probe.item() == 0  # finite seed: the probe stays clear
    if FLAGS[flag]:  # incubating: ste(host, seed), zero coefficient gradients
        assert torch.equal(y, host)
        assert torch.equal(grads[0], grad) and torch.equal(grads[1], grad.to(grads[1].dtype))
        assert all(not g.any() for g in grads[2:])
        return
    y_ref, grads_ref = oracle(case, grad)
    torch.testing.assert_close(y.double(), y_ref, **tolerance(dtype))
    for arg, g, g_ref in zip(wanted, grads, grads_ref):
        assert g.dtype == arg.dtype and g.shape == arg.shape
        worst = max((dtype, arg.dtype), key=lambda d: torch.finfo(d).eps)
        torch.testing.assert_close(g.double(), g_ref, **tolerance(worst, y.numel() // arg.numel()))
