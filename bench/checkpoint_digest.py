"""python -m bench.checkpoint_digest [--quick] [--reps N] [--out FILE.json]

What the checkpoint digest (esper_slot/integrity.py) costs, on this machine:

1. Each candidate hash's rate on one 256 MiB buffer in memory (best of 3): hashlib's sha256,
   sha1, sha512, sha3_256, md5, blake2b, blake2s, and zlib's crc32 and adler32.
2. The digest of a 1 GiB float32 state dict (16 tensors of 64 MiB) on 1 and 2 threads, for the
   strong candidates (integrity.digest_values: headers, tensors read in place).
3. End to end, for the chosen hash: ``save_checkpoint`` with the digest vs the same call with
   the digest switched off, and ``load_checkpoint`` with ``verify=True`` vs ``verify=False``,
   into a model of 10 MiB, 100 MiB and 1 GiB of float32 parameters, interleaved, median of
   ``--reps`` (default 5: 15 at 10 MiB and 100 MiB, 7 at 1 GiB); and the digest (on save) and
   the check (on load) timed alone. Files are written to a temporary folder next to the
   repository (same disk as a user's checkpoints; save includes its fsync), read back from the
   page cache.

Writes FILE (JSON) and FILE with .md (tables), and prints the tables. The whole run takes about
2 minutes on the 2-core CPU this project is measured on; ``--quick`` (10 and 100 MiB only, 3
reps, 32 MiB buffers) a few seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import torch
from torch import nn

import esper_slot as es
from bench.__main__ import device_name
from esper_slot import integrity

MiB = 1 << 20
HASHES = ["sha256", "sha1", "sha512", "sha3_256", "md5", "blake2b", "blake2s", "crc32", "adler32"]
STRONG = ["sha256", "blake2b-256", "sha512"]  # integrity.ALGORITHMS
SIZES_MIB = [10, 100, 1024]


def hash_rate(name: str, buf: memoryview, reps: int) -> float:
    """GB/s (1e9 bytes) of the best of ``reps`` passes over ``buf``."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        if name == "crc32":
            zlib.crc32(buf)
        elif name == "adler32":
            zlib.adler32(buf)
        else:
            hashlib.new(name, buf).digest()
        best = min(best, time.perf_counter() - start)
    return len(buf) / best / 1e9


class Blob(nn.Module):
    """``n`` float32 parameters of ``shape`` each (a model's weights, nothing else)."""

    def __init__(self, n: int, shape: tuple[int, int]):
        super().__init__()
        self.ps = nn.ParameterList(nn.Parameter(torch.empty(shape)) for _ in range(n))


def blob_of(mib: int) -> Blob:
    # tensors of 1 MiB (10 MiB model), 4 MiB (100 MiB) and 64 MiB (1 GiB)
    side = {10: 512, 100: 1024, 1024: 4096}[mib]
    n = round(mib * MiB / (side * side * 4))
    model = Blob(n, (side, side))
    with torch.no_grad():
        for p in model.ps:
            p.normal_()
    return model


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def end_to_end(mib: int, reps: int, folder: Path) -> dict:
    source, target = blob_of(mib), blob_of(mib)
    path = folder / f"blob{mib}.pt"
    real = integrity.with_digest

    def save(digest: bool) -> float:
        integrity.with_digest = real if digest else (lambda state, *a, **k: state)
        try:
            return timed(lambda: es.save_checkpoint(source, path))
        finally:
            integrity.with_digest = real

    def check() -> float:  # what verify=True adds to read_checkpoint, on a state just read
        state = torch.load(path, weights_only=True)
        start = time.perf_counter()
        integrity.check_pickle_crc(path)
        record = integrity.pop_digest(state, str(path))
        assert record is not None
        integrity.verify(state, record, str(path))
        return time.perf_counter() - start

    es.save_checkpoint(source, path)  # warm the file, the page cache and the allocator
    es.load_checkpoint(target, path)
    keys = ("save", "save_plain", "digest", "load", "load_plain", "check")
    times: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(reps):  # interleaved: digest and no digest see the same machine state
        times["save_plain"].append(save(False))
        times["save"].append(save(True))
        state = source.state_dict()
        times["digest"].append(timed(lambda s=state: real(s)))
        times["load_plain"].append(timed(lambda: es.load_checkpoint(target, path, verify=False)))
        times["load"].append(timed(lambda: es.load_checkpoint(target, path)))
        times["check"].append(check())
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    gb = mib * MiB / 1e9
    return {
        "mib": mib,
        "tensors": len(source.ps),
        "reps": reps,
        "median": med,
        "min": low,
        "all": times,
        "digest_s_per_gb": [med["digest"] / gb, low["digest"] / gb],
        "check_s_per_gb": [med["check"] / gb, low["check"] / gb],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    reps = 1 if args.quick else args.reps
    torch.manual_seed(0)
    result: dict = {
        "device": device_name(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "algorithm": integrity.ALGORITHM,
        "load_average_before": os.getloadavg()[0],
    }

    buf_mib = 32 if args.quick else 256
    buf = memoryview(torch.randint(0, 256, (buf_mib * MiB,), dtype=torch.uint8).numpy())
    result["hash_gb_s"] = {name: hash_rate(name, buf, 3) for name in HASHES}
    del buf

    big = [torch.randn(buf_mib * MiB // 16 // 4) for _ in range(16)]
    result["digest_state"] = {"mib": buf_mib, "tensors": 16, "gb_s": {}}
    for algorithm in STRONG:
        for workers in (1, 2):

            def run(a=algorithm, w=workers, v=big):
                integrity.digest_values(v, a, w)

            seconds = min(timed(run) for _ in range(2))
            result["digest_state"]["gb_s"][f"{algorithm} x{workers}"] = (
                buf_mib * MiB / seconds / 1e9
            )
    del big

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix=".bench-ckpt-", dir=root) as folder:
        result["end_to_end"] = [
            end_to_end(mib, reps * 3 if mib < 1024 else reps + 2, Path(folder))
            for mib in (SIZES_MIB[:2] if args.quick else SIZES_MIB)
        ]

    result["load_average_after"] = os.getloadavg()[0]
    text = report(result)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


def report(r: dict) -> str:
    lines = [
        f"# Checkpoint digest cost ({r['device']}, {r['threads']} threads, torch "
        f"{r['torch']}; chosen hash: {r['algorithm']})",
        "",
        f"Load average (1 min) before/after: {r['load_average_before']:.2f} / "
        f"{r['load_average_after']:.2f} (the 2 cores are shared with other work).",
        "",
        "## Hash rates, one buffer in memory (best of 3)",
        "",
        "| hash | GB/s | s per GB |",
        "|---|---|---|",
    ]
    for name, rate in sorted(r["hash_gb_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {rate:.2f} | {1 / rate:.3f} |")
    d = r["digest_state"]
    lines += [
        "",
        f"## integrity.digest_values, {d['tensors']} float32 tensors of "
        f"{d['mib'] // d['tensors']} MiB (best of 2)",
        "",
        "| hash x threads | GB/s | s per GB |",
        "|---|---|---|",
    ]
    for name, rate in d["gb_s"].items():
        lines.append(f"| {name} | {rate:.2f} | {1 / rate:.3f} |")
    lines += [
        "",
        "## End to end: median (min) of the reps",
        "",
        "save includes its fsync; load reads the file from the page cache and copies it "
        "into the model. digest: with_digest alone on the model's state dict; check: the "
        "zip CRC of the pickle and the digest check alone, on a state just read.",
        "",
        "| parameters | tensors | reps | save plain s | save + digest s | load verify=False "
        "s | load verify=True s | digest s | check s | digest s/GB | check s/GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def both(e, key, scale=1.0):
        return f"{e['median'][key] * scale:.3f} ({e['min'][key] * scale:.3f})"

    for e in r["end_to_end"]:
        gb = e["mib"] * MiB / 1e9
        lines.append(
            f"| {e['mib']} MiB | {e['tensors']} | {e['reps']} | "
            + " | ".join(
                both(e, k) for k in ("save_plain", "save", "load_plain", "load", "digest", "check")
            )
            + f" | {both(e, 'digest', 1 / gb)} | {both(e, 'check', 1 / gb)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
