"""The main job runs end to end: every stage, the reload check, the files; and --freeze-seed
shows exactly one grad-flow warning."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from esper_slot import demo
from tests.conftest import INTERPRET


def test_demo_quick_end_to_end(tmp_path, capsys, monkeypatch):
    # Under the Triton interpreter (the real kernels, run in Python) two repeats, not --quick's
    # three, prove the same path at lower cost.
    repeats = 2 if INTERPRET else 3
    runs = []

    def recorded(*args, **kwargs):
        runs.append(demo_run_lifecycle(*args, **kwargs))
        return runs[-1]

    demo_run_lifecycle = demo.run_lifecycle
    monkeypatch.setattr(demo, "run_lifecycle", recorded)
    assert demo.main(["--quick", "--repeats", str(repeats), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # The incubator's promise on the real run: the host trained exactly as the control did.
    assert "TRAINING: the host trained bit-identically to the host-only control: True" in out
    training_row = next(
        line.split()
        for line in (tmp_path / "summary.txt").read_text().splitlines()
        if line.startswith("TRAINING ")
    )
    assert training_row[3] == training_row[4]  # accuracy == control accuracy
    assert len(runs) == repeats
    for run in runs:
        assert run.host_identical_in_training
        train = next(row for row in run.summary if row["stage"] == "TRAINING")
        assert train["accuracy"] == train["control"]
        # after a whole run, the arms' optimizers still share no state storage
        seed_opt, control_opt = run.optimizers
        assert len(control_opt.state) > 0
        assert demo.shared_optimizer_storage(seed_opt, control_opt) == 0
    for stage in ("DORMANT", "TRAINING", "BLENDING", "FOSSILIZED"):
        assert f"{stage:10s} done: test accuracy" in out
    assert "outputs identical to the host before germination: True" in out
    assert "host outputs unchanged by the seed: True" in out
    assert "outputs identical on 360 test samples: True" in out
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "training.png", "summary.txt"}
    # The seed-vs-control claim rests on repeats (3 with --quick) and says what they support.
    assert f"repeat {repeats}/{repeats}: with the seed" in out
    assert f"over {repeats} repeat(s)" in out and "paired difference" in out
    assert "conclusion: " in out
    assert "paired difference" in (tmp_path / "summary.txt").read_text()


def test_the_verdict_follows_the_interval():
    helped = demo.compare([(0.95, 0.90), (0.96, 0.90), (0.94, 0.91)])
    assert helped["verdict"] == "helped" and helped["interval"][0] > 0
    assert helped["seed"][0] == pytest.approx(0.95) and helped["diff"][0] == pytest.approx(
        0.0467, abs=1e-3
    )
    hurt = demo.compare([(0.85, 0.90), (0.86, 0.90), (0.84, 0.91)])
    assert hurt["verdict"] == "hurt" and hurt["interval"][1] < 0
    noisy = demo.compare([(0.95, 0.90), (0.88, 0.91), (0.92, 0.92)])
    assert noisy["verdict"] == "no measurable difference"
    single = demo.compare([(0.95, 0.90)])  # one run has no spread: nothing can be claimed
    assert single["verdict"] == "no measurable difference"
    assert "no measurable difference" in demo.format_comparison(noisy)


def test_repeats_must_be_positive():
    with pytest.raises(SystemExit):
        demo.parse(["--repeats", "0"])


@pytest.mark.slow
@pytest.mark.backend_independent  # the warning logic; the other demo test runs the kernels
def test_demo_freeze_seed_warns_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="esper_slot")
    assert demo.main(["--quick", "--repeats", "2", "--freeze-seed", "--out", str(tmp_path)]) == 0
    warnings = [r for r in caplog.records if r.name == "esper_slot"]
    # one per frozen seed (each repeat grows its own), not one per step
    assert len(warnings) == 2 and all("frozen" in w.getMessage() for w in warnings)


def _adam_after_steps(steps: int = 2):
    torch.manual_seed(0)
    model = demo.DigitsNet(channels=4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, (x, y)


def test_control_optimizer_state_shares_no_storage():
    model, opt, (x, y) = _adam_after_steps()
    # The detector can fail: the old construction aliases every state tensor (exp_avg,
    # exp_avg_sq and step of every parameter).
    aliased = torch.optim.Adam(demo.DigitsNet(channels=4).parameters(), lr=3e-3)
    aliased.load_state_dict(opt.state_dict())
    state_tensors = sum(len(s) for s in opt.state.values())
    assert state_tensors > 0
    assert demo.shared_optimizer_storage(aliased, opt) == state_tensors

    control, _, control_opt = demo.host_control(model, opt)
    assert type(control_opt) is type(opt)
    assert control_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert demo.shared_optimizer_storage(control_opt, opt) == 0
    assert demo.shared_optimizer_storage(opt, control_opt) == 0
    assert not set(map(id, control.parameters())) & set(map(id, model.parameters()))
    # equal values to start with, and stepping the control leaves the seed arm's state alone
    for s, t in zip(opt.state.values(), control_opt.state.values()):
        assert all(torch.equal(s[k], t[k]) for k in s)
    before = {(i, k): v.clone() for i, s in enumerate(opt.state.values()) for k, v in s.items()}
    control_opt.zero_grad()
    nn.functional.cross_entropy(control(x), y).backward()
    control_opt.step()
    after = {(i, k): v for i, s in enumerate(opt.state.values()) for k, v in s.items()}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_host_trained_identically_sees_any_difference():
    model, opt, _ = _adam_after_steps(1)
    control, _, _ = demo.host_control(model, opt)
    assert demo.host_trained_identically(model, control)
    model.slot.germinate(demo.SEED_FACTORY, seed_kwargs={"channels": 4})  # slot state: ignored
    assert demo.host_trained_identically(model, control)
    with torch.no_grad():  # one BatchNorm statistic, one ulp
        stat = control.block2[1].running_var
        stat[0] = torch.nextafter(stat[0], torch.tensor(float("inf")))
    assert not demo.host_trained_identically(model, control)
