"""python -m bench.controller_overhead [--rounds N] [--out FILE.md]

What the controller's side costs a compiled training step: the transformer block of bench/e2e.py
(two slots, BLENDING), compiled with Inductor (fullgraph), in two copies run interleaved in
shuffled order: one plain, one with a LifecycleEvents hub and two subscribers attached, its
slots' metrics updated after every step (record_accuracy, record_gradients: what a controller
does once an epoch, done here every step as the worst case). Reports the median step of each and
the graphs each compiled (metrics and events are host-side Python, so the graph must be the
same and no graph may be added).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

import esper_slot as es
from bench import e2e
from bench.__main__ import device_name


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps, graphs, hubs = {}, {}, []
    for variant in ("plain", "metrics and events"):
        model, x, labels = e2e.build("transformer", e2e.SeedSlot, device, big=device.type == "cuda")
        step = e2e.training_step(model, x, labels, True, device)
        slots = [m for m in model.modules() if isinstance(m, es.SeedSlot)]
        if variant != "plain":
            hub = es.LifecycleEvents(model)
            seen: list = []
            hub.subscribe(seen.append)
            hub.subscribe(es.log_events)
            hubs.append(hub)
            stats = es.telemetry.SlotGradientStats(
                "s", "BLENDING", 1.0, 0.0, 1.0, 1, 0, 1, 1, 0.5, 0, 0, 0, 0, 1.0
            )

            def with_controller(step=step, slots=slots, stats=stats):
                step()
                for slot in slots:
                    slot.record_accuracy(50.0)
                    slot.record_gradients(stats)

            run = with_controller
        else:
            run = step
        before = counters["stats"]["unique_graphs"]
        run()
        run()
        graphs[variant] = counters["stats"]["unique_graphs"] - before
        steps[variant] = run
    times: dict[str, list[float]] = {v: [] for v in steps}
    order = list(steps)
    for r in range(args.rounds):
        random.Random(r).shuffle(order)
        for variant in order:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            steps[variant]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[variant].append(time.perf_counter() - start)
    ms = {v: statistics.median(t) * 1e3 for v, t in times.items()}
    spread = {
        v: (statistics.quantiles(t, n=4)[2] - statistics.quantiles(t, n=4)[0]) * 1e3
        for v, t in times.items()
    }
    lines = [
        f"Device: {device_name(device)}; torch {torch.__version__}; Inductor; "
        f"{args.rounds} interleaved rounds; transformer block, two slots BLENDING.",
        "",
        "| variant | median ms per step | interquartile range, ms | graphs compiled |",
        "|---|---:|---:|---:|",
    ]
    for v in steps:
        lines.append(f"| {v} | {ms[v]:.3f} | {spread[v]:.3f} | {graphs[v]} |")
    ratio = ms["plain"] / ms["metrics and events"]
    lines += ["", f"plain / with metrics and events (speed): {ratio:.3f}"]
    if graphs["metrics and events"] == 0:
        lines.append(
            "The second copy compiled no graph: the plain copy's graph served it (its "
            "guards passed: nothing they check differs with metrics and events)."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
