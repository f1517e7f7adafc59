"""python -m bench.lifecycle_compile [--depths 4 12 24] [--quick] [--out FILE.md]

What a lifecycle event costs in compile time, whole model vs regions, on a GPT-2 (bench/gpt2.py,
width 64) with a slot after every block's MLP, under esper_slot.compile(fullgraph=True) with
Inductor:

- events: per depth and mode, one process with a fresh (cold) Inductor cache directory runs a
  scripted lifecycle; each event's cost is the first training step after it minus the steady
  step before it, with the graphs it compiled. Then a second process on the same, now warm,
  cache directory replays it: what a run resumed from a checkpoint pays.
- steady: per depth, both modes compiled in one process on copies of one model (slots in mixed
  stages), their training steps interleaved in shuffled order; median ms. Also at a larger size.
- where the time goes: the regions' extra per-step cost at 12 blocks, its parts timed one by
  one (guard checks, the wrapper's Python, the eager rest of the model).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS = (
    "first compile",
    "germinate (new seed architecture)",
    "germinate (architecture compiled before)",
    "start_blending",
    "fossilize",
    "prune",
    "germinate (second new architecture)",
)


def _build(depth: int, width: int, batch: int, mixed: bool):
    import torch

    from bench.gpt2 import Gpt2, mlp_seed

    torch.manual_seed(0)
    model = Gpt2(blocks=depth, width=width, heads=max(4, width // 64))
    if mixed:  # every third slot seeded; every sixth of those blending
        for i, slot in enumerate(model.slots):
            if i % 3 == 0:
                slot.germinate(mlp_seed(width))
            if i % 6 == 0:
                slot.start_blending(100)
                for _ in range(30):
                    slot.step()
    return model, torch.randint(0, 512, (batch, 64))


def _compiled(model, mode: str, **kwargs):
    import esper_slot as es
    from bench.gpt2 import Gpt2Block

    regions = None if mode == "whole" else Gpt2Block
    return es.compile(model, regions=regions, fullgraph=True, **kwargs)


def _step_fn(model, forward, x):
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        forward(x).logsumexp(-1).mean().backward()
        opt.step()

    return step


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def child_events(mode: str, depth: int, width: int, steady_steps: int) -> dict:
    """The scripted lifecycle in this process (its Inductor cache dir set by the parent)."""
    from torch._dynamo.utils import counters

    from bench.gpt2 import lora_seed, mlp_seed

    model, x = _build(depth, width, batch=8, mixed=False)
    step = _step_fn(model, _compiled(model, mode), x)
    slots = model.slots
    mid, last = slots[depth // 2], slots[-1]
    actions = {
        "first compile": lambda: None,
        "germinate (new seed architecture)": lambda: slots[0].germinate(mlp_seed(width)),
        "germinate (architecture compiled before)": lambda: mid.germinate(mlp_seed(width)),
        "start_blending": lambda: slots[0].start_blending(1),
        "fossilize": lambda: (slots[0].step(), slots[0].fossilize()),
        "prune": mid.prune,
        "germinate (second new architecture)": lambda: last.germinate(lora_seed(width)),
    }
    out: dict = {"mode": mode, "depth": depth, "events": {}}
    steady = 0.0
    for event in EVENTS:
        actions[event]()
        graphs = counters["stats"]["unique_graphs"]
        first = _timed(step)
        compiled = counters["stats"]["unique_graphs"] - graphs
        steady = statistics.median(_timed(step) for _ in range(steady_steps))
        out["events"][event] = {
            "seconds": max(first - steady, 0.0),
            "graphs": compiled,
            "steady_ms": steady * 1e3,
        }
    return out


def child_steady(depth: int, width: int, batch: int, rounds: int, decompose: bool) -> dict:
    base, x = _build(depth, width, batch, mixed=True)
    steps, wrappers = {}, {}
    for mode in ("whole", "regions", "regions, stage_graphs=False"):
        model = copy.deepcopy(base)
        kwargs = {"stage_graphs": False} if "False" in mode else {}
        wrappers[mode] = _compiled(model, mode.split(",")[0], **kwargs)
        steps[mode] = _step_fn(model, wrappers[mode], x)
        steps[mode]()
        steps[mode]()
    times: dict[str, list[float]] = {m: [] for m in steps}
    order = list(steps)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for mode in order:
            times[mode].append(_timed(steps[mode]))
    out = {
        "depth": depth,
        "width": width,
        "batch": batch,
        "ms": {m: statistics.median(t) * 1e3 for m, t in times.items()},
    }
    if decompose:
        out["decomposition"] = _decompose(wrappers["whole"], wrappers["regions"], x)
    return out


def _median_us(fn, repeats: int = 2000) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def _guard_us(structure, frame) -> float:
    entries = structure.entries()
    return _median_us(lambda: any(e.guard_manager.check(frame) for e in entries))


def _decompose(whole, regional, x) -> dict[str, float]:
    """Measured parts of the regions' extra per-step cost (ms per step), each timed on its own:
    the guard checks (all regions' vs the whole model's one), the wrapper's Python (install,
    dispatch, the budget counter reads), torch.compile's fixed cost per differentiable call
    times the extra calls, and the model's rest (embeddings, final LayerNorm, head) run eagerly
    instead of compiled."""
    import torch

    model = regional._orig_mod
    inputs = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: inputs.__setitem__(id(mod), args))
        for _, m in regional.regions
    ]
    model(x)  # eager: each block's real training-mode input
    for h in hooks:
        h.remove()
    regions_guards = sum(
        _guard_us(r.structure, {"module": r.module, "args": inputs[id(r.module)], "kwargs": {}})
        for r in regional._regions
    )
    whole_model = whole._orig_mod
    assert whole._current is not None
    whole_guards = _guard_us(whole._current, {"module": whole_model, "args": (x,), "kwargs": {}})

    def installed():
        with regional._installed():
            pass

    region = regional._regions[0]
    dispatch = _median_us(
        lambda: (
            region.structure.full,
            torch._dynamo.utils.counters["stats"]["unique_graphs"],
            torch._dynamo.utils.counters["stats"]["unique_graphs"],
        )
    )
    wrapper = _median_us(installed) + dispatch * len(regional._regions)

    def rest(idx, h):  # the model's ops outside the blocks, and the loss
        e = model.wte(idx) + model.wpe(torch.arange(idx.shape[1]))
        return (model.ln_f(e + h) @ model.wte.weight.t()).logsumexp(-1).mean()

    h = torch.zeros(*x.shape, model.ln_f.normalized_shape[0])
    compiled_rest = torch.compile(rest, fullgraph=True)
    compiled_rest(x, h).backward()
    rest_excess = _median_us(lambda: rest(x, h).backward(), 300) - _median_us(
        lambda: compiled_rest(x, h).backward(), 300
    )
    # torch.compile's cost per extra differentiable call (Dynamo entry, AOTAutograd's forward and
    # backward wrappers, an autograd node): the same tiny work over as many trainable inputs as
    # the regions have parameters, as one compiled graph and as one graph per region
    calls = len(regional._regions)
    n_inputs = sum(1 for _ in regional._regions[0].module.parameters())
    groups = [[torch.randn(8, requires_grad=True) for _ in range(n_inputs)] for _ in range(calls)]

    def tiny(*ps):
        return torch.stack([p.sum() for p in ps]).sum()

    one_graph = torch.compile(lambda gs: sum(tiny(*g) for g in gs), fullgraph=True)
    per_group = torch.compile(tiny, fullgraph=True)

    def separate():
        sum(per_group(*g) for g in groups).backward()

    one_graph(groups).backward()
    separate()
    per_call = (
        _median_us(separate, 500) - _median_us(lambda: one_graph(groups).backward(), 500)
    ) / (calls - 1)
    extra_calls = calls - 1
    return {
        "guards (all regions) minus the whole model's": (regions_guards - whole_guards) / 1e3,
        "the wrapper's Python (install, dispatch)": wrapper / 1e3,
        f"torch.compile's fixed cost per differentiable call of {n_inputs} parameters "
        f"({per_call:.0f} us) x {extra_calls} more calls": per_call * extra_calls / 1e3,
        "the model's rest run eagerly, over the same ops compiled": rest_excess / 1e3,
    }


def _run_child(args: list[str], cache: str) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.lifecycle_compile", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(events: list[dict], steady: list[dict]) -> str:
    import torch

    from bench.__main__ import device_name

    lines = [
        f"Device: {device_name(torch.device('cpu'))}; torch {torch.__version__}; Inductor; "
        "GPT-2 width 64, batch 8 x 64 tokens, a slot after every block's MLP. Seconds of "
        "compile in the first training step after each event (that step minus the steady "
        "step), graphs compiled in parentheses; cold: a fresh Inductor cache directory per "
        "process; warm: the same directory again, as a resumed run finds it.",
        "",
    ]
    depths = sorted({e["depth"] for e in events})
    header = "| event | " + " | ".join(f"{m} {d}" for d in depths for m in ("whole", "regions"))
    lines += [header + " |", "|---|" + "---:|" * (2 * len(depths))]
    cell = {(e["mode"], e["depth"], e["cache"]): e["events"] for e in events}
    for cache in ("cold", "warm"):
        for event in EVENTS:
            row = [f"{event} ({cache})"]
            for d in depths:
                for m in ("whole", "regions"):
                    ev = cell.get((m, d, cache), {}).get(event)
                    row.append("-" if ev is None else f"{ev['seconds']:.2f} ({ev['graphs']})")
            lines.append("| " + " | ".join(row) + " |")
    lines.append(
        "| steady step, ms (cold run, end) | "
        + " | ".join(
            f"{cell[(m, d, 'cold')][EVENTS[-1]]['steady_ms']:.1f}"
            for d in depths
            for m in ("whole", "regions")
        )
        + " |"
    )
    lines += [
        "",
        "Steady training step, both modes in one process on copies of one model "
        "(every third slot seeded, every sixth blending), interleaved shuffled rounds, "
        "median ms (speed relative to the whole model):",
        "",
        "| depth | width | batch | whole | regions | regions / whole | regions, "
        "stage_graphs=False | its ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steady:
        ms = s["ms"]
        w, r, n = ms["whole"], ms["regions"], ms["regions, stage_graphs=False"]
        lines.append(
            f"| {s['depth']} | {s['width']} | {s['batch']} | {w:.2f} | {r:.2f} | "
            f"{w / r:.3f} | {n:.2f} | {w / n:.3f} |"
        )
    for s in steady:
        if "decomposition" not in s:
            continue
        gap = s["ms"]["regions"] - s["ms"]["whole"]
        lines += [
            "",
            f"Where the regions' extra {gap:.2f} ms per step goes (depth {s['depth']}, "
            f"width {s['width']}; each part timed on its own, ms per step):",
            "",
            "| part | ms |",
            "|---|---:|",
        ]
        parts = s["decomposition"]
        for key, value in parts.items():
            lines.append(f"| {key} | {value:.2f} |")
        lines.append(
            "| unaccounted: fusion lost at block boundaries, per-call costs that grow "
            f"with a graph's inputs, noise | {gap - sum(parts.values()):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 12, 24])
    parser.add_argument("--quick", action="store_true", help="depth 2 only, few rounds (smoke)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "events":
            result = child_events(rest[0], int(rest[1]), 64, steady_steps=int(rest[2]))
        else:
            depth, width, batch, rounds, prof = map(int, rest)
            result = child_steady(depth, width, batch, rounds, bool(prof))
        print(json.dumps(result))
        return
    depths = [2] if args.quick else args.depths
    steady_steps, rounds = (3, 5) if args.quick else (10, 60)
    events, steady = [], []
    for depth in depths:
        for mode in ("whole", "regions"):
            with tempfile.TemporaryDirectory() as cache:
                for temperature in ("cold", "warm"):
                    result = _run_child(
                        ["--child", "events", mode, str(depth), str(steady_steps)], cache
                    )
                    result["cache"] = temperature
                    events.append(result)
                    print(
                        mode,
                        depth,
                        temperature,
                        {k: round(v["seconds"], 2) for k, v in result["events"].items()},
                        flush=True,
                    )
        with tempfile.TemporaryDirectory() as cache:
            steady.append(
                _run_child(
                    [
                        "--child",
                        "steady",
                        str(depth),
                        "64",
                        "8",
                        str(rounds),
                        str(int(depth == 12)),
                    ],
                    cache,
                )
            )
        print("steady", steady[-1]["ms"], flush=True)
    if not args.quick:
        with tempfile.TemporaryDirectory() as cache:
            steady.append(_run_child(["--child", "steady", "12", "256", "16", "30", "0"], cache))
        print("steady", steady[-1]["ms"], flush=True)
    text = table(events, steady)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"events": events, "steady": steady}, indent=1))


if __name__ == "__main__":
    main()
