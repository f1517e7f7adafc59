"""Differential testing of compiled against eager: one model and a compiled deep copy, driven
through the same lifecycle transitions, compared after each one (outputs and every parameter
gradient of a train step, then an eval pass)."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from esper_slot import SeedSlot

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # float32; Inductor may reorder a few operations


class CountingBackend:
    """A torch.compile backend (aot_eager underneath) that counts the graphs it compiles and how
    often compiled code runs: a call that ran no compiled graph fell back to eager."""

    def __init__(self, inner: str = "aot_eager"):
        self.inner = torch._dynamo.lookup_backend(inner)
        self.graphs = 0
        self.runs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        compiled = self.inner(gm, example_inputs)

        def run(*args):
            self.runs += 1
            return compiled(*args)

        run._boxed_call = getattr(compiled, "_boxed_call", False)  # keep the calling convention
        return run


def torch_compile(model, *, recompile_limit: int | None = None, **kwargs):
    """torch.compile(model, recompile_limit=..., **kwargs) on every supported torch: where
    torch.compile has no recompile_limit argument (torch 2.11), the limit is Dynamo's config,
    set around each call (Dynamo reads it when a call compiles)."""
    if recompile_limit is None or "recompile_limit" in inspect.signature(torch.compile).parameters:
        extra = {} if recompile_limit is None else {"recompile_limit": recompile_limit}
        return torch.compile(model, **kwargs, **extra)
    compiled = torch.compile(model, **kwargs)

    def call(*args, **kw):
        with torch._dynamo.config.patch(recompile_limit=recompile_limit):
            return compiled(*args, **kw)

    return call


def recorded(model: nn.Module) -> list[torch.Tensor]:
    """Per slot: forward passes and blocked passes (grad flow) and non-finite seed outputs."""
    return [torch.cat([s.grad_flow.counts[:2], s.seed_output.count]) for s in slots_of(model)]


def slots_of(model: nn.Module) -> list[SeedSlot]:
    return [m for m in model.modules() if isinstance(m, SeedSlot)]


class Twins:
    """``eager`` and ``inner`` (a deep copy, called through ``compiled = compile_fn(inner)``)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, compile_fn, loss=None):
        self.eager = model
        self.inner = copy.deepcopy(model)
        self.compiled = compile_fn(self.inner)
        self.x = x
        self.loss = loss or (lambda y: y.float().square().mean())

    def both(self, fn) -> None:
        """Apply ``fn(slots)`` to each twin's list of slots (seeds passed in are deep-copied by
        the caller, once per twin)."""
        fn(slots_of(self.eager))
        fn(slots_of(self.inner))

    def germinate(self, index: int, seed: nn.Module, **kwargs) -> None:
        for model in (self.eager, self.inner):
            slots_of(model)[index].germinate(copy.deepcopy(seed), **kwargs)

    def train_step(self) -> torch.Tensor:
        for model in (self.eager, self.inner):
            model.zero_grad(set_to_none=True)
        before = [recorded(model) for model in (self.eager, self.inner)]
        y_eager, y_compiled = self.eager(self.x), self.compiled(self.x)
        torch.testing.assert_close(y_compiled, y_eager, **TOLERANCE)
        # What this forward recorded (grad-flow counters, non-finite seed outputs) is the same
        # (differences: a test may run extra forwards on one twin).
        after = [recorded(model) for model in (self.eager, self.inner)]
        for e0, c0, e1, c1 in zip(*before, *after):
            assert torch.equal(c1 - c0, e1 - e0)
        self.loss(y_eager).backward()
        self.loss(y_compiled).backward()
        for (name, p_eager), p_compiled in zip(
            self.eager.named_parameters(), self.inner.parameters()
        ):
            assert (p_eager.grad is None) == (p_compiled.grad is None), name
            if p_eager.grad is not None:
                torch.testing.assert_close(p_compiled.grad, p_eager.grad, msg=name, **TOLERANCE)
        return y_eager

    def eval_pass(self) -> None:
        for model in (self.eager, self.inner):
            model.eval()
        with torch.no_grad():
            torch.testing.assert_close(self.compiled(self.x), self.eager(self.x), **TOLERANCE)
        for model in (self.eager, self.inner):
            model.train()

    def check(self) -> None:
        self.train_step()
        self.eval_pass()


def bf16_autocast_sgd_matches(model: nn.Module, compile_fn, x: torch.Tensor, steps: int = 3):
    """Three SGD steps under bfloat16 autocast on ``model`` and on a compiled deep copy (made by
    ``compile_fn``): outputs are bfloat16, float32 parameters get float32 gradients, and losses
    and parameters agree to bfloat16 precision."""
    twin = copy.deepcopy(model)
    compiled = compile_fn(twin)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (model, twin)]
    for _ in range(steps):
        losses = []
        for net, opt in zip((model, compiled), opts):
            opt.zero_grad()
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                y = net(x)
            assert y.dtype == torch.bfloat16
            loss = y.float().square().mean()
            loss.backward()
            assert all(
                p.grad.dtype == torch.float32 for p in net.parameters() if p.grad is not None
            )
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=1e-3)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-3, msg=name)
