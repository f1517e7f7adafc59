"""The main job: grow a seed in a small CNN trained on scikit-learn's digits, compiled with
esper_slot.compile (torch.compile, fullgraph=True, sized for slot lifecycles).

    python -m esper_slot.demo [--quick] [--repeats N] [--freeze-seed] [--out DIR]
    (or: esper-slot-demo)

Stages: host-only warm-up (DORMANT) -> germinate a seed (TRAINING, the incubator: the host's
outputs stay bit-identical while the seed learns) -> BLENDING (alpha ramps 0 -> 1) ->
FOSSILIZED. After each stage: held-out accuracy (beside a host-only control trained on the same
batches from germination on, so the seed's effect shows), loss, the seed's counterfactual
contribution, its seed-to-host gradient ratio (esper_slot.GradientTelemetry), alpha, seconds,
graphs compiled and the grad-flow status. Then a strict checkpoint is saved, reloaded into a
fresh model and checked for identical outputs. DIR gets checkpoint.pt, training.png and summary.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch._dynamo.utils import counters

import esper_slot as es
from esper_slot.demo_report import compare, format_comparison, format_summary, plot

SEED_FACTORY = "demo_conv_seed"
es.register_seed(
    SEED_FACTORY,
    lambda channels: nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.GELU()
    ),
)


class DigitsNet(nn.Module):
    """8x8 digits -> 10 classes, with one SeedSlot after the first block."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.slot = es.SeedSlot(channels, "cnn")
        self.block2 = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2),
            nn.BatchNorm2d(2 * channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * channels, 10),
        )

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
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return nn.functional.cross_entropy(logits, y).item(), accuracy


def host_outputs_unchanged(model, x) -> bool:
    """The model's output equals the same host run without its slot, bit for bit."""
    with eval_mode(model):
        return torch.equal(model(x), model.block2(model.block1(x)))


def host_control(model: nn.Module, opt: torch.optim.Optimizer, **compile_kwargs):
    """The host-only control arm, forked from ``model`` and ``opt`` before germination:
    (control model, its esper_slot.compile wrapper, its optimizer).

    It is independent of the seed arm: a deep copy of the model, and an optimizer of the same
    class and hyperparameters whose state is a deep copy of ``opt``'s. (``load_state_dict`` of
    another live optimizer's ``state_dict()`` would keep that optimizer's state tensors
    themselves, wherever dtype and device already match, so every step of either arm would
    update the other's Adam moments.) It is compiled the same way as the seed arm, so that
    while the incubator runs (TRAINING) both hosts see bitwise-equal gradients through
    equally compiled graphs and must train bit-identically.
    """
    control = copy.deepcopy(model)
    control_opt = type(opt)(control.parameters(), **opt.defaults)
    control_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    return control, es.compile(control, **compile_kwargs), control_opt


def _optimizer_tensors(opt: torch.optim.Optimizer):
    for state in opt.state.values():
        yield from (v for v in state.values() if torch.is_tensor(v))


def shared_optimizer_storage(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> int:
    """How many of ``a``'s state tensors share storage with one of ``b``'s (0 when the two
    optimizers are independent)."""
    storages = {t.untyped_storage().data_ptr() for t in _optimizer_tensors(b) if t.numel()}
    return sum(
        t.untyped_storage().data_ptr() in storages for t in _optimizer_tensors(a) if t.numel()
    )


def host_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The host's parameters and buffers (everything outside the SeedSlots), by name."""
    slots = tuple(name + "." for name, m in model.named_modules() if isinstance(m, es.SeedSlot))
    return {
        name: t
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if not name.startswith(slots)
    }


def host_trained_identically(model: nn.Module, control: nn.Module) -> bool:
    """Every host parameter and buffer (BatchNorm statistics included) of ``model`` equals the
    control's, bit for bit."""
    mine, theirs = host_state(model), host_state(control)
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def parse(argv):
    parser = argparse.ArgumentParser(prog="esper-slot-demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer steps and repeats (under a minute on 2 CPU cores)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of the seed-vs-control comparison, each with its own "
        "initialisation and batch order (default 5; 3 with --quick)",
    )
    parser.add_argument(
        "--freeze-seed",
        action="store_true",
        help="freeze the seed on purpose to show the one-time grad-flow warning",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for checkpoint.pt, training.png, summary.txt",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


STEPS_QUICK = {"DORMANT": 60, "TRAINING": 40, "BLENDING": 40, "FOSSILIZED": 20}
STEPS_FULL = {"DORMANT": 300, "TRAINING": 200, "BLENDING": 200, "FOSSILIZED": 100}
BATCH = 64


@dataclass
class Run:
    """One lifecycle run: the per-stage summary, the training curves, and the checks."""

    summary: list[dict] = field(default_factory=list)
    history: dict[str, list] = field(
        default_factory=lambda: {
            "step": [],
            "loss": [],
            "alpha": [],
            "eval_step": [],
            "accuracy": [],
            "control": [],
        }
    )
    boundaries: list[int] = field(default_factory=list)
    model: DigitsNet | None = None
    control: nn.Module | None = None
    optimizers: tuple[torch.optim.Optimizer, ...] = ()  # (seed arm's, control's)
    host_identical_in_training: bool = False
    checks_ok: bool = True

    @property
    def final(self) -> tuple[float, float]:
        """(seed arm, control arm) final test accuracy."""
        return self.summary[-1]["accuracy"], self.summary[-1]["control"]


def run_lifecycle(
    data, steps, device, repeat: int, freeze_seed: bool = False, verbose: bool = True
) -> Run:
    """Warm up a host, germinate a seed, blend it in and fossilize it, beside a host-only control
    trained on the same batches from germination on. ``repeat`` seeds the initialisation and
    the batch order."""
    from tqdm import tqdm

    x_train, y_train, x_test, y_test = data
    say = print if verbose else (lambda *a, **k: None)
    torch.manual_seed(repeat)
    model = DigitsNet().to(device)
    compiled = es.compile(model, fullgraph=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    telemetry = es.GradientTelemetry(model)  # per-slot gradient statistics, read per stage
    generator = torch.Generator(device="cpu").manual_seed(1 + repeat)
    run = Run(model=model)
    history = run.history
    control_model: nn.Module | None = None  # the host-only arm, from germination on
    control_step: nn.Module | None = None  # its esper_slot.compile wrapper
    control_opt: torch.optim.Optimizer | None = None
    control_graphs = 0  # graphs the control arm compiled (the table counts the seed arm's)

    def run_stage(stage: str, before_step=None):
        nonlocal control_graphs
        control_graphs_before = control_graphs
        graphs_before = counters["stats"]["unique_graphs"]
        start = time.perf_counter()
        bar = tqdm(
            range(steps[stage]),
            desc=f"{stage:10s}",
            unit="step",
            leave=False,
            file=sys.stdout,
            disable=not (verbose and sys.stdout.isatty()),
        )
        for _ in bar:
            if before_step:
                before_step()
            idx = torch.randint(0, len(x_train), (BATCH,), generator=generator).to(device)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(compiled(x_train[idx]), y_train[idx])
            loss.backward()
            telemetry.collect()
            opt.step()
            if control_step is not None and control_opt is not None:
                before_control = counters["stats"]["unique_graphs"]
                control_opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(control_step(x_train[idx]), y_train[idx]).backward()
                control_opt.step()
                control_graphs += counters["stats"]["unique_graphs"] - before_control
            history["step"].append(len(history["step"]))
            history["loss"].append(loss.item())
            history["alpha"].append(model.slot.alpha.item())
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        seconds = time.perf_counter() - start
        test_loss, acc = evaluate(model, x_test, y_test)
        history["eval_step"].append(len(history["step"]) - 1)
        history["accuracy"].append(acc)
        flow = es.check_grad_flow(model)["slot"]
        grads = telemetry.read()["slot"]  # this stage's steps; the sums start afresh
        control_acc = (
            evaluate(control_model, x_test, y_test)[1] if control_model is not None else acc
        )
        history["control"].append(control_acc)
        # The seed's counterfactual contribution: accuracy minus accuracy with alpha forced to 0
        # (esper_slot.ablated; 0 in TRAINING by construction, the incubator changes nothing).
        contribution = None
        if model.slot.has_seed:
            with es.ablated(model):
                contribution = acc - evaluate(model, x_test, y_test)[1]
        run.summary.append(
            {
                "stage": stage,
                "steps": steps[stage],
                "test_loss": test_loss,
                "accuracy": acc,
                "control": control_acc,
                "contribution": contribution,
                "alpha": model.slot.alpha.item(),
                "seconds": seconds,
                "ratio": grads.ratio if grads.seed_param_count else None,
                "graphs": (
                    counters["stats"]["unique_graphs"]
                    - graphs_before
                    - (control_graphs - control_graphs_before)
                ),
                "grad_flow": (
                    "n/a (no seed)"
                    if not flow.expected
                    else "ok"
                    if flow.ok
                    else f"BLOCKED ({flow.blocked_steps} steps)"
                ),
            }
        )
        run.boundaries.append(len(history["step"]))
        row = run.summary[-1]
        extra = "" if contribution is None else f", seed contribution {contribution:+.3f}"
        if row["ratio"] is not None:
            extra += f", seed/host gradient ratio {row['ratio']:.3f}"
        say(
            f"{stage:10s} done: test accuracy {acc:.3f} (host-only control "
            f"{control_acc:.3f}{extra}), loss {test_loss:.3f}, alpha {row['alpha']:.2f}, "
            f"{seconds:.1f}s, {row['graphs']} graph(s) compiled, grad flow {row['grad_flow']}"
        )

    run_stage("DORMANT")
    probe = x_test[:256]
    before = evaluate_outputs(model, probe)
    control_model, control_step, control_opt = host_control(model, opt, fullgraph=True)
    run.control, run.optimizers = control_model, (opt, control_opt)
    model.slot.germinate(SEED_FACTORY, seed_kwargs={"channels": model.slot.channels})
    seed = model.slot.seed
    assert seed is not None
    if freeze_seed:
        seed.requires_grad_(False)
    opt.add_param_group({"params": list(seed.parameters())})
    seed_start = [p.detach().clone() for p in seed.parameters()]
    same_at_germination = torch.equal(before, evaluate_outputs(model, probe))
    say(
        f"germinated a seed: TRAINING (incubator), isolate_gradients="
        f"{model.slot.isolate_gradients}; outputs identical to the host before germination: "
        f"{same_at_germination}"
    )
    run_stage("TRAINING")
    moved = sum((p.detach() - q).norm().item() for p, q in zip(seed.parameters(), seed_start))
    unchanged = host_outputs_unchanged(model, probe)
    learned = "the seed learned" if moved > 0 else "the seed did NOT learn (frozen?)"
    say(
        f"TRAINING: host outputs unchanged by the seed: {unchanged}; {learned} "
        f"(parameter change {moved:.3f})"
    )
    # The incubator's promise on the real run: the seed arm's host got the control's gradients
    # every step, so its parameters, Adam moments and BatchNorm statistics followed bit for bit.
    run.host_identical_in_training = host_trained_identically(model, control_model)
    say(
        "TRAINING: the host trained bit-identically to the host-only control: "
        f"{run.host_identical_in_training}"
    )
    model.slot.start_blending(steps["BLENDING"])
    run_stage("BLENDING", before_step=model.slot.step)
    model.slot.fossilize()
    run_stage("FOSSILIZED")
    run.checks_ok = same_at_germination and unchanged and run.host_identical_in_training
    return run


def main(argv=None) -> int:
    args = parse(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_digits(device)
    x_train, _, x_test, _ = data
    steps = STEPS_QUICK if args.quick else STEPS_FULL
    counters.clear()
    print(
        f"esper-slot demo: digits ({len(x_train)} train / {len(x_test)} test), device {device}, "
        f"kernels backend {__import__('kernels').active_backend(device)}, esper_slot.compile "
        f"fullgraph=True, {args.repeats} repeat(s)"
        f"{', seed frozen on purpose' if args.freeze_seed else ''}"
    )
    run = run_lifecycle(data, steps, device, repeat=0, freeze_seed=args.freeze_seed)
    model = run.model
    assert model is not None

    ckpt = es.save_checkpoint(model, args.out / "checkpoint.pt")
    fresh = DigitsNet().to(device)  # an empty slot: the seed is rebuilt from its factory
    es.load_checkpoint(fresh, ckpt)
    identical = torch.equal(evaluate_outputs(model, x_test), evaluate_outputs(fresh, x_test))
    print(
        f"checkpoint {ckpt}: strict reload into a fresh model -> stage "
        f"{fresh.slot.stage.name}, outputs identical on {len(x_test)} test samples: "
        f"{identical}"
    )
    table = format_summary(run.summary)
    print(table)

    finals = [run.final]
    repeats_ok = True
    identical_runs = [run.host_identical_in_training]
    for repeat in range(1, args.repeats):
        start = time.perf_counter()
        other = run_lifecycle(
            data, steps, device, repeat=repeat, freeze_seed=args.freeze_seed, verbose=False
        )
        finals.append(other.final)
        repeats_ok = repeats_ok and other.checks_ok
        identical_runs.append(other.host_identical_in_training)
        print(
            f"repeat {repeat + 1}/{args.repeats}: with the seed {other.final[0]:.3f}, "
            f"host-only {other.final[1]:.3f}, host bit-identical to the control in TRAINING: "
            f"{other.host_identical_in_training} ({time.perf_counter() - start:.1f}s)"
        )
    comparison = compare(finals)
    text = format_comparison(comparison)
    print(text, end="")
    identity = (
        "TRAINING: the host trained bit-identically to the host-only control: "
        f"{run.host_identical_in_training} (first repeat; in all {len(identical_runs)} "
        f"repeats: {all(identical_runs)})\n"
    )
    (args.out / "summary.txt").write_text(table + identity + "\n" + text)
    plot(run.history, run.boundaries, list(steps), comparison, args.out / "training.png")
    print(f"wrote {args.out / 'training.png'} and {args.out / 'summary.txt'}")
    ok = run.checks_ok and identical and repeats_ok
    if not ok:
        print("FAILED: a check above did not hold", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
