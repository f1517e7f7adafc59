"""The main job runs end to end: every stage, the reload check, the files; and --freeze-seed
shows exactly one grad-flow warning."""

from __future__ import annotations

import logging

import pytest

from esper_slot import demo


def test_demo_quick_end_to_end(tmp_path, capsys):
    assert demo.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in ("DORMANT", "TRAINING", "BLENDING", "FOSSILIZED"):
        assert f"{stage:10s} done: test accuracy" in out
    assert "outputs identical to the host before germination: True" in out
    assert "host outputs unchanged by the seed: True" in out
    assert "outputs identical on 360 test samples: True" in out
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.pt", "training.png",
                                                     "summary.txt"}


@pytest.mark.slow
@pytest.mark.backend_independent  # the warning logic; the other demo test runs the kernels
def test_demo_freeze_seed_warns_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="esper_slot")
    assert demo.main(["--quick", "--freeze-seed", "--out", str(tmp_path)]) == 0
    warnings = [r for r in caplog.records if r.name == "esper_slot"]
    assert len(warnings) == 1 and "frozen" in warnings[0].getMessage()
