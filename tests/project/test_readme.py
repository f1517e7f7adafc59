"""The README's slot example runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_slot_example_runs():
    text = (Path(__file__).parent.parent.parent / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["model"].slot.stage.name == "FOSSILIZED"


def test_readme_telemetry_example_runs():
    text = (Path(__file__).parent.parent.parent / "README.md").read_text()
    section = text[text.index("### Gradient telemetry"):]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["slot"].stage.name == "BLENDING"  # the gate opened
    assert scope["stats"].steps == 10  # every=2 over 20 steps


def test_readme_controller_example_runs():
    text = (Path(__file__).parent.parent.parent / "README.md").read_text()
    section = text[text.index("### The controller's side"):]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    model, opt, upkeep = scope["model"], scope["opt"], scope["upkeep"]
    assert [s.stage.name for s in model.slots] == ["FOSSILIZED", "FOSSILIZED"]
    # one group for the host, one per seed the upkeep added
    assert len(opt.param_groups) == 3
    assert all(upkeep.group_of(s.name) is not None for s in model.slots)
