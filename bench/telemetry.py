"""python -m bench.telemetry [--rounds N] [--out FILE.md]

What gradient telemetry costs, side by side and interleaved in one run, on bench/e2e.py's models
(small sizes on a CPU, "big" on a GPU), slots in TRAINING:

1. One collected step, after backward (the gradients are computed once and kept):
   - esper-lite's method as its collector runs it per group (host, then each slot): clone every
     gradient, cast the clone to float64, torch._foreach_norm, stack, square and sum, and count
     vanishing/exploding tensors, all on the device;
   - ours, eager: GradientTelemetry.collect() with compile=False (the CPU default: plain
     foreach norms where exact, bounded chunks elsewhere; on a GPU, chunks) and compile=True
     (the internal torch.compile, the GPU default);
   - ours, compiled: collect() traced into a torch.compile(fullgraph=True) function.
2. The seed-output probe: a whole training step with SeedSlot.check_seed_output on and off,
   eager and compiled, slots in TRAINING and in BLENDING.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from bench import e2e
from bench.__main__ import device_name
from bench.timing import interleaved_ms
from esper_slot import GradientTelemetry
from esper_slot.discovery import named_slots


def esper_lite_collect(model, vanishing=1e-7, exploding=5.0):
    """esper-lite's per-group collection (simic/telemetry/gradient_collector.py, as its
    documentation describes it): for the host and for every slot with a seed."""
    slots = [s for _, s in named_slots(model) if s.has_seed]
    owned = {id(p) for s in slots for p in s.parameters()}
    groups = [[p for p in model.parameters() if id(p) not in owned]]
    groups += [list(s.seed.parameters()) for s in slots]
    out = []
    for params in groups:
        grads = [p.grad.clone().double() for p in params if p.grad is not None]
        norms = torch.stack(torch._foreach_norm(grads, 2))
        out.append((norms.pow(2).sum(), (norms < vanishing).sum(), (norms > exploding).sum()))
    return out


def collect_costs(name: str, device, rounds: int) -> dict[str, float]:
    model, x, labels = e2e.build(
        name, e2e.SeedSlot, device, big=device.type == "cuda", stage="TRAINING"
    )
    nn.functional.cross_entropy(model(x).float(), labels).backward()
    chunked = GradientTelemetry(model, compile=False)
    internal = GradientTelemetry(model, compile=True)
    traced = GradientTelemetry(model)
    compiled = torch.compile(traced.collect, fullgraph=True)
    fns = {
        "esper-lite": lambda: esper_lite_collect(model),
        "ours, compile=False": chunked.collect,
        "ours, compile=True": internal.collect,
        "ours, compiled": compiled,
    }
    for fn in fns.values():  # compile and warm up
        fn()
        fn()
    ms = interleaved_ms(fns, rounds, device)
    ms["gradient MB"] = (
        sum(
            p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None
        )
        / 2**20
    )
    return ms


def probe_costs(name: str, stage: str, device, rounds: int) -> dict[str, float]:
    fns = {}
    for compiled in (False, True):
        for check in (True, False):
            model, x, labels = e2e.build(
                name, e2e.SeedSlot, device, big=device.type == "cuda", stage=stage
            )
            for _, slot in named_slots(model):
                slot.check_seed_output = check
            step = e2e.training_step(model, x, labels, compiled, device)
            step()
            step()
            fns[("compiled" if compiled else "eager", check)] = step
    return interleaved_ms(fns, rounds, device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch._dynamo.config.recompile_limit = 64
    lines = [
        f"Device: {device_name(device)}; torch {torch.__version__}; {args.rounds} "
        "interleaved rounds, median ms.",
        "",
        "One collected step (gradients kept from one backward), slots in TRAINING:",
        "",
        "| model | gradient MB | esper-lite ms | ours, eager, compile=False (CPU default) | "
        "eager, compile=True (GPU default) | inside a compiled step |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("cnn", "transformer"):
        ms = collect_costs(name, device, args.rounds)
        base = ms["esper-lite"]
        lines.append(
            f"| {name} | {ms['gradient MB']:.2f} | {base:.3f} | "
            + " | ".join(
                f"{ms[k]:.3f} ms ({base / ms[k]:.2f}x)"
                for k in ("ours, compile=False", "ours, compile=True", "ours, compiled")
            )
            + " |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "The seed-output probe: a training step with check_seed_output on vs off:",
        "",
        "| model | slots in | mode | on ms | off ms | cost |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name in ("cnn", "transformer"):
        for stage in ("TRAINING", "BLENDING"):
            ms = probe_costs(name, stage, device, args.rounds)
            for mode in ("eager", "compiled"):
                on, off = ms[(mode, True)], ms[(mode, False)]
                lines.append(
                    f"| {name} | {stage} | {mode} | {on:.3f} | {off:.3f} | "
                    f"{(on / off - 1) * 100:+.1f}% |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
