"""The main job runs end to end: every stage, the reload check, the files; and --freeze-seed
shows exactly one grad-flow warning."""

from __future__ import annotations

import logging

import pytest

from esper_slot import demo
from tests.conftest import INTERPRET


def test_demo_quick_end_to_end(tmp_path, capsys):
    # Under the Triton interpreter (the real kernels, run in Python) two repeats, not --quick's
    # three, prove the same path at lower cost.
    repeats = 2 if INTERPRET else 3
    assert demo.main(["--quick", "--repeats", str(repeats), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in ("DORMANT", "TRAINING", "BLENDING", "FOSSILIZED"):
        assert f"{stage:10s} done: test accuracy" in out
    assert "outputs identical to the host before germination: True" in out
    assert "host outputs unchanged by the seed: True" in out
    assert "outputs identical on 360 test samples: True" in out
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "training.png",
                                                     "summary.txt"}
    # The seed-vs-control claim rests on repeats (3 with --quick) and says what they support.
    assert f"repeat {repeats}/{repeats}: with the seed" in out
    assert f"over {repeats} repeat(s)" in out and "paired difference" in out
    assert "conclusion: " in out
    assert "paired difference" in (tmp_path / "summary.txt").read_text()


def test_the_verdict_follows_the_interval():
    helped = demo.compare([(0.95, 0.90), (0.96, 0.90), (0.94, 0.91)])
    assert helped["verdict"] == "helped" and helped["interval"][0] > 0
    assert helped["seed"][0] == pytest.approx(0.95) and helped["diff"][0] == pytest.approx(0.0467,
                                                                                          abs=1e-3)
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
