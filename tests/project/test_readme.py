"""Every Python code block of the README and of docs/ runs as written (the blocks of one file in
order, sharing one namespace); a block whose first line is a "# not run:" comment says why and is
only compiled. docs/origins/ holds copies of the findings the project grew from, whose blocks are
esper-lite's code of the time, quoted: not run. Links to docs/ files resolve, and the README stays
short."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "origins" not in p.parts),
]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands here
    # A real module: torch.compile resolves a function's globals through sys.modules
    module = types.ModuleType(f"docs_page_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for i, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.name}, block {i + 1}", "exec")
        if block.startswith("# not run:"):
            continue
        exec(code, module.__dict__)


def test_readme_quickstart_ends_fossilized_and_the_controller_example_does_its_job():
    scope: dict = {}
    exec(python_blocks(ROOT / "README.md")[0], scope)
    assert scope["model"].slot.stage.name == "FOSSILIZED"
    scope = {}
    exec(python_blocks(ROOT / "docs" / "controller.md")[0], scope)
    model, opt, upkeep = scope["model"], scope["opt"], scope["upkeep"]
    assert [s.stage.name for s in model.slots] == ["FOSSILIZED", "FOSSILIZED"]
    assert len(opt.param_groups) == 3  # the host's group and one per seed the upkeep added
    assert all(upkeep.group_of(s.name) is not None for s in model.slots)


def test_the_readme_is_short_and_its_doc_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for page in PAGES:
        for link in re.findall(r"`((?:docs|bench)/[\w./-]+\.md)`", page.read_text()):
            assert (ROOT / link).exists(), f"{page.name} links to a missing {link}"
