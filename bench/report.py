"""Writing results: the JSON file, a Markdown table, and a plot."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(result: dict) -> str:
    copy = result["copy_gbps"]
    lines = [
        f"Device: {result['device']}; torch {result['torch']}, triton {result['triton']}; "
        f"copy bandwidth {copy:.1f} GB/s (read + write).",
        "",
        "| op | dtype | numel | pass | ours ms | eager ms | compiled ms | ours GB/s | % of copy "
        "| speed-up vs eager | vs compiled |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        pct = None if r["ours_gbps"] is None else 100 * r["ours_gbps"] / copy
        lines.append(
            f"| {r['op']} | {r['dtype']} | {r['numel']:,} | {r['pass']} | {r['ours_ms']:.4f} | "
            f"{r['eager_ms']:.4f} | {r['compiled_ms']:.4f} | {_fmt(r['ours_gbps'], '.1f')} | "
            f"{_fmt(pct, '.0f')} | {r['eager_ms'] / r['ours_ms']:.2f}x | "
            f"{r['compiled_ms'] / r['ours_ms']:.2f}x |"
        )
    if result["e2e"]:
        lines += [
            "",
            "End-to-end training step (slots in BLENDING):",
            "",
            "| model | size | dtype | ours ms | eager formulas ms | ours compiled ms | "
            "compiled formulas ms | ours peak MB | formulas peak MB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for e in result["e2e"]:
            lines.append(
                f"| {e['model']} | {e.get('size', '-')} | {e['dtype']} | {e['ours_ms']:.3f} | "
                f"{e['eager_ms']:.3f} | "
                f"{_fmt(e['ours_compiled_ms'], '.3f')} | {_fmt(e['compiled_ms'], '.3f')} | "
                f"{_fmt(e['ours_peak_mb'], '.1f')} | {_fmt(e['eager_peak_mb'], '.1f')} |"
            )
    if result.get("saved"):
        lines += [
            "",
            "Bytes saved for backward per call (fresh allocations, not inputs):",
            "",
            "| op | dtype | numel | ours saved | ours fresh | eager saved | eager fresh |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for s in result["saved"]:
            lines.append(
                f"| {s['op']} | {s['dtype']} | {s['numel']:,} | {s['ours_bytes']:,} | "
                f"{s['ours_fresh_bytes']:,} | {s['eager_bytes']:,} | "
                f"{s['eager_fresh_bytes']:,} |"
            )
    return "\n".join(lines) + "\n"


def targets(result: dict) -> list[tuple[str, bool | None, str]]:
    """The first GPU run's targets, each as (target, met, the numbers behind the verdict); met is
    None where the run holds no row for it. Read from the rows as measured, nothing else."""
    import statistics

    rows, copy, out = result["rows"], result["copy_gbps"], []

    def pct(r):
        return 100 * r["ours_gbps"] / copy

    for op in sorted({r["op"] for r in rows} - {"ste"}):
        big = [r for r in rows if r["op"] == op and r["numel"] >= 2**24 and r["ours_gbps"]]
        if not big:
            out.append((f"{op}: >= 90% of copy (median), no row < 75%, >= 16M", None, "no rows"))
            continue
        med, low = statistics.median(pct(r) for r in big), min(big, key=pct)
        out.append(
            (
                f"{op}: >= 90% of copy (median), no row < 75%, >= 16M",
                med >= 90 and pct(low) >= 75,
                f"median {med:.0f}%, lowest {pct(low):.0f}% ({low['dtype']} "
                f"{low['numel']:,} {low['pass']}), {len(big)} rows",
            )
        )
    for op in sorted({r["op"] for r in rows}):
        fb = [r for r in rows if r["op"] == op and r["pass"] == "fwd+bwd" and r["numel"] >= 2**20]
        worst = min(fb, key=lambda r: r["eager_ms"] / r["ours_ms"]) if fb else None
        out.append(
            (
                f"{op}: fwd+bwd >= 1.5x eager formulas, >= 1M",
                None if worst is None else worst["eager_ms"] / worst["ours_ms"] >= 1.5,
                "no rows"
                if worst is None
                else f"lowest {worst['eager_ms'] / worst['ours_ms']:.2f}x ({worst['dtype']} "
                f"{worst['numel']:,})",
            )
        )
    for op in sorted({r["op"] for r in rows}):
        mine = [r for r in rows if r["op"] == op]
        worst = min(mine, key=lambda r: r["compiled_ms"] / r["ours_ms"])
        ratio = worst["compiled_ms"] / worst["ours_ms"]
        out.append(
            (
                f"{op}: never > 5% slower than torch.compile of the formulas",
                ratio >= 1 / 1.05,
                f"lowest {ratio:.2f}x ({worst['dtype']} {worst['numel']:,} {worst['pass']})",
            )
        )
    for op in sorted({r["op"] for r in rows}):
        small = [r for r in rows if r["op"] == op and r["numel"] == 2**18]
        worst = min(small, key=lambda r: r["eager_ms"] / r["ours_ms"]) if small else None
        out.append(
            (
                f"{op}: eager at 256K not slower than the eager formulas",
                None if worst is None else worst["eager_ms"] >= worst["ours_ms"],
                "no rows"
                if worst is None
                else f"lowest {worst['eager_ms'] / worst['ours_ms']:.2f}x ({worst['dtype']} "
                f"{worst['pass']})",
            )
        )
    for e in result["e2e"]:
        if e.get("compiled_ms") is None:
            continue
        out.append(
            (
                f"e2e {e['model']} {e.get('size', '-')}: compiled step <= compiled formulas",
                e["ours_compiled_ms"] <= e["compiled_ms"],
                f"{e['ours_compiled_ms']:.3f} vs {e['compiled_ms']:.3f} ms "
                f"({e['compiled_ms'] / e['ours_compiled_ms']:.3f}x)",
            )
        )
    return out


def targets_markdown(result: dict) -> str:
    verdict = {True: "met", False: "NOT met", None: "not measured"}
    lines = [
        "",
        "Targets (of the first GPU run), from the rows above:",
        "",
        "| target | verdict | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {verdict[ok]} | {why} |" for t, ok, why in targets(result)]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in ("add", "multiply", "gate") if any(r["op"] == op for r in result["rows"])]
    fig, axes = plt.subplots(1, len(ops), figsize=(5 * len(ops), 4), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for dtype, marker in (("float32", "o"), ("bfloat16", "s")):
            rows = [
                r
                for r in result["rows"]
                if r["op"] == op and r["dtype"] == dtype and r["pass"] == "fwd+bwd"
            ]
            if not rows:
                continue
            n = [r["numel"] for r in rows]
            for key, style, label in (
                ("ours", "-", "ours"),
                ("compiled", ":", "compiled"),
                ("eager", "--", "eager"),
            ):
                gbps = [r["bytes"] / (r[f"{key}_ms"] * 1e-3) / 1e9 for r in rows]
                ax.plot(n, gbps, style, marker=marker, label=f"{label} {dtype}")
        ax.axhline(result["copy_gbps"], color="k", lw=1, label="copy bandwidth")
        ax.set_xscale("log")
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (minimum bytes / time)")
        ax.set_title(f"{op}, fwd+bwd")
        ax.legend(fontsize=7)
    fig.suptitle(f"{result['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    if result.get("device_type") == "cuda":  # the targets are a GPU's
        table += targets_markdown(result)
    out.with_suffix(".md").write_text(table)
    plot(result, out.with_suffix(".png"))
    return table
