"""The package's layers point one way (DESIGN.md: cli -> recipes -> decoding, training -> models ->
kernels, with io and tokenization below models), the CLI reaches kernels only through the library; and only the registry, the text codec and a family's own
files branch on a model kind or a text level."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dlnlp"
ABOVE_KERNELS = ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")
# (importing package, packages it may not import)
FORBIDDEN = [("io", ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")),
             ("tokenization", ("models", "training", "recipes", "decoding", "transfer", "evaluation", "cli")),
             ("kernels", ABOVE_KERNELS),
             ("models", ("training", "recipes", "decoding", "transfer", "evaluation", "cli")),
             ("training", ("recipes", "decoding", "transfer", "evaluation", "cli")),
             ("decoding", ("training", "recipes", "transfer", "evaluation", "cli")),
             ("recipes", ("cli",)),
             ("cli", ("kernels",))]


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


LEVELS = {"char", "tokenizer", "ids"}
KINDS = {"gpt", "rnn_lm", "ngram", "word2vec", "vectors", "bert"}
# where a branch on the text level or the model kind belongs: the codec, the registry, the family's files
MAY_BRANCH = {"tokenization/text_codec.py", "models/registry.py", "models/gpt.py", "models/gpt_hf.py",
              "models/rnn_lm.py", "models/ngram.py", "models/word2vec.py", "models/vectors.py",
              "models/bert.py", "models/bert_hf.py"}


def _names_kind_or_level(node: ast.AST) -> bool:
    """``level``, ``kind``, ``x.level``, ``config["kind"]``, ``config.get("level")``."""
    if isinstance(node, ast.Name):
        return node.id in ("level", "kind")
    if isinstance(node, ast.Attribute):
        return node.attr in ("level", "kind")
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in ("level", "kind")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value in ("level", "kind")
    return False


def branches_on_kind_or_level(path: Path, root: Path = PACKAGE) -> list[str]:
    """``level == "char"``, ``config["kind"] in ("gpt", ...)`` and the like."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        literals = set()
        for operand in operands:
            elements = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            literals |= {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        if literals & (LEVELS | KINDS) and any(_names_kind_or_level(o) for o in operands):
            found.append(f"{path.relative_to(root.parent)}:{node.lineno} compares with {sorted(literals & (LEVELS | KINDS))}")
    return found


def test_only_the_registry_codec_and_family_files_branch_on_kind_or_level():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.relative_to(PACKAGE)) not in MAY_BRANCH:
            wrong += branches_on_kind_or_level(path)
    assert wrong == []


def test_the_branch_finder_sees_level_and_kind_comparisons(tmp_path):
    probe = tmp_path / "dlnlp" / "probe.py"
    probe.parent.mkdir()
    probe.write_text('def f(level, config, fmt):\n    if level == "char":\n        return 1\n'
                     '    if fmt == "ids":\n        return 2\n'
                     '    return config["kind"] in ("gpt", "other")\n')
    assert branches_on_kind_or_level(probe, root=tmp_path / "dlnlp") == [
        "dlnlp/probe.py:2 compares with ['char']", "dlnlp/probe.py:6 compares with ['gpt']"]
