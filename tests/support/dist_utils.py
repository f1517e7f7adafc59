"""Run a function on N gloo ranks in spawned processes, in bounded time, cleaned up on failure."""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import traceback
from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(fn, rank, world, init, results, kwargs):
    try:
        dist.init_process_group(
            "gloo", init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=60)
        )
        results.put((rank, "ok", fn(rank, world, **kwargs)))
    except BaseException:  # report everything, the parent decides
        results.put((rank, "error", traceback.format_exc()))
    finally:
        results.close()
        results.join_thread()
        os._exit(0)  # no destroy_process_group: a peer may already be gone


def run_ranks(fn, world: int = 2, timeout: float = 150.0, **kwargs) -> list:
    """fn(rank, world, **kwargs) on each rank; returns the results by rank. Any rank's exception
    fails the call with its traceback; ranks still running after ``timeout`` are killed."""
    ctx = mp.get_context("spawn")
    folder = tempfile.mkdtemp(prefix="esper-dist-")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_entry,
            args=(fn, r, world, f"file://{folder}/store", results, kwargs),
            daemon=True,
        )
        for r in range(world)
    ]
    for p in procs:
        p.start()
    got: dict[int, tuple[str, object]] = {}
    try:
        while len(got) < world:
            try:
                rank, status, value = results.get(timeout=timeout)
            except queue.Empty:
                missing = sorted(set(range(world)) - set(got))
                raise AssertionError(f"ranks {missing} did not finish within {timeout} s") from None
            got[rank] = (status, value)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        shutil.rmtree(folder, ignore_errors=True)
    errors = [f"rank {r}:\n{v}" for r, (s, v) in sorted(got.items()) if s == "error"]
    if errors:
        raise AssertionError("\n".join(errors))
    return [got[r][1] for r in range(world)]
