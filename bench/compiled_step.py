"""python -m bench.compiled_step [--rounds N] [--out FILE.md]

Our compiled training step against the compiled formulas, side by side and interleaved in one
run: a small CNN and a transformer block (bench/e2e.py), their slots in TRAINING and in
BLENDING. Variants, each torch.compile(fullgraph=True) with Inductor:

- ours, formulas: SeedSlot, the operators' compile path "formulas" (the default);
- ours, opaque: SeedSlot with kernels.set_compile_path("opaque") (the registered ops);
- ours, regions: SeedSlot under esper_slot.compile(model, regions=[model]) (the model is one
  region, so its graph specialises on the slots' stage: stage_graphs);
- compiled formulas: esper-lite's slot written as plain formulas (STE h + (s - s.detach()) in
  TRAINING, lerp / multiply / gate blends after), the baseline.

Each round times one step of every variant, in a shuffled order (median ms over the rounds). On CUDA
it also reports each variant's peak memory.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

import esper_slot as es
from bench import e2e
from bench.__main__ import device_name
from kernels._backend import compile_path, set_compile_path


def _regions(model):
    return es.compile(model, regions=[model], fullgraph=True)  # the model is one region


# variant: (slot class, compile path, how the model is compiled: None = torch.compile)
VARIANTS = {
    "ours, formulas": (e2e.SeedSlot, "formulas", None),
    "ours, opaque": (e2e.SeedSlot, "opaque", None),
    "ours, regions": (e2e.SeedSlot, "formulas", _regions),
    "compiled formulas": (e2e.FormulaSlot, "formulas", None),
}


@contextmanager
def using(path: str):
    before = compile_path()
    set_compile_path(path)
    try:
        yield
    finally:
        set_compile_path(before)


def measure(name: str, stage: str, device, rounds: int) -> dict:
    steps, peaks = {}, {}
    for variant, (slot_cls, path, compile_fn) in VARIANTS.items():
        model, x, labels = e2e.build(name, slot_cls, device, big=device.type == "cuda", stage=stage)
        step = e2e.training_step(model, x, labels, True, device, compile_fn)
        with using(path):
            step()  # compile
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peaks[variant] = torch.cuda.max_memory_allocated() / 2**20
        steps[variant] = (step, path)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    order = list(steps.items())
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)  # a fixed order biases the first call of each round (bench/NOTES.md)
        for variant, (step, path) in order:
            with using(path):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[variant].append(time.perf_counter() - t0)
    return {"ms": {v: statistics.median(t) * 1e3 for v, t in times.items()}, "peak_mb": peaks}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch._dynamo.config.recompile_limit = 64  # several variants share the models' code
    lines = [
        f"Device: {device_name(device)}; torch {torch.__version__}; Inductor; "
        f"{args.rounds} interleaved rounds, median ms per training step.",
        "",
        "| model | slots in | ours, formulas | ours, opaque | ours, regions | "
        "compiled formulas | ours / compiled formulas (speed) | opaque / compiled "
        "formulas | regions / compiled formulas |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("cnn", "transformer"):
        for stage in ("TRAINING", "BLENDING"):
            r = measure(name, stage, device, args.rounds)
            ms = r["ms"]
            base = ms["compiled formulas"]
            lines.append(
                f"| {name} | {stage} | {ms['ours, formulas']:.3f} | "
                f"{ms['ours, opaque']:.3f} | {ms['ours, regions']:.3f} | {base:.3f} | "
                f"{base / ms['ours, formulas']:.3f} | {base / ms['ours, opaque']:.3f} | "
                f"{base / ms['ours, regions']:.3f} |"
            )
            if r["peak_mb"]:
                lines.append(
                    "| | peak MB | "
                    + " | ".join(f"{r['peak_mb'][v]:.1f}" for v in VARIANTS)
                    + " | | | |"
                )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
