"""The main job's report: the seed-vs-control comparison over repeats (mean, spread, a paired
95% t interval and the verdict it supports), the summary table, and the training plot."""

from __future__ import annotations

import statistics
from pathlib import Path


def compare(finals: list[tuple[float, float]]) -> dict:
    """Both arms' final accuracies over the repeats: mean and sample standard deviation, and the
    paired difference (seed - control) with its standard deviation and a 95% t interval.
    The verdict is what the interval supports: "helped" when it lies above 0, "hurt" when below,
    otherwise "no measurable difference" (always so with one repeat: there is no spread)."""
    from scipy import stats as scipy_stats  # a dependency of scikit-learn, declared for the demo

    seed_arm, control_arm = [f[0] for f in finals], [f[1] for f in finals]
    diffs = [s - c for s, c in finals]
    n = len(finals)

    def spread(values):
        return statistics.stdev(values) if n > 1 else float("nan")

    mean_diff, sd_diff = statistics.fmean(diffs), spread(diffs)
    if n > 1:
        half = scipy_stats.t.ppf(0.975, n - 1) * sd_diff / n**0.5
        low, high = mean_diff - half, mean_diff + half
    else:
        low, high = float("-inf"), float("inf")
    verdict = "helped" if low > 0 else "hurt" if high < 0 else "no measurable difference"
    return {
        "n": n,
        "seed": (statistics.fmean(seed_arm), spread(seed_arm)),
        "control": (statistics.fmean(control_arm), spread(control_arm)),
        "diff": (mean_diff, sd_diff),
        "interval": (low, high),
        "verdict": verdict,
        "seed_values": seed_arm,
        "control_values": control_arm,
    }


VERDICTS = {
    "helped": "the seed helped",
    "hurt": "the seed hurt",
    "no measurable difference": "no measurable difference between the arms",
}


def listed(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def format_comparison(c: dict) -> str:
    (ms, ss), (mc, sc), (md, sd) = c["seed"], c["control"], c["diff"]
    low, high = c["interval"]
    lines = [
        f"seed vs host-only control over {c['n']} repeat(s) (final test accuracy, "
        "mean ± standard deviation):",
        f"  with the seed   {ms:.3f} ± {ss:.3f}   ({listed(c['seed_values'])})",
        f"  host-only       {mc:.3f} ± {sc:.3f}   ({listed(c['control_values'])})",
        f"  paired difference {md:+.3f} ± {sd:.3f}, 95% interval [{low:+.3f}, {high:+.3f}]",
        f"conclusion: {VERDICTS[c['verdict']]}"
        + (
            " (the interval excludes 0)"
            if c["verdict"] != "no measurable difference"
            else " (the interval includes 0; more --repeats narrow it)"
        ),
    ]
    return "\n".join(lines) + "\n"


def format_summary(rows) -> str:
    header = (
        f"{'stage':10s} {'steps':>5s} {'test loss':>9s} {'accuracy':>8s} "
        f"{'control':>7s} {'seed contrib':>12s} {'grad ratio':>10s} {'alpha':>5s} "
        f"{'seconds':>7s} {'graphs':>6s}  grad flow"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        contrib = "-" if r["contribution"] is None else f"{r['contribution']:+.3f}"
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        lines.append(
            f"{r['stage']:10s} {r['steps']:5d} {r['test_loss']:9.3f} "
            f"{r['accuracy']:8.3f} {r['control']:7.3f} {contrib:>12s} {ratio:>10s} "
            f"{r['alpha']:5.2f} {r['seconds']:7.1f} "
            f"{r['graphs']:6d}  {r['grad_flow']}"
        )
    return "\n".join(lines) + "\n"


def plot(history, boundaries, stages, comparison, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 6), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(3, 1))
    ax_loss = fig.add_subplot(grid[0, 0])
    ax_alpha = fig.add_subplot(grid[1, 0], sharex=ax_loss)
    ax_arms = fig.add_subplot(grid[:, 1])
    ax_loss.plot(history["step"], history["loss"], lw=0.8, label="train loss")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(
        history["eval_step"], history["accuracy"], "o-", color="tab:green", label="test accuracy"
    )
    ax_acc.plot(
        history["eval_step"], history["control"], "x--", color="grey", label="host-only control"
    )
    ax_acc.set_ylabel("test accuracy")
    ax_loss.set_ylabel("train loss")
    ax_alpha.plot(history["step"], history["alpha"], color="tab:orange")
    ax_alpha.set_ylabel("alpha")
    ax_loss.tick_params(labelbottom=False)
    ax_alpha.set_xlabel("step (first repeat)")
    start = 0
    for end, stage in zip(boundaries, stages):
        for ax in (ax_loss, ax_alpha):
            ax.axvline(end, color="grey", lw=0.5)
        ax_alpha.text(
            (start + end) / 2,
            0.97,
            stage,
            ha="center",
            va="top",
            fontsize=8,
            transform=ax_alpha.get_xaxis_transform(),
        )
        start = end
    # one legend above the plot, clear of the curves
    handles = ax_loss.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    ax_loss.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.02),
        ncol=3,
        frameon=False,
        fontsize=9,
    )
    # Both arms over the repeats: mean with a standard-deviation error bar, and every repeat.
    for x, key, color in ((0, "seed", "tab:green"), (1, "control", "grey")):
        mean, sd = comparison[key]
        ax_arms.errorbar(
            [x],
            [mean],
            yerr=[0.0 if sd != sd else sd],
            fmt="o",
            color=color,
            capsize=6,
            markersize=8,
        )
        ax_arms.scatter(
            [x] * comparison["n"], comparison[f"{key}_values"], color=color, alpha=0.4, s=18
        )
    ax_arms.set_xticks([0, 1], ["with the seed", "host-only"])
    ax_arms.set_xlim(-0.6, 1.6)
    ax_arms.set_ylabel("final test accuracy")
    ax_arms.set_title(f"{comparison['n']} repeat(s): {comparison['verdict']}", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
