"""python -m bench.multislot [--backend inductor] [--quick] [--out FILE.md]

The graph budget of a long multi-slot run, and what it costs: a CNN with six slots goes through
a scripted lifecycle, one transition at a time (six germinations with the three blend modes,
blending ramps, two fossilizations, three prune/re-germinate cycles), with an SGD train step and
an eval pass after each transition. Side by side, on fresh copies of the same model:

- esper_slot.compile(model): one compiled function per slot structure, two kept;
- torch.compile(model, recompile_limit=64): one cache, sized from the slot count by hand;
- torch.compile(model): torch's defaults (recompile_limit 8).

For each: graphs compiled, compile seconds (time spent in dynamo/AOT/backend compilation, from
torch._dynamo.utils.compilation_time_metrics; Inductor's caches off, so no run reuses another's
graphs), wall seconds, and where it failed. Then the
steady-state train-step time in the final structure, interleaved in one loop with a model
compiled once for that structure alone ("one graph per structure") and with eager.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import esper_slot
from bench.__main__ import device_name
from esper_slot import BlendMode, SeedSlot

MODES = list(BlendMode)


class SixSlotCnn(nn.Module):
    def __init__(self, channels=32, n_slots=6, classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
            for _ in range(n_slots)
        )
        self.slots = nn.ModuleList(SeedSlot(channels, "cnn") for _ in range(n_slots))
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.stem(x)
        for block, slot in zip(self.blocks, self.slots):
            x = torch.relu(slot(block(x)))
        return self.head(x.mean((2, 3)))


def seed(channels=32):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GELU())


def script(quick: bool):
    """The transitions, each a function of the slot list."""
    steps = []
    n = 3 if quick else 6
    for i in range(n):
        steps.append(
            (
                f"germinate {i} {MODES[i % 3].name}",
                lambda s, i=i: s[i].germinate(seed(), blend=MODES[i % 3]),
            )
        )
    for i in range(n):
        steps.append((f"start_blending {i}", lambda s, i=i: s[i].start_blending(4)))
        steps.append((f"step {i}", lambda s, i=i: s[i].step()))
    for i in (0, 1):
        steps.append((f"fossilize {i}", lambda s, i=i: (s[i].set_alpha(1.0), s[i].fossilize())))
    for i in (2,) if quick else (2, 3, 4):
        steps.append((f"prune {i}", lambda s, i=i: s[i].prune()))
        steps.append(
            (
                f"germinate {i} {MODES[(i + 1) % 3].name}",
                lambda s, i=i: s[i].germinate(seed(), blend=MODES[(i + 1) % 3]),
            )
        )
        steps.append((f"start_blending {i}", lambda s, i=i: s[i].start_blending(2)))
    return steps


def own_code(model: nn.Module, tag: str) -> nn.Module:
    """``model`` with a forward of its own code object: torch.compile caches per code object,
    so the runs below neither share graphs nor count against each other's limits."""
    forward = type(model).forward
    code = forward.__code__.replace(co_name=f"forward_{tag}")
    cls = type(
        f"{type(model).__name__}_{tag}",
        (type(model),),
        {"forward": type(forward)(code, forward.__globals__, code.co_name)},
    )
    model.__class__ = cls
    return model


def compile_seconds() -> float:
    metrics = torch._dynamo.utils.compilation_time_metrics
    return sum(sum(v) for k, v in metrics.items() if k.endswith("compile_inner"))


def run_lifecycle(model, x, labels, make, quick):
    """Drive ``make(model)`` through the script; returns (row, compiled callable)."""
    counters = torch._dynamo.utils.counters
    graphs0, breaks0 = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    compile0 = compile_seconds()
    torch.manual_seed(0)
    forward = make(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    slots = list(model.slots)
    done, failure = 0, ""
    start = time.perf_counter()

    def train_and_eval():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward(x), labels).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            forward(x)
        model.train()

    try:
        train_and_eval()
        for _name, transition in script(quick):
            transition(slots)
            opt.add_param_group(
                {
                    "params": [
                        p
                        for p in model.parameters()
                        if not any(p is q for g in opt.param_groups for q in g["params"])
                    ]
                }
            )
            train_and_eval()
            done += 1
    except Exception as err:
        failure = f"{type(err).__name__} at transition {done + 1} ({script(quick)[done][0]})"
    row = {
        "graphs": counters["stats"]["unique_graphs"] - graphs0,
        "graph_breaks": sum(counters["graph_break"].values()) - breaks0,
        "compile_s": compile_seconds() - compile0,
        "wall_s": time.perf_counter() - start,
        "transitions": done,
        "failure": failure,
    }
    return row, forward


def step_times(entries, x, labels, rounds: int) -> dict[str, float]:
    """Median train-step ms of each (name, model, forward), measured round-robin."""
    opts = {name: torch.optim.SGD(model.parameters(), lr=1e-3) for name, model, _ in entries}
    times: dict[str, list[float]] = {name: [] for name, _, _ in entries}
    for r in range(rounds + 2):
        for name, _model, forward in entries:
            t0 = time.perf_counter()
            opts[name].zero_grad(set_to_none=True)
            nn.functional.cross_entropy(forward(x), labels).backward()
            opts[name].step()
            if r >= 2:  # warm-up rounds
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


class _TinySixSlots(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.slots = nn.ModuleList(SeedSlot(4, "transformer") for _ in range(6))

    def forward(self, x):
        x = self.lin(x)
        for slot in self.slots:
            x = slot(x)
        return x


def dispatch_us(rounds: int = 30, calls: int = 200) -> dict[str, float]:
    """Per-call time of a tiny 6-slot model (one seeded) in eval/no_grad, dynamo's eager
    backend: the difference is what esper_slot.compile's wrapper adds to torch.compile's."""
    model = _TinySixSlots()
    model.slots[0].germinate(nn.Linear(4, 4))
    model.eval()
    x = torch.randn(2, 3, 4)
    entries = {
        "torch.compile": torch.compile(
            own_code(copy.deepcopy(model), "d0"), fullgraph=True, backend="eager"
        ),
        "esper_slot.compile": esper_slot.compile(
            own_code(copy.deepcopy(model), "d1"), fullgraph=True, backend="eager"
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in entries}
    with torch.no_grad():
        for fn in entries.values():
            fn(x)
            fn(x)
        for _ in range(rounds):
            for name, fn in entries.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn(x)
                times[name].append((time.perf_counter() - t0) / calls * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--quick", action="store_true", help="3 slots' worth of transitions")
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    parser.add_argument(
        "--dispatch-only", action="store_true", help="only the per-call overhead of the wrapper"
    )
    args = parser.parse_args(argv)
    us = dispatch_us()
    dispatch = [
        "Per-call time of a tiny 6-slot model (eval, no_grad, dynamo's eager backend; "
        "median us, interleaved): " + ", ".join(f"{k} {v:.1f}" for k, v in us.items()),
        "",
    ]
    if args.dispatch_only:
        print("\n".join(dispatch))
        return
    # Inductor's on-disk caches would let a later run reuse the graphs an earlier run compiled
    # (the three runs compile the same structures): each run pays its own compiles.
    torch.compiler.config.force_disable_caches = True
    torch.manual_seed(0)
    base = SixSlotCnn()
    x, labels = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    kw = {"fullgraph": True, "backend": args.backend}
    # Warm-up: the first compile in a process also pays one-off imports and initialisation,
    # which would be charged to whichever entry point ran first.
    warm = own_code(copy.deepcopy(base), "warmup")
    warm.slots[0].germinate(seed())
    nn.functional.cross_entropy(torch.compile(warm, **kw)(x), labels).backward()
    makers = {
        "esper_slot.compile": lambda m: esper_slot.compile(m, **kw),
        "torch.compile, recompile_limit=64": lambda m: torch.compile(m, recompile_limit=64, **kw),
        "torch.compile (defaults)": lambda m: torch.compile(m, **kw),
    }
    rows, finals = {}, {}
    for n, (name, make) in enumerate(makers.items()):
        model = own_code(copy.deepcopy(base), str(n))
        rows[name], forward = run_lifecycle(model, x, labels, make, args.quick)
        finals[name] = (model, forward)
        print(name, rows[name], flush=True)
    ours_model, ours_forward = finals["esper_slot.compile"]
    sized_model, sized_forward = finals["torch.compile, recompile_limit=64"]
    fresh_model = own_code(copy.deepcopy(ours_model), "fresh")  # one structure, compiled alone
    fresh = torch.compile(fresh_model, **kw)
    eager_model = copy.deepcopy(ours_model)
    entries = [
        ("esper_slot.compile", ours_model, ours_forward),
        ("torch.compile, recompile_limit=64", sized_model, sized_forward),
        ("one graph per structure", fresh_model, fresh),
        ("eager", eager_model, eager_model),
    ]
    ms = step_times(entries, x, labels, rounds=10 if args.quick else 100)
    lines = [
        f"Device: {device_name(x.device)}; torch {torch.__version__}; backend {args.backend}; "
        f"{rows['esper_slot.compile']['transitions']} transitions"
        f"{' (--quick)' if args.quick else ''}, each followed by a train step and an eval pass.",
        "",
        "| entry point | transitions done | graphs | compile s | wall s | failure |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['transitions']} | {row['graphs']} | "
            f"{row['compile_s']:.1f} | {row['wall_s']:.1f} | {row['failure'] or '-'} |"
        )
    lines += [
        "",
        "Train step in the final structure (median ms, interleaved):",
        "",
        "| model | ms |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.2f} |" for name, value in ms.items()]
    text = "\n".join(lines + [""] + dispatch)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
