"""One collected step of GradientTelemetry: the per-slot accumulators updated in place from this
step's gradients, as device tensor ops (collect_step: no ``.item()``, traceable under
torch.compile(fullgraph=True)) or, for CPU tensors in eager mode, as Python arithmetic
(collect_step_cpu). Both keep each group's norm as a BLAS-style (scale, sum of squares) pair
(norms.py), so norms from 1e-30 to 1e30 neither overflow nor underflow in float32.

State (GradientTelemetry's tensors, one row per slot): ``scale``/``ssq`` float32 [slots, 3]
(columns SEED, GATE, HOST), ``counts`` int64 [slots, 5] (columns STEPS, VANISHING, EXPLODING,
NON_FINITE, SEED_TENSORS), ``numel`` int64 [slots, 3], ``seen`` int64 [slots] (the seed id each
row was collected for; a changed id restarts the row).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .norms import combine_pairs, norm_pair, tensor_norms

SEED, GATE, HOST = 0, 1, 2  # columns of the norm accumulators
# Columns of the count accumulator.
STEPS, VANISHING, EXPLODING, NON_FINITE, SEED_TENSORS = range(5)


def collect_step(
    state: dict[str, Tensor],
    seed_grads: list[list[Tensor]],
    gate_grads: list[list[Tensor]],
    host_grads: list[Tensor],
    seed_ids: list[Tensor],
    take: Tensor | None,
    vanishing: float,
    exploding: float,
) -> None:
    """One collected step, in place on ``state``'s tensors (see GradientTelemetry). Pure tensor
    ops: safe inside torch.compile(fullgraph=True). ``take`` (bool [1]) keeps the old values
    where False (``every`` inside a compiled step); None takes the step."""
    device = state["scale"].device
    host = tensor_norms(host_grads, device).to(device)
    host_pair = norm_pair(torch.where(torch.isfinite(host), host, 0.0))
    ids = torch.cat([i.reshape(1).to(device) for i in seed_ids])  # buffers: already there
    fresh = ids != state["seen"]  # the slot's seed changed since the last collected step
    scales, ssqs, counts = [], [], []
    for i, (seed_list, gate_list) in enumerate(zip(seed_grads, gate_grads)):
        old_scale = torch.where(fresh[i], 0.0, state["scale"][i])
        old_ssq = torch.where(fresh[i], 0.0, state["ssq"][i])
        old_counts = torch.where(fresh[i], 0, state["counts"][i])
        seed = tensor_norms(seed_list, device).to(device)
        gate = tensor_norms(gate_list, device).to(device)
        seed_finite, gate_finite = torch.isfinite(seed), torch.isfinite(gate)
        row_scale, row_ssq = [], []
        for column, pair in (
            (SEED, norm_pair(torch.where(seed_finite, seed, 0.0))),
            (GATE, norm_pair(torch.where(gate_finite, gate, 0.0))),
            (HOST, host_pair),
        ):
            s, q = combine_pairs(old_scale[column], old_ssq[column], *pair)
            row_scale.append(s)
            row_ssq.append(q)
        step_counts = torch.stack(
            [
                torch.ones((), dtype=torch.int64, device=device),
                (seed_finite & (seed < vanishing)).sum(),
                ((seed > exploding) | ~seed_finite).sum(),
                (~seed_finite).sum() + (~gate_finite).sum(),
                torch.full((), len(seed_list), dtype=torch.int64, device=device),
            ]
        )
        scales.append(torch.stack(row_scale))
        ssqs.append(torch.stack(row_ssq))
        counts.append(old_counts + step_counts)
    # Filled on the device (a host-to-device copy of a Python list would synchronise).
    host_numel = sum(g.numel() for g in host_grads)
    numel = torch.stack(
        [
            torch.stack(
                [
                    torch.full((), n, dtype=torch.int64, device=device)
                    for n in (sum(g.numel() for g in s), sum(g.numel() for g in q), host_numel)
                ]
            )
            for s, q in zip(seed_grads, gate_grads)
        ]
    )
    new = {
        "scale": torch.stack(scales),
        "ssq": torch.stack(ssqs),
        "counts": torch.stack(counts),
        "numel": numel,
        "seen": ids,
    }
    with torch.no_grad():
        for key, value in new.items():
            if take is not None:
                value = torch.where(take.reshape((1,) * value.dim()), value, state[key])
            state[key].copy_(value)


def collect_step_cpu(
    state: dict[str, Tensor],
    seed_grads: list[list[Tensor]],
    gate_grads: list[list[Tensor]],
    host_grads: list[Tensor],
    seed_ids: list[Tensor],
    vanishing: float,
    exploding: float,
) -> None:
    """collect_step for CPU tensors, eagerly: reading is free on a CPU, so the per-tensor norms
    come back as numbers (tensor_norms) and the few dozen tiny tensor ops of the accumulation
    become Python arithmetic in float64; each pair is stored back as (sqrt(total), 1), which
    stands for the same total. One read of the state, one write per accumulator."""
    sizes = [len(g) for g in seed_grads] + [len(g) for g in gate_grads] + [len(host_grads)]
    flat = (
        [g for group in seed_grads for g in group]
        + [g for group in gate_grads for g in group]
        + list(host_grads)
    )
    norms = tensor_norms(flat).tolist() if flat else []
    groups, start = [], 0
    for size in sizes:
        groups.append(norms[start : start + size])
        start += size
    n = len(seed_grads)
    seeds, gates, host = groups[:n], groups[n : 2 * n], groups[2 * n]
    host_total = sum(v * v for v in host if math.isfinite(v))
    scale, ssq = state["scale"].tolist(), state["ssq"].tolist()
    counts, seen = state["counts"].tolist(), state["seen"].tolist()
    ids = [int(i) for i in torch.cat([i.reshape(1) for i in seed_ids]).tolist()]
    for i in range(n):
        if ids[i] != seen[i]:  # the slot's seed changed since the last collected step
            scale[i], ssq[i], counts[i] = [0.0] * 3, [0.0] * 3, [0] * 5
        step = [
            sum(v * v for v in seeds[i] if math.isfinite(v)),
            sum(v * v for v in gates[i] if math.isfinite(v)),
            host_total,
        ]
        for k in range(3):
            total = scale[i][k] ** 2 * ssq[i][k] + step[k]
            scale[i][k], ssq[i][k] = (math.sqrt(total), 1.0) if total > 0 else (0.0, 0.0)
        finite = [math.isfinite(v) for v in seeds[i]]
        counts[i] = [
            counts[i][STEPS] + 1,
            counts[i][VANISHING] + sum(f and v < vanishing for v, f in zip(seeds[i], finite)),
            counts[i][EXPLODING] + sum(not f or v > exploding for v, f in zip(seeds[i], finite)),
            counts[i][NON_FINITE]
            + finite.count(False)
            + sum(not math.isfinite(v) for v in gates[i]),
            counts[i][SEED_TENSORS] + len(seeds[i]),
        ]
    numel = [
        [sum(g.numel() for g in s), sum(g.numel() for g in q), sum(g.numel() for g in host_grads)]
        for s, q in zip(seed_grads, gate_grads)
    ]
    with torch.no_grad():
        for key, value in (
            ("scale", scale),
            ("ssq", ssq),
            ("counts", counts),
            ("numel", numel),
            ("seen", ids),
        ):
            state[key].copy_(torch.tensor(value, dtype=state[key].dtype))


_compiled_collect = None


def compiled_collect_step():
    """collect_step through torch.compile, built on first use: eager collect() calls this so
    that ``g * s`` is never materialised (one graph per set of gradient shapes)."""
    global _compiled_collect
    if _compiled_collect is None:
        _compiled_collect = torch.compile(collect_step, fullgraph=True, dynamic=False)
    return _compiled_collect
