"""The README's slot example runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_slot_example_runs():
    text = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["model"].slot.stage.name == "FOSSILIZED"
