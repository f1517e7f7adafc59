"""The main job: grow a seed in a small CNN trained on scikit-learn's digits, compiled with
esper_slot.compile (torch.compile, fullgraph=True, sized for slot lifecycles).

    python -m esper_slot.demo [--quick] [--freeze-seed] [--out DIR]   (or: esper-slot-demo)

Stages: host-only warm-up (DORMANT) -> germinate a seed (TRAINING, the incubator: the host's
outputs stay bit-identical while the seed learns) -> BLENDING (alpha ramps 0 -> 1) ->
FOSSILIZED. After each stage: held-out accuracy (beside a host-only control trained on the same batches
from germination on, so the seed's effect shows), loss, the seed's counterfactual contribution,
its seed-to-host gradient ratio (esper_slot.GradientTelemetry), alpha, seconds, graphs compiled
and the grad-flow status. Then a strict checkpoint is saved, reloaded into a fresh model and checked for
identical outputs. DIR gets checkpoint.pt, training.png and summary.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot as es

SEED_FACTORY = "demo_conv_seed"
es.register_seed(SEED_FACTORY, lambda channels: nn.Sequential(
    nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.GELU()))


class DigitsNet(nn.Module):
    """8x8 digits -> 10 classes, with one SeedSlot after the first block."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1),
                                    nn.BatchNorm2d(channels), nn.ReLU())
        self.slot = es.SeedSlot(channels, "cnn")
        self.block2 = nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2),
                                    nn.BatchNorm2d(2 * channels), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                    nn.Linear(2 * channels, 10))

    def forward(self, x):
        return self.block2(self.slot(self.block1(x)))


def load_digits(device):
    from sklearn.datasets import load_digits as sk_digits  # ships with scikit-learn: no download

    data = sk_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    return x[train].to(device), y[train].to(device), x[test].to(device), y[test].to(device)


@contextlib.contextmanager
def eval_mode(model):
    """Eval mode and no grad for the block, train mode after. The eager model is used, so
    evaluation never adds compiled graphs."""
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()


def evaluate_outputs(model, x):
    with eval_mode(model):
        return model(x)


def evaluate(model, x, y):
    logits = evaluate_outputs(model, x)
    return nn.functional.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def host_outputs_unchanged(model, x) -> bool:
    """The model's output equals the same host run without its slot, bit for bit."""
    with eval_mode(model):
        return torch.equal(model(x), model.block2(model.block1(x)))


def parse(argv):
    parser = argparse.ArgumentParser(prog="esper-slot-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under a minute on "
                        "2 CPU cores)")
    parser.add_argument("--freeze-seed", action="store_true",
                        help="freeze the seed on purpose to show the one-time grad-flow warning")
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="folder for checkpoint.pt, training.png, summary.txt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    torch.manual_seed(0)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = load_digits(device)
    model = DigitsNet().to(device)
    compiled = es.compile(model, fullgraph=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = ({"DORMANT": 60, "TRAINING": 40, "BLENDING": 40, "FOSSILIZED": 20} if args.quick
             else {"DORMANT": 300, "TRAINING": 200, "BLENDING": 200, "FOSSILIZED": 100})
    batch = 64
    history = {"step": [], "loss": [], "alpha": [], "eval_step": [], "accuracy": [],
               "control": []}
    summary, boundaries = [], []
    generator = torch.Generator(device="cpu").manual_seed(1)
    counters.clear()
    print(f"esper-slot demo: digits ({len(x_train)} train / {len(x_test)} test), device {device}, "
          f"kernels backend {__import__('kernels').active_backend(device)}, esper_slot.compile "
          f"fullgraph=True{', seed frozen on purpose' if args.freeze_seed else ''}")

    control = {}  # a host-only copy trained on the same batches from germination on (eager)
    telemetry = es.GradientTelemetry(model)  # per-slot gradient statistics, read per stage

    def run_stage(stage: str, before_step=None):
        graphs_before = counters["stats"]["unique_graphs"]
        start = time.perf_counter()
        bar = tqdm(range(steps[stage]), desc=f"{stage:10s}", unit="step", leave=False,
                   file=sys.stdout, disable=not sys.stdout.isatty())
        for _ in bar:
            if before_step:
                before_step()
            idx = torch.randint(0, len(x_train), (batch,), generator=generator).to(device)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(compiled(x_train[idx]), y_train[idx])
            loss.backward()
            telemetry.collect()
            opt.step()
            if control:
                control["opt"].zero_grad(set_to_none=True)
                nn.functional.cross_entropy(control["model"](x_train[idx]),
                                            y_train[idx]).backward()
                control["opt"].step()
            n = len(history["step"])
            history["step"].append(n)
            history["loss"].append(loss.item())
            history["alpha"].append(model.slot.alpha.item())
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        seconds = time.perf_counter() - start
        test_loss, acc = evaluate(model, x_test, y_test)
        history["eval_step"].append(len(history["step"]) - 1)
        history["accuracy"].append(acc)
        flow = es.check_grad_flow(model)["slot"]
        grads = telemetry.read()["slot"]  # this stage's steps; the sums start afresh
        control_acc = evaluate(control["model"], x_test, y_test)[1] if control else acc
        history["control"].append(control_acc)
        # The seed's counterfactual contribution: accuracy minus accuracy with alpha forced to 0
        # (esper_slot.ablated; 0 in TRAINING by construction, the incubator changes nothing).
        contribution = None
        if model.slot.has_seed:
            with es.ablated(model):
                contribution = acc - evaluate(model, x_test, y_test)[1]
        summary.append({"stage": stage, "steps": steps[stage], "test_loss": test_loss,
                        "accuracy": acc, "control": control_acc, "contribution": contribution,
                        "alpha": model.slot.alpha.item(), "seconds": seconds,
                        "ratio": grads.ratio if grads.seed_param_count else None,
                        "graphs": counters["stats"]["unique_graphs"] - graphs_before,
                        "grad_flow": ("n/a (no seed)" if not flow.expected else
                                      "ok" if flow.ok else f"BLOCKED ({flow.blocked_steps} steps)")})
        boundaries.append(len(history["step"]))
        row = summary[-1]
        contrib = "" if contribution is None else f", seed contribution {contribution:+.3f}"
        if row["ratio"] is not None:
            contrib += f", seed/host gradient ratio {row['ratio']:.3f}"
        print(f"{stage:10s} done: test accuracy {acc:.3f} (host-only control "
              f"{control_acc:.3f}{contrib}), loss {test_loss:.3f}, alpha "
              f"{row['alpha']:.2f}, {seconds:.1f}s, {row['graphs']} graph(s) compiled, "
              f"grad flow {row['grad_flow']}")

    run_stage("DORMANT")

    probe = x_test[:256]
    before = evaluate_outputs(model, probe)
    control["model"] = copy.deepcopy(model)
    control["opt"] = torch.optim.Adam(control["model"].parameters(), lr=3e-3)
    control["opt"].load_state_dict(opt.state_dict())
    model.slot.germinate(SEED_FACTORY, seed_kwargs={"channels": model.slot.channels})
    if args.freeze_seed:
        model.slot.seed.requires_grad_(False)
    opt.add_param_group({"params": list(model.slot.seed.parameters())})
    seed_start = [p.detach().clone() for p in model.slot.seed.parameters()]
    same_at_germination = torch.equal(before, evaluate_outputs(model, probe))
    print(f"germinated a seed: TRAINING (incubator), isolate_gradients="
          f"{model.slot.isolate_gradients}; outputs identical to the host before germination: "
          f"{same_at_germination}")
    run_stage("TRAINING")
    moved = sum((p.detach() - q).norm().item()
                for p, q in zip(model.slot.seed.parameters(), seed_start))
    unchanged = host_outputs_unchanged(model, probe)
    learned = "the seed learned" if moved > 0 else "the seed did NOT learn (frozen?)"
    print(f"TRAINING: host outputs unchanged by the seed: {unchanged}; {learned} "
          f"(parameter change {moved:.3f})")

    model.slot.start_blending(steps["BLENDING"])
    run_stage("BLENDING", before_step=model.slot.step)
    model.slot.fossilize()
    run_stage("FOSSILIZED")

    ckpt = es.save_checkpoint(model, args.out / "checkpoint.pt")
    fresh = DigitsNet().to(device)  # an empty slot: the seed is rebuilt from its factory
    es.load_checkpoint(fresh, ckpt)
    identical = torch.equal(evaluate_outputs(model, x_test), evaluate_outputs(fresh, x_test))
    print(f"checkpoint {ckpt}: strict reload into a fresh model -> stage "
          f"{fresh.slot.stage.name}, outputs identical on {len(x_test)} test samples: "
          f"{identical}")

    table = format_summary(summary)
    print(table)
    gain = summary[-1]["accuracy"] - summary[-1]["control"]
    print(f"the seed {'helped' if gain > 0 else 'did not help'}: final test accuracy "
          f"{summary[-1]['accuracy']:.3f} vs {summary[-1]['control']:.3f} for the same host "
          f"trained as long without it ({gain:+.3f})")
    (args.out / "summary.txt").write_text(table)
    plot(history, boundaries, list(steps), args.out / "training.png")
    print(f"wrote {args.out / 'training.png'} and {args.out / 'summary.txt'}")
    ok = same_at_germination and unchanged and identical
    if not ok:
        print("FAILED: a check above did not hold", file=sys.stderr)
    return 0 if ok else 1


def format_summary(rows) -> str:
    header = (f"{'stage':10s} {'steps':>5s} {'test loss':>9s} {'accuracy':>8s} "
              f"{'control':>7s} {'seed contrib':>12s} {'grad ratio':>10s} {'alpha':>5s} "
              f"{'seconds':>7s} {'graphs':>6s}  grad flow")
    lines = [header, "-" * len(header)]
    for r in rows:
        contrib = "-" if r["contribution"] is None else f"{r['contribution']:+.3f}"
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        lines.append(f"{r['stage']:10s} {r['steps']:5d} {r['test_loss']:9.3f} "
                     f"{r['accuracy']:8.3f} {r['control']:7.3f} {contrib:>12s} {ratio:>10s} "
                     f"{r['alpha']:5.2f} {r['seconds']:7.1f} "
                     f"{r['graphs']:6d}  {r['grad_flow']}")
    return "\n".join(lines) + "\n"


def plot(history, boundaries, stages, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_alpha) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax_loss.plot(history["step"], history["loss"], lw=0.8, label="train loss")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(history["eval_step"], history["accuracy"], "o-", color="tab:green",
                label="test accuracy")
    ax_acc.plot(history["eval_step"], history["control"], "x--", color="grey",
                label="host-only control")
    ax_acc.set_ylabel("test accuracy")
    ax_loss.set_ylabel("train loss")
    ax_alpha.plot(history["step"], history["alpha"], color="tab:orange")
    ax_alpha.set_ylabel("alpha")
    ax_alpha.set_xlabel("step")
    start = 0
    for end, stage in zip(boundaries, stages):
        for ax in (ax_loss, ax_alpha):
            ax.axvline(end, color="grey", lw=0.5)
        ax_alpha.text((start + end) / 2, 1.05, stage, ha="center", fontsize=8)
        start = end
    ax_loss.legend(loc="upper left")
    ax_acc.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
