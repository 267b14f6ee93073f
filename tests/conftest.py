"""Shared test fixtures: the shared corpora, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach a model or dataset hub.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))


def shared_path(relative: str) -> Path:
    """A file under ../shared; the test is skipped when the shared data is not beside the repo."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def run_cli(*args: str, input: str | bytes | None = None, check: bool = False, env: dict | None = None,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m dlnlp ARGS`` in a real subprocess (stdin/stdout pipes, exit code)."""
    text = not isinstance(input, bytes)
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DLNLP_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "dlnlp", *args], input=input, capture_output=True, text=text,
        env=full_env, cwd=cwd, timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"dlnlp {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture
def cli():
    return run_cli


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
