"""The floors hold: imports only go down (core < feedback < serve < eval < finetune < ui), and core and
feedback never import torch or transformers. The contracts live in pyproject.toml; ``lint-imports`` checks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
FLOORS = ("core", "feedback", "serve", "eval", "finetune", "ui")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the contracts of ``cwd/pyproject.toml``, the packages of ``cwd`` first on the path."""
    exe = str(LINT_IMPORTS) if LINT_IMPORTS.is_file() else shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter, the dev extra) must be installed"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([exe, "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_project_keeps_its_import_contracts():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.fixture
def toy_project(tmp_path) -> Path:
    """Six packages named like the floors, importing only downwards, under the project's own contracts."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for floor, below in zip(FLOORS, (None,) + FLOORS):
        (tmp_path / floor).mkdir()
        (tmp_path / floor / "__init__.py").write_text(f"import {below}\n" if below else "")
    (tmp_path / "core" / "embed.py").write_text("def embed():\n    import torch\n    import transformers\n")
    return tmp_path


def test_a_toy_project_that_keeps_the_floors_passes(toy_project):
    result = lint_imports(toy_project)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module,source,broken", [
    ("core/upward.py", "from ui import app\n", "Imports go down only"),
    ("serve/upward.py", "def later():\n    import eval\n", "Imports go down only"),  # lazy imports count too
    ("feedback/model.py", "import torch\n", "never import torch or transformers"),
    ("core/tokens.py", "from transformers import AutoTokenizer\n", "never import torch or transformers"),
    ("feedback/indirect.py", "import core.tokens\n", "never import torch or transformers"),  # by way of core
])
def test_a_broken_contract_fails_lint_imports(toy_project, module, source, broken):
    (toy_project / module).write_text(source)
    if module == "feedback/indirect.py":
        (toy_project / "core" / "tokens.py").write_text("def load():\n    import torch\n")
    result = lint_imports(toy_project)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and broken in result.stdout, result.stdout


def test_importing_core_and_feedback_loads_neither_torch_nor_transformers():
    modules = [f"{package}.{path.stem}" for package in ("core", "feedback")
               for path in sorted((REPO / package).glob("*.py")) if path.stem not in ("__init__", "__main__")]
    code = (f"import sys\nfor m in {modules!r}:\n    __import__(m)\n"
            "sys.exit(' '.join(m for m in ('torch', 'transformers') if m in sys.modules) or None)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
