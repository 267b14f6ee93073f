"""Atomic output: write to a temporary name beside the target, then rename into place.

A reader never sees a half-written file, a crash leaves the old file intact, and an existing
file or directory is only replaced when the caller passes ``force=True`` (the CLI's ``--force``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dlnlp.errors import DlnlpError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_can_write(path: str | os.PathLike, force: bool = False) -> Path:
    """Fail early (before any expensive work) if ``path`` exists and ``force`` is not set."""
    target = Path(path)
    if target.exists() and not force:
        what = "directory" if target.is_dir() else "file"
        raise DlnlpError(f"{target}: {what} exists; pass --force to overwrite it")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise DlnlpError(f"{parent}: is not a directory")
    return target


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", *, force: bool = False, encoding: str | None = "utf-8"
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open writes whole files: mode must be 'w' or 'wb'")
    target = check_can_write(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp creates the file private (0600); the output should get the usual permissions.
    os.fchmod(fd, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, force: bool = False) -> None:
    with atomic_open(path, "wb", force=force) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool = False) -> None:
    with atomic_open(path, "w", force=force) as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    With ``force`` an existing directory (or file) at ``path`` is removed only after the new one is
    complete, so a failed run never destroys the previous output.
    """
    target = check_can_write(path, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp_dir, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
    try:
        yield tmp_dir
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp_dir, target)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
