"""Median time of a call. CUDA: triton.testing.do_bench (CUDA events, warm-up, L2 flushed
before every repeat). CPU: time.perf_counter over repeats after a warm-up. Callers rotate
several input sets through the call so inputs are not cache-resident between repeats."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable

import torch


def rotating(calls: list[Callable[[], object]]) -> Callable[[], object]:
    cycle = itertools.cycle(calls)
    return lambda: next(cycle)()


def median_ms(fn: Callable[[], object], device: torch.device, *, quick: bool = False) -> float:
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(
            do_bench(fn, warmup=10 if quick else 25, rep=40 if quick else 200, return_mode="median")
        )
    for _ in range(2 if quick else 3):
        fn()
    times = []
    budget = 0.15 if quick else 0.5  # seconds of repeats per measurement
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def median_ms_each(
    fns: dict[str, Callable[[], object]], device: torch.device, *, quick: bool = False
) -> dict[str, float]:
    """Median time of each call, measured side by side. CUDA: median_ms of each in turn (CUDA
    events are stable). CPU: interleaved rounds that call each once, so a drift in the machine's
    speed (a shared VM; allocator state) hits every contender alike."""
    if device.type == "cuda":
        return {name: median_ms(fn, device, quick=quick) for name, fn in fns.items()}
    for fn in fns.values():
        for _ in range(2 if quick else 3):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    budget = (0.15 if quick else 0.5) * len(fns)
    start, rounds = time.perf_counter(), 0
    order = list(fns.items())
    shuffle = random.Random(0).shuffle
    while rounds < 5 or (time.perf_counter() - start < budget and rounds < 200):
        shuffle(order)  # measured: a fixed order costs the first call of each round up to 3x
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def interleaved_ms(
    fns: dict[str, Callable[[], object]], rounds: int, device: torch.device
) -> dict[str, float]:
    """Median ms per call of each function over a fixed number of rounds, each calling every
    function once in a shuffled order (synchronising around each call on CUDA): for calls too
    slow for median_ms_each's time budget, such as whole training steps."""
    times = {k: [] for k in fns}
    order = list(fns.items())
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name, fn in order:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def copy_gbps(nbytes: int, device: torch.device, quick: bool = False) -> float:
    """Device-to-device copy bandwidth, counting bytes read plus bytes written."""
    n = max(nbytes // 4, 1)
    srcs = [torch.randn(n, device=device) for _ in range(2)]
    dst = torch.empty(n, device=device)
    ms = median_ms(rotating([lambda s=s: dst.copy_(s) for s in srcs]), device, quick=quick)
    return 2 * n * 4 / (ms * 1e-3) / 1e9
