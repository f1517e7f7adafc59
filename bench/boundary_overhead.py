"""Per-call CPU (dispatch) overhead of the possible integration boundaries for a fused op.

kernels/ wraps each kernel as torch.library.define/impl ops (forward and backward) called from a
torch.autograd.Function. The alternatives are torch.library.custom_op or torch.library.triton_op,
each with register_autograd. This script times only the boundary: every variant runs the same
trivial body (forward: one torch.empty_like; backward: three), on small CPU tensors, so the time
per call is almost all Python + dispatcher + autograd overhead. Variants:

    raw          the bodies called directly (floor; "fwd+bwd" calls both bodies, no autograd)
    Function     plain torch.autograd.Function over the bodies, nothing registered
    define/impl  define/impl fwd+bwd ops inside an autograd.Function (the kernels/ design)
    custom_op    torch.library.custom_op fwd+bwd ops with register_autograd
    triton_op    torch.library.triton_op fwd+bwd ops with register_autograd
    blend_add    the real kernels.blend_add (argument checks + PyTorch CPU path), 0-d alpha
    eager lerp   torch.lerp(h, s, alpha.clamp(0, 1)): the unfused formula blend_add replaces

"fwd" runs with no input requiring grad; "fwd+bwd" makes h, s, alpha require grad and adds
torch.autograd.grad(y, (h, s, alpha), g). Rounds interleave the variants (the machine is small
and shared); the table shows the median over rounds of the mean time per call. The last column
lists the ops in the forward/backward graphs torch.compile(fullgraph=True) hands to its compiler
after AOTAutograd (no code generation): an opaque op name, or the body traced through.

    PYTHONPATH=. .venv/bin/python bench/boundary_overhead.py [--rounds 11] [--calls 2000] \
        [--no-compile]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import kernels

NS = "bench_boundary"


def body_fwd(h, s, a):
    return torch.empty_like(h)


def body_bwd(g, h, s, a):
    return torch.empty_like(h), torch.empty_like(s), torch.empty_like(a)


def function_over(fwd, bwd):
    """An autograd.Function whose forward/backward call fwd/bwd (as blend_lerp.BlendLerp)."""

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, s, a):
            ctx.save_for_backward(h, s, a)
            return fwd(h, s, a)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g):
            return bwd(g, *ctx.saved_tensors)

    return Fn.apply


# -- define/impl + autograd.Function (as kernels/lerp/ops.py) --
torch.library.define(f"{NS}::lib_fwd", "(Tensor h, Tensor s, Tensor a) -> Tensor")
torch.library.define(
    f"{NS}::lib_bwd", "(Tensor g, Tensor h, Tensor s, Tensor a) -> (Tensor, Tensor, Tensor)"
)
torch.library.impl(f"{NS}::lib_fwd", "CompositeExplicitAutograd", body_fwd)
torch.library.impl(f"{NS}::lib_bwd", "CompositeExplicitAutograd", body_bwd)
torch.library.register_fake(f"{NS}::lib_fwd", body_fwd)
torch.library.register_fake(f"{NS}::lib_bwd", body_bwd)
lib_fwd = getattr(torch.ops, NS).lib_fwd.default
lib_bwd = getattr(torch.ops, NS).lib_bwd.default


# -- custom_op and triton_op, each with register_autograd --
def make_ops(decorator, prefix):
    @decorator(f"{NS}::{prefix}_fwd", mutates_args=())
    def fwd(h: torch.Tensor, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(h)

    @decorator(f"{NS}::{prefix}_bwd", mutates_args=())
    def bwd(
        g: torch.Tensor, h: torch.Tensor, s: torch.Tensor, a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return torch.empty_like(h), torch.empty_like(s), torch.empty_like(a)

    if decorator is torch.library.custom_op:  # triton_op derives its fake from the body
        fwd.register_fake(body_fwd)
        bwd.register_fake(body_bwd)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    fwd.register_autograd(lambda ctx, g: bwd(g, *ctx.saved_tensors), setup_context=setup_context)
    return fwd


VARIANTS = {
    "raw (floor)": body_fwd,
    "autograd.Function, no registration": function_over(body_fwd, body_bwd),
    "define/impl + autograd.Function (ours)": function_over(lib_fwd, lib_bwd),
}
ERRORS: dict[str, str] = {}
for _name, _decorator, _prefix in (
    ("custom_op + register_autograd", torch.library.custom_op, "co"),
    ("triton_op + register_autograd", torch.library.triton_op, "to"),
):
    try:
        _op = make_ops(_decorator, _prefix)
        _op(*(torch.ones(4, requires_grad=True) for _ in range(3))).sum().backward()  # smoke test
        VARIANTS[_name] = _op
    except Exception as exc:
        ERRORS[_name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
VARIANTS["kernels.blend_add"] = kernels.blend_add
VARIANTS["eager torch.lerp(h, s, alpha.clamp(0, 1))"] = lambda h, s, a: torch.lerp(
    h, s, a.clamp(0, 1)
)


def inputs(n, grad):
    return (
        torch.randn(n, requires_grad=grad),
        torch.randn(n, requires_grad=grad),
        torch.tensor(0.3, requires_grad=grad),
    )


def make_step(fn, n, backward):
    h, s, a = inputs(n, backward)
    g = torch.ones(n)
    if not backward:
        return lambda: fn(h, s, a)
    if fn is body_fwd:  # floor: both bodies, no autograd graph
        return lambda: (body_fwd(h, s, a), body_bwd(g, h, s, a))
    return lambda: torch.autograd.grad(fn(h, s, a), (h, s, a), g)


def time_per_call_us(step, calls):
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        step()
    return (time.perf_counter_ns() - t0) / calls / 1e3


def compile_graphs(fn, n):
    """torch.compile(fullgraph=True) through AOTAutograd (no codegen): the ops its fwd/bwd graphs
    hold."""
    if fn is body_fwd:
        return "n/a (no grad)"
    graphs = []

    def record(gm, example_inputs):
        ops = sorted(
            {
                str(node.target).replace(f"{NS}.", "")
                for node in gm.graph.nodes
                if node.op == "call_function" and "getitem" not in str(node.target)
            }
        )
        graphs.append(ops)
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    try:
        h, s, a = inputs(n, True)
        backend = aot_autograd(fw_compiler=record, bw_compiler=record)
        torch.compile(fn, fullgraph=True, backend=backend)(h, s, a).sum().backward()
    except Exception as exc:
        return f"graph break / error: {type(exc).__name__}"
    return "; ".join(
        f"{part}: {', '.join(ops) if len(ops) <= 2 else f'{len(ops)} aten ops'}"
        for part, ops in zip(("fwd", "bwd"), graphs)
    )


def triton_version():
    try:
        return version("triton")
    except PackageNotFoundError:
        return "not installed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--numel", type=int, default=256)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results/boundary_overhead_cpu.md")
    )
    args = parser.parse_args()

    steps = {
        (name, bwd): make_step(fn, args.numel, bwd)
        for name, fn in VARIANTS.items()
        for bwd in (False, True)
    }
    samples = {key: [] for key in steps}
    for step in steps.values():  # warm-up (first-call caches, allocator)
        time_per_call_us(step, 200)
    gc.collect()
    gc.disable()
    try:
        for r in range(args.rounds):
            keys = list(steps) if r % 2 == 0 else list(reversed(steps))  # alternate the order
            for key in keys:
                samples[key].append(time_per_call_us(steps[key], args.calls))
    finally:
        gc.enable()

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    lines = [
        f"torch {torch.__version__}, triton {triton_version()}, "
        f"Python {platform.python_version()}; "
        f"CPU {cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}); "
        f"{datetime.date.today().isoformat()}",
        "",
        f"Per-call time, CPU float32 tensors of {args.numel} elements + 0-d alpha; median over "
        f"{args.rounds} interleaved rounds of {args.calls} calls. "
        "Generated by bench/boundary_overhead.py.",
        "",
        "| variant | fwd µs | fwd+bwd µs | torch.compile(fullgraph=True) AOT graphs |",
        "|---|---:|---:|---|",
    ]
    for name, fn in VARIANTS.items():
        fwd, both = (statistics.median(samples[(name, b)]) for b in (False, True))
        comp = "skipped" if args.no_compile else compile_graphs(fn, args.numel)
        lines.append(f"| {name} | {fwd:.1f} | {both:.1f} | {comp} |")
    for name, err in ERRORS.items():
        lines.append(f"| {name} | error | error | `{err}` |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
