"""One large case per operator for Nsight Compute: what each of our kernels moves through DRAM,
against the pass's byte floor (bench.cases.min_bytes).

On the GPU machine, one ncu process per case (scripts/gpu_check.sh ncu does this):

    ncu --clock-control none --print-units base --csv \\
        --kernel-name regex:"$(python3 -m bench.ncu_cases --kernel-regex)" \\
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \\
        python3 -m bench.ncu_cases --run 'add fwd' > ncu/add_fwd.csv
    python3 -m bench.ncu_cases --parse ncu > ncu.md

``--run CASE`` calls the case twice, synchronising after each: the first call compiles the
Triton kernels and warms the caches, the second is the one tabulated (the later half of the
profiled launches). A case's kernels are its forward kernel, plus for fwd+bwd the backward kernel
and, where a coefficient needs a gradient, the kernel that finishes its reduction.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import torch

from bench import cases

NUMEL = 2**26  # 64M elements: 256 MB per float32 tensor, far past the L2
DTYPE = torch.float32
OPS = ("add", "multiply", "gate")  # ste moves no bytes of its own
PASSES = ("fwd", "fwd+bwd")


def kernel_names() -> list[str]:
    """The package's Triton kernels (a launch's name in ncu is the function's name), read from
    the kernels themselves so that a rename cannot leave ncu filtering for a name gone."""
    from kernels import _coef_grad
    from kernels.lerp import triton as lerp_triton
    from kernels.multiply import triton as multiply_triton

    found = {
        value.fn.__name__
        for module in (lerp_triton, multiply_triton, _coef_grad)
        for value in vars(module).values()
        if type(value).__name__ == "JITFunction" and value.fn.__name__.endswith("_kernel")
    }
    return sorted(found)


def kernel_regex() -> str:
    """ncu's --kernel-name regex: the package's kernels (no Inductor or PyTorch kernel has these
    names; unanchored, as ncu may show a name with a prefix or its parameters)."""
    return "|".join(kernel_names())


def labels() -> list[str]:
    return [f"{op} {pass_}" for op in OPS for pass_ in PASSES]


def file_name(label: str) -> str:
    return label.replace(" ", "_").replace("+", "") + ".csv"


def run(label: str) -> None:
    op, pass_ = label.split()
    inputs = cases.make_inputs(NUMEL, DTYPE, torch.device("cuda"), pass_ == "fwd+bwd")
    call = cases.runner(cases.OURS[op], pass_, inputs)
    for _ in range(2):
        call()
        torch.cuda.synchronize()


def read_csv(path) -> list[dict]:
    """ncu's --csv output: one row per (launch, metric); returns one dict per launch."""
    kernels: dict[str, dict] = defaultdict(dict)
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # drop the "==PROF==" lines
    for rec in csv.DictReader(lines):
        kernel = kernels[rec["ID"]]
        kernel["name"] = rec["Kernel Name"]
        kernel[rec["Metric Name"]] = float(rec["Metric Value"].replace(",", ""))
    return list(kernels.values())


def parse(folder: str) -> str:
    out = [
        f"Nsight Compute (--clock-control none), {NUMEL:,} float32 elements per tensor; "
        "the second of two calls per case.",
        "",
        "| case | kernels | time us | DRAM read MB | DRAM write MB | floor MB | DRAM / floor "
        "| GB/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels():
        path = Path(folder) / file_name(label)
        launches = read_csv(path) if path.exists() else []
        if not launches or len(launches) % 2:
            out.append(
                f"| {label} | {len(launches)} launches in {path.name}: not two equal "
                "calls, read the CSV | | | | | | |"
            )
            continue
        group = launches[len(launches) // 2 :]
        op, pass_ = label.split()
        floor = cases.min_bytes(op, NUMEL, DTYPE, pass_)
        t = sum(k["gpu__time_duration.sum"] for k in group)  # ns
        rd = sum(k["dram__bytes_read.sum"] for k in group)
        wr = sum(k["dram__bytes_write.sum"] for k in group)
        names = " + ".join(k["name"].split("(")[0] for k in group)
        out.append(
            f"| {label} | {names} | {t / 1e3:.1f} | {rd / 1e6:.1f} | {wr / 1e6:.1f} | "
            f"{floor / 1e6:.1f} | {(rd + wr) / floor:.3f} | {(rd + wr) / t:.0f} |"
        )
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ncu_cases", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--run", metavar="CASE", choices=labels(), help="call one case twice (under ncu)"
    )
    parser.add_argument("--parse", metavar="FOLDER", help="tabulate the per-case CSVs in FOLDER")
    parser.add_argument("--list", action="store_true", help="print the cases, one per line")
    parser.add_argument(
        "--kernel-regex", action="store_true", help="print ncu's --kernel-name regex"
    )
    args = parser.parse_args(argv)
    if args.kernel_regex:
        print(kernel_regex())
    if args.list:
        print("\n".join(labels()))
    if args.run:
        run(args.run)
    if args.parse:
        print(parse(args.parse), end="")


if __name__ == "__main__":
    main()
