"""The compile path: while torch.compile traces, each operator gives Inductor its math as tensor
ops (kernels.compile_path() == "formulas"), and every contract still holds there:
- Inductor sees no opaque esper_slot op (so it can fuse the blend with its neighbours);
- gradcheck in float64 through the compiled graph, and the float64 oracle in float32/bfloat16;
- bitwise host at alpha 0, bitwise seed at alpha 1; the incubate flag's STE, even for NaN/Inf;
- what backward keeps: never more input-sized bytes than the eager operator keeps (its inputs);
- zero graph breaks.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters

import kernels
from kernels._backend import set_compile_path
from tests.support.cases import BLEND_OPS, make_case
from tests.support.checks import assert_matches_oracle

pytestmark = pytest.mark.backend_independent  # the formulas run no kernel of ours


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    assert not counters["graph_break"], dict(counters["graph_break"])
    set_compile_path("formulas")


class GraphRecorder:
    """An aot_eager-like backend that keeps the partitioned forward and backward graphs."""

    def __init__(self):
        self.forward = self.backward = None

        def fw(gm, _):
            self.forward = gm
            return gm

        def bw(gm, _):
            self.backward = gm
            return gm

        from functorch.compile import make_boxed_compiler

        self.backend = aot_autograd(
            fw_compiler=make_boxed_compiler(fw), bw_compiler=make_boxed_compiler(bw)
        )

    def targets(self) -> set[str]:
        return {
            str(n.target)
            for gm in (self.forward, self.backward)
            if gm is not None
            for n in gm.graph.nodes
            if n.op == "call_function"
        }

    def saved(self) -> list:
        """The forward graph's extra outputs: what backward keeps."""
        output = next(n for n in self.forward.graph.nodes if n.op == "output").args[0]
        return [n for n in output[1:] if n is not None and hasattr(n, "meta")]


def run(case, flag, backend):
    compiled = torch.compile(
        lambda *a: case.ours(*a, incubate=flag), fullgraph=True, backend=backend
    )
    y = compiled(*case.args)
    y.float().square().sum().backward()
    return y


@pytest.mark.parametrize("op", BLEND_OPS)
def test_inductor_sees_formulas_not_opaque_ops(op):
    case = make_case(op, (2, 3, 4, 5), torch.float32)
    flag = torch.tensor(False)
    recorder = GraphRecorder()
    run(case, flag, recorder.backend)
    assert not any("esper_slot" in t for t in recorder.targets()), recorder.targets()
    torch._dynamo.reset()
    set_compile_path("opaque")  # the alternative: the registered ops, opaque to Inductor
    recorder = GraphRecorder()
    run(make_case(op, (2, 3, 4, 5), torch.float32), flag, recorder.backend)
    assert any("esper_slot" in t for t in recorder.targets())


@pytest.mark.parametrize("op", BLEND_OPS)
def test_the_opaque_path_compiles_under_inductor(op):
    """The registered ops under Inductor (set_compile_path("opaque")): they lower as plain
    functional ops (a mutable argument in their schema once broke this) and match eager."""
    torch._dynamo.reset()
    set_compile_path("opaque")
    case = make_case(op, (2, 3, 4, 5), torch.float32)
    flag = torch.tensor(False)
    want = case.ours(*case.args, incubate=flag)
    got = run(case, flag, "inductor")
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("alpha", ["scalar", "per_sample", "wide"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_gradcheck_through_the_compiled_graph(op, alpha):
    case = make_case(op, (2, 3, 4), torch.float64, alpha=alpha)
    flag = torch.tensor(False)
    args = case.clone_args()
    if op == "multiply_detached":  # host's gradient omits the seed_input path by design
        host = args[0].detach()
        compiled = torch.compile(
            lambda s, a: case.ours(host, s, a, incubate=flag), backend="aot_eager", fullgraph=True
        )
        assert torch.autograd.gradcheck(compiled, args[1:])
        return
    compiled = torch.compile(
        lambda *a: case.ours(*a, incubate=flag), backend="aot_eager", fullgraph=True
    )
    assert torch.autograd.gradcheck(compiled, args)


def all_ops(h, s, a, gate, s_in, flag):
    """Every blend operator in one graph (one Inductor compile per dtype)."""
    return (
        kernels.blend_add(h, s, a, incubate=flag),
        kernels.blend_gate(h, s, a, gate, incubate=flag),
        kernels.blend_multiply(h, s, a, s_in, incubate=flag),
        kernels.blend_multiply(h, s, a, h, incubate=flag),
        kernels.blend_multiply_detached(h, s, a, incubate=flag),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_inductor_matches_the_float64_oracle(dtype):
    """Every operator's output and every gradient, compiled by Inductor, against the float64
    oracle with the dtype's tolerance (tests/operators/test_reference.py)."""
    compiled = torch.compile(all_ops, fullgraph=True)
    flag = torch.tensor(False)
    shape = (4, 8, 9, 7)
    names = ("add", "gate", "multiply", "multiply_tied", "multiply_detached")
    cases = {op: make_case(op, shape, dtype, alpha="per_sample") for op in names}
    h, s, a = cases["gate"].args[:3]
    gate = cases["gate"].args[3]
    s_in = cases["multiply"].args[3]
    for op in names:  # the same tensors in every case, so one graph serves them all
        args = {
            "add": (h, s, a),
            "gate": (h, s, a, gate),
            "multiply": (h, s, a, s_in),
            "multiply_tied": (h, s, a),
            "multiply_detached": (h, s, a),
        }[op]
        cases[op].args = args
        index = names.index(op)
        cases[op].ours = lambda *_, i=index: compiled(h, s, a, gate, s_in, flag)[i]
        assert_matches_oracle(cases[op], torch.randn(shape, dtype=dtype))
    assert counters["stats"]["unique_graphs"] == 1


def test_inductor_keeps_the_bitwise_ends_and_the_straight_through_estimator():
    """alpha 0: host's bits; alpha 1: seed's bits (add, gate at 1); incubating: host's bits even
    with NaN/Inf in the seed, g to host and seed, 0 to alpha: all from one Inductor graph."""
    shape = (4, 8, 9, 7)
    h = torch.randn(shape, requires_grad=True)
    s = torch.randn(shape, requires_grad=True)
    s_in = torch.randn(shape)
    a = torch.zeros((), requires_grad=True)
    gate = torch.ones(4, 1, 1, 1)
    flag = torch.tensor(False)
    compiled = torch.compile(all_ops, fullgraph=True)
    add, gated, mul, mul_tied, mul_detached = compiled(h, s, a, gate, s_in, flag)
    for y in (add, gated, mul, mul_tied, mul_detached):
        assert torch.equal(y, h)
    with torch.no_grad():
        a.fill_(1.0)
    add, gated, *_ = compiled(h, s, a, gate, s_in, flag)
    assert torch.equal(add, s) and torch.equal(gated, s)
    with torch.no_grad():
        a.fill_(0.4)
        s[0, 0] = float("nan")
        s[1, 1] = float("inf")
    flag.fill_(True)
    outs = compiled(h, s, a, gate, s_in, flag)
    for y in outs:
        assert torch.equal(y, h)
    g = torch.randn(shape)
    grads = torch.autograd.grad(outs[0], (h, s, a), g)
    assert torch.equal(grads[0], g) and torch.equal(grads[1], g) and grads[2].item() == 0.0
    assert counters["stats"]["unique_graphs"] == 1


def input_bytes(case) -> int:
    return sum(t.numel() * t.element_size() for t in case.args if t.dim() == 4)


@pytest.mark.parametrize("alpha_grad", [True, False], ids=["alpha_learned", "alpha_buffer"])
@pytest.mark.parametrize("op", BLEND_OPS)
def test_backward_keeps_no_more_than_the_inputs(op, alpha_grad):
    """The eager operators keep only inputs for backward. Under compile, AOT autograd's
    partitioner chooses what to keep; it may keep `seed - host` (one tensor) instead of host and
    seed (two), but never more input-sized bytes than the inputs the eager operator keeps, and
    nothing input-sized when alpha is a buffer (the slot's case) in add and gate."""
    case = make_case(op, (4, 8, 6, 6), torch.float32)
    if not alpha_grad:
        case.args = (case.args[0], case.args[1], case.args[2].detach(), *case.args[3:])
    recorder = GraphRecorder()
    run(case, torch.tensor(False), recorder.backend)
    numel = case.args[0].numel()
    kept = [n.meta["val"] for n in recorder.saved() if "val" in n.meta]
    big = sum(t.numel() * t.element_size() for t in kept if t.numel() == numel)
    assert big <= input_bytes(case), [tuple(t.shape) for t in kept]
    if op == "add" and not alpha_grad:  # (a gate network's output always learns)
        assert big == 0


def test_compile_path_is_checked():
    with pytest.raises(ValueError, match="compile path must be one of"):
        kernels.set_compile_path("triton_op")
    assert kernels.compile_path() == "formulas"
