"""Shared test fixtures: the shared corpora, and running the real CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from dlnlp.io.public_data import data_dir

# Tests never reach a model or dataset hub.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DLNLP_SHARED", ROOT.parent / "shared"))


# Where shared_path falls back to when ../shared is absent: the data cache filled from a mirror. Read once,
# here, so that tests which point these variables elsewhere (tests/cli/test_data.py) do not move it.
DATA_MIRROR = os.environ.get("DLNLP_DATA_MIRROR") or None
DATA_CACHE = data_dir()  # $DLNLP_DATA_DIR, else ~/.cache/dlnlp/data
_FETCHED: dict[str, Path] = {}


def _from_data_cache(relative: str) -> Path:
    """``relative`` from the data cache (``dlnlp data get``), fetched once per session from the mirror
    ``$DLNLP_DATA_MIRROR``; the cache is laid out as ../shared is."""
    from dlnlp.errors import UsageError
    from dlnlp.io import public_data

    if relative not in _FETCHED:
        try:
            ((dataset, _),) = public_data.select([relative], public_data.load_manifest())
        except UsageError:
            pytest.skip(f"shared data not found: {SHARED / relative} (and not in the data manifest)")
        # a mirror that fails fails the test: the mirror was asked for
        for path in public_data.get([dataset.name], root=DATA_CACHE, mirror=DATA_MIRROR):
            _FETCHED[path.relative_to(DATA_CACHE).as_posix()] = path
    return _FETCHED[relative]


def shared_path(relative: str) -> Path:
    """A file under ../shared (``$DLNLP_SHARED``). Without it, and with ``$DLNLP_DATA_MIRROR`` set, the file
    comes from the data cache (fetched from the mirror once); with neither, the test is skipped."""
    path = SHARED / relative
    if path.exists():
        return path
    if DATA_MIRROR:
        return _from_data_cache(relative)
    pytest.skip(f"shared data not found: {path} (set DLNLP_DATA_MIRROR to fetch it: see `dlnlp data`)")


def shared_root(*relatives: str) -> Path:
    """A directory laid out as ../shared that holds ``relatives``: ../shared itself, or the data cache."""
    roots = {shared_path(relative).parents[len(Path(relative).parts) - 1] for relative in relatives}
    if len(roots) > 1:
        pytest.skip(f"the shared files {relatives} are split between {SHARED} and the data cache")
    return roots.pop() if roots else SHARED


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


class CliResult(NamedTuple):
    """What an in-process run of the CLI gave: the fields of ``subprocess.CompletedProcess`` it shares
    (and, as a tuple, ``code, stdout, stderr = run_main(...)``)."""

    returncode: int
    stdout: str
    stderr: str


def run_main(*args: str | os.PathLike, input: str | bytes | None = None) -> CliResult:
    """Run ``dlnlp ARGS`` in this process through ``dlnlp.cli.main.main``: its exit code and mapping of
    errors to one line, with stdin fed from ``input`` and stdout and stderr captured apart.

    No interpreter start and no torch import per call (``run_cli`` costs a second or more each), so
    suites of many small cases use this; pipes, signals and concurrent runs need ``run_cli``.
    An exception escaping ``main`` (it should turn every failure into an exit code) becomes exit
    code -1 with its traceback on stderr, so the assertion that fails shows it.
    """
    import traceback

    from dlnlp.cli.main import main

    data = input.encode("utf-8") if isinstance(input, str) else (input or b"")
    out, err = io.BytesIO(), io.BytesIO()
    streams = (io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"),
               io.TextIOWrapper(out, encoding="utf-8", write_through=True),
               io.TextIOWrapper(err, encoding="utf-8", write_through=True))
    saved = sys.stdin, sys.stdout, sys.stderr
    debug = os.environ.pop("DLNLP_DEBUG", None)
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported through the result, see above
            traceback.print_exc(file=sys.stderr)
            code = -1
        for stream in streams[1:]:
            stream.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if debug is not None:
            os.environ["DLNLP_DEBUG"] = debug
    return CliResult(code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace"))


@pytest.fixture
def cli_inproc():
    """``run_main``: the CLI in this process, for fast tables of cases."""
    return run_main


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
