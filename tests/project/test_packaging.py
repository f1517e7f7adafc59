"""What a user of a PyTorch library expects around the code: a version, a licence, type
information, and a clear error when another package named 'kernels' has taken the import name."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import esper_slot

ROOT = Path(__file__).parent.parent.parent


def test_version_is_single_sourced():
    assert esper_slot.__version__ == importlib.metadata.version("esper-slot")
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "esper_slot.__version__"}


def test_licence_and_type_markers():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"]["text"] == "MIT"
    assert project["tool"]["setuptools"]["package-data"]["*"] == ["py.typed"]
    for package in ("kernels", "esper_slot"):
        assert (ROOT / package / "py.typed").exists()


def test_a_foreign_kernels_package_is_refused_at_import(tmp_path):
    """Another distribution's top-level 'kernels' (Hugging Face's, on PyPI) first on the path:
    importing esper_slot fails at once and says what to do, rather than at the first forward."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("def get_kernel(name): ...\n")
    run = subprocess.run(
        [sys.executable, "-c", "import esper_slot"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode != 0
    assert "ImportError" in run.stderr and "is not esper-slot's" in run.stderr
    assert "separate virtual environment" in run.stderr
