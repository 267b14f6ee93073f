"""The package's layers point one way (DESIGN.md): io and kernels import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dlnlp"
ABOVE_KERNELS = ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")
# (importing package, packages it may not import)
FORBIDDEN = [("io", ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")),
             ("tokenization", ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")),
             ("kernels", ABOVE_KERNELS)]


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every ``dlnlp.*`` module a file imports, at any depth (function-level imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            package = path.relative_to(root.parent).with_suffix("").parts[:-node.level]
            found.append((node.lineno, ".".join([*package, *(node.module or "").split(".")]).rstrip(".")))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, module) for line, module in found if module == "dlnlp" or module.startswith("dlnlp.")]


def arrows(layer: str, forbidden: tuple[str, ...], root: Path = PACKAGE) -> list[str]:
    wrong = []
    for path in sorted((root / layer).rglob("*.py")):
        for line, module in imported_modules(path, root):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in forbidden:
                wrong.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return wrong


@pytest.mark.parametrize(("layer", "forbidden"), FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_no_import_points_up(layer, forbidden):
    assert arrows(layer, forbidden) == []


def test_the_walk_sees_function_level_and_relative_imports(tmp_path):
    (tmp_path / "dlnlp" / "io").mkdir(parents=True)
    (tmp_path / "dlnlp" / "io" / "probe.py").write_text(
        "import os\n\ndef f():\n    from dlnlp.models.gpt import GPT\n    from ..training import trainer\n")
    assert arrows("io", FORBIDDEN[0][1], root=tmp_path / "dlnlp") == [
        "dlnlp/io/probe.py:4 imports dlnlp.models.gpt", "dlnlp/io/probe.py:5 imports dlnlp.training"]
