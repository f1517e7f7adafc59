"""python -m bench [--quick] [--out FILE] [--no-e2e] [--no-ops] [--resume]

Runs, on the current device (CUDA when available, else CPU), every operator x dtype x size x
pass for ours (kernels.*), the eager formulas and torch.compile of the formulas, the device's
copy bandwidth, bytes saved for backward, and end-to-end training steps; writes FILE (JSON),
FILE.md (table; on a GPU with the first GPU run's targets and verdicts) and FILE.png (plot), and
prints the table.

Every finished case is also written at once to FILE with the suffix .partial.json, so a run cut
off by a time limit keeps what it measured; --resume reads that file (same device and torch
required) and runs only the cases it lacks. A GPU run that does not fit one call: ``--no-e2e``
in one call, then ``--resume --no-ops`` (the partial file carried along) in the next."""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import torch

from bench import cases, e2e, report, timing

GPU_SIZES = [2**18, 2**20, 2**22, 2**24, 2**26, 2**28]  # 256K (launch overhead) .. 256M
CPU_SIZES = [2**16, 2**18, 2**20]
QUICK_CPU_SIZES = [2**16]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({torch.get_num_threads()} threads)"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def run_ops(device, sizes, dtypes, quick, log, rows, saved, checkpoint):
    """Append to ``rows`` (and ``saved``) every case they lack, calling checkpoint() after each."""
    done = {(r["op"], r["dtype"], r["numel"], r["pass"]) for r in rows}
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for numel in sizes:
            sets = 2 if numel >= 2**28 else 3
            for pass_ in ("fwd", "fwd+bwd"):
                todo = [op for op in cases.OPS if (op, dtype_name, numel, pass_) not in done]
                if not todo:
                    continue
                inputs = [
                    cases.make_inputs(numel, dtype, device, pass_ == "fwd+bwd") for _ in range(sets)
                ]
                for op in todo:
                    compiled = torch.compile(cases.EAGER[op], dynamic=False)
                    ms = timing.median_ms_each(
                        {
                            name: timing.rotating([cases.runner(fn, pass_, i) for i in inputs])
                            for name, fn in (
                                ("ours", cases.OURS[op]),
                                ("eager", cases.EAGER[op]),
                                ("compiled", compiled),
                            )
                        },
                        device,
                        quick=quick,
                    )
                    nbytes = cases.min_bytes(op, numel, dtype, pass_)
                    gbps = {
                        k: (nbytes / (v * 1e-3) / 1e9 if nbytes else None) for k, v in ms.items()
                    }
                    rows.append(
                        {
                            "op": op,
                            "dtype": dtype_name,
                            "numel": numel,
                            "pass": pass_,
                            "ours_ms": ms["ours"],
                            "eager_ms": ms["eager"],
                            "compiled_ms": ms["compiled"],
                            "ours_gbps": gbps["ours"],
                            "bytes": nbytes,
                            "eager_gbps": gbps["eager"],
                            "compiled_gbps": gbps["compiled"],
                        }
                    )
                    log(
                        f"{op:8s} {dtype_name:8s} {numel:>11,} {pass_:7s} ours {ms['ours']:.4f} "
                        f"eager {ms['eager']:.4f} compiled {ms['compiled']:.4f} ms"
                    )
                    if pass_ == "fwd+bwd" and numel == sizes[0]:
                        ours_b, ours_f = cases.saved_bytes(cases.OURS[op], inputs[0])
                        eager_b, eager_f = cases.saved_bytes(cases.EAGER[op], inputs[0])
                        saved.append(
                            {
                                "op": op,
                                "dtype": dtype_name,
                                "numel": numel,
                                "ours_bytes": ours_b,
                                "ours_fresh_bytes": ours_f,
                                "eager_bytes": eager_b,
                                "eager_fresh_bytes": eager_f,
                            }
                        )
                    checkpoint()
                del inputs
    order = {
        (op, d, n, p): i
        for i, (d, n, p, op) in enumerate(
            (d, n, p, op)
            for d in DTYPES
            for n in sorted({r["numel"] for r in rows})
            for p in ("fwd", "fwd+bwd")
            for op in cases.OPS
        )
    }
    rows.sort(key=lambda r: order[(r["op"], r["dtype"], r["numel"], r["pass"])])


def run_e2e(device, models, quick, compiled_too, log, out, checkpoint, sizes=("small",)):
    """Append to ``out`` every (model, size) entry it lacks, calling checkpoint() after each."""
    done = {(e["model"], e.get("size")) for e in out}
    for name, size in ((n, s) for s in sizes for n in models):
        if (name, size) in done:
            continue
        entry = {
            "model": name,
            "size": size,
            "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        }
        for key, slot_cls, compiled in (
            ("ours", e2e.SeedSlot, False),
            ("eager", e2e.FormulaSlot, False),
            ("ours_compiled", e2e.SeedSlot, True),
            ("compiled", e2e.FormulaSlot, True),
        ):
            if compiled and not compiled_too:
                entry[f"{key}_ms"] = entry[f"{key}_peak_mb"] = None
                continue
            model, x, labels = e2e.build(name, slot_cls, device, size=size)
            step = e2e.training_step(model, x, labels, compiled, device)
            step()  # compile / warm up
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                step()
                torch.cuda.synchronize()
                entry[f"{key}_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            else:
                entry[f"{key}_peak_mb"] = None  # no allocator statistics on CPU
            entry[f"{key}_ms"] = timing.median_ms(step, device, quick=quick)
            log(f"e2e {name:12s} {size:10s} {key:14s} {entry[f'{key}_ms']:.3f} ms")
        out.append(entry)
        checkpoint()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[2])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small subset (float32, one size, eager e2e): under a minute on 2 CPU cores",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/<device>.json)"
    )
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end steps")
    parser.add_argument("--no-ops", action="store_true", help="skip the operator cases")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from FILE's .partial.json (same device and torch)",
    )
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch._dynamo.config.recompile_limit = 1024  # one compiled graph per case, not a fallback
    torch._dynamo.config.accumulated_recompile_limit = 4096
    name = device_name(device)
    out = args.out or Path(__file__).parent / "results" / f"{slug(name)}.json"
    partial = out.with_suffix(".partial.json")
    if device.type == "cuda":
        sizes, dtypes = GPU_SIZES, list(DTYPES)
    else:
        sizes, dtypes = (QUICK_CPU_SIZES, ["float32"]) if args.quick else (CPU_SIZES, list(DTYPES))
    if args.quick and device.type == "cuda":
        sizes = [2**20, 2**24]
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", flush=True)

    import triton

    result = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "copy_gbps": None,
        "rows": [],
        "e2e": [],
        "saved": [],
        "backend": __import__("kernels").active_backend(device),
        "seconds": 0.0,
    }
    if args.resume and partial.exists():
        before = json.loads(partial.read_text())
        if (before["device"], before["torch"]) != (name, torch.__version__):
            raise SystemExit(
                f"--resume: {partial} was measured on {before['device']} with torch "
                f"{before['torch']}, not here ({name}, torch {torch.__version__}); "
                "results from two machines must not share a table"
            )
        result.update(before)
        log(f"resuming {partial}: {len(result['rows'])} rows, {len(result['e2e'])} e2e entries")

    def checkpoint():
        result["seconds"] = round(result["seconds"] + time.perf_counter() - checkpoint.t0, 1)
        checkpoint.t0 = time.perf_counter()
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(result, indent=1) + "\n")

    checkpoint.t0 = time.perf_counter()  # type: ignore[attr-defined]
    log(f"{name}: sizes {sizes}, dtypes {dtypes}")
    if result["copy_gbps"] is None:
        result["copy_gbps"] = timing.copy_gbps(
            max(max(sizes) * 4 * 3, 2**26), device, quick=args.quick
        )
        checkpoint()
    log(f"copy bandwidth {result['copy_gbps']:.1f} GB/s")
    if not args.no_ops:
        run_ops(device, sizes, dtypes, args.quick, log, result["rows"], result["saved"], checkpoint)
    if not args.no_e2e:
        run_e2e(
            device,
            ["cnn"] if args.quick else ["cnn", "transformer"],
            args.quick,
            compiled_too=not args.quick,
            log=log,
            out=result["e2e"],
            checkpoint=checkpoint,
            sizes=("small",)
            if device.type != "cuda"
            else ("big",)
            if args.quick
            else ("big", "realistic"),
        )
    checkpoint()
    print(report.write(result, out))
    print(
        f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')} "
        f"(and {partial.name}, for --resume)"
    )


if __name__ == "__main__":
    main()
