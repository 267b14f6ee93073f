"""Safe output: nothing a user had is lost, whatever the options, signals or crashes.

Regular files and directories are written under a temporary name beside the target and renamed into
place: a reader never sees a half-written output, a crash leaves the old output intact, and an
existing output is only replaced when the caller passes ``force=True`` (the CLI's ``--force``).

Rules every writer shares (:func:`check_can_write`), with or without ``--force``:

- the output may not be the current directory, one that contains it, one of the command's inputs,
  or a directory that contains an input;
- a directory output only replaces a directory that holds a model (a ``config.json``) or nothing;
  a file output never replaces a directory;
- ``-`` means stdout; character devices and FIFOs (``/dev/stdout``, ``mkfifo``), and symlinks to
  them, are written directly, never replaced; a symlink to a regular file keeps pointing at the new
  file.

Temporary names carry the writer's PID (``.NAME.PID.XXXX.tmp``), so the next writer of the same
output removes what a killed run left behind (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from dlnlp.errors import DlnlpError

STDOUT = "-"
TEMP_SUFFIX = ".tmp"
MODEL_MARKER = "config.json"  # a directory holding one is a model directory (dlnlp's or HF's)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temp_prefix(target: Path) -> str:
    """The prefix of this process's temporary names for ``target`` (``.NAME.PID.``)."""
    return f".{target.name}.{os.getpid()}."


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temps(target: str | os.PathLike) -> None:
    """Remove the temporary outputs (``.NAME.PID.*.tmp``) that killed writers of ``target`` left.

    A leftover is stale when the process named by its PID no longer runs. A stale ``.NAME.old-PID``
    (the previous output, moved aside during a swap that was cut short) is put back when ``target``
    is missing and removed otherwise.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    temp = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\..*{re.escape(TEMP_SUFFIX)}$")
    old = re.compile(rf"^\.{re.escape(target.name)}\.old-(\d+)$")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = temp.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            _remove(entry)
    for entry in entries:
        match = old.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            if os.path.lexists(target):
                _remove(entry)
            else:
                with contextlib.suppress(OSError):
                    os.rename(entry, target)


def is_stream(path: str | os.PathLike) -> bool:
    """True for ``-`` (stdout) and for character devices, FIFOs and sockets (or symlinks to them)."""
    if str(path) == STDOUT:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _expand_inputs(inputs: Iterable[str | os.PathLike | None] | None) -> list[Path]:
    import glob

    paths: list[Path] = []
    for spec in inputs or ():
        if spec is None:
            continue
        spec = str(spec)
        if spec == STDOUT or spec.startswith("builtin:"):
            continue
        for match in (glob.glob(spec, recursive=True) if glob.has_magic(spec) else [spec]):
            if os.path.lexists(match):
                paths.append(Path(match).resolve())
    return paths


def is_model_directory(path: Path) -> bool:
    """A directory a dlnlp command may replace with ``--force``: one holding a model, or an empty one."""
    try:
        return (path / MODEL_MARKER).is_file() or not any(path.iterdir())
    except OSError:
        return False


def check_can_write(path: str | os.PathLike, force: bool = False, *, inputs: Iterable | None = None,
                    directory: bool | None = None) -> Path:
    """Fail early (before any expensive work) if writing ``path`` could lose anything; see the module doc.

    ``inputs`` are the command's inputs (files or globs); ``directory`` says the output is a directory
    (True), a file (False), or either, as the writer decides later (None).
    """
    if str(path) == STDOUT:
        if directory:
            raise DlnlpError("-: a directory output cannot be written to stdout; give a directory name")
        return Path(STDOUT)
    target = Path(path)
    if not str(path).strip():
        raise DlnlpError("the output path is empty")
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise DlnlpError(f"{path}: is the current directory or contains it; refusing to write over it "
                         "(give a new name)")
    for source in _expand_inputs(inputs):
        if source == resolved or resolved in source.parents:
            what = "is" if source == resolved else "contains"
            raise DlnlpError(f"{path}: {what} an input of this command ({source}); choose another output")
    if is_stream(target):
        if directory:
            raise DlnlpError(f"{path}: is a device or pipe, not a directory")
        return target
    if os.path.lexists(target):
        if not force:
            what = "directory" if target.is_dir() else "file"
            raise DlnlpError(f"{target}: {what} exists; pass --force to overwrite it")
        if directory and not target.is_dir():
            raise DlnlpError(f"{target}: is a file, not a model directory; refusing to replace it, "
                             "even with --force")
        if directory is not False and target.is_dir() and not is_model_directory(target):
            raise DlnlpError(f"{target}: is not a model directory (no {MODEL_MARKER}) and not empty; "
                             "refusing to replace it, even with --force")
        if directory is False and target.is_dir():
            raise DlnlpError(f"{target}: is a directory; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise DlnlpError(f"{parent}: is not a directory")
    return target


def _replace_target(target: Path) -> Path:
    """The path a rename must replace: a symlink's final target, so the link keeps working."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


@contextlib.contextmanager
def _stream_handle(target: Path, mode: str, encoding: str | None) -> Iterator[IO]:
    """Write straight into stdout, a device or a FIFO (nothing to rename, nothing replaced)."""
    if str(target) == STDOUT:
        sys.stdout.flush()
        raw: IO[bytes] = sys.stdout.buffer
        owned = False
    else:
        raw = open(target, "wb")  # noqa: SIM115 (closed below)
        owned = True
    handle: IO = raw if "b" in mode else io.TextIOWrapper(raw, encoding=encoding, newline="")
    try:
        yield handle
        handle.flush()
    finally:
        if "b" not in mode:
            handle.detach()
        if owned:
            raw.close()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False, check: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (safetensors, sentencepiece);
    renamed over ``path`` on success, removed on failure. The file gets the umask's permissions."""
    target = check_can_write(path, force) if check else Path(path)
    target = _replace_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp (and some writers) make the file private
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", *, force: bool = False, encoding: str | None = "utf-8",
    check: bool = True,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. ``-``, devices and
    FIFOs are written directly. ``check=False`` skips :func:`check_can_write` (the caller did it).
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open writes whole files: mode must be 'w' or 'wb'")
    target = check_can_write(path, force, directory=False) if check else Path(path)
    if is_stream(target):
        with _stream_handle(target, mode, encoding) as handle:
            yield handle
        return
    target = _replace_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent)
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


def make_temp_dir(target: Path) -> Path:
    """A new temporary directory beside ``target`` (``.NAME.PID.XXXX.tmp``) with the umask's permissions."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=TEMP_SUFFIX, dir=target.parent))
    os.chmod(tmp_dir, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
    return tmp_dir


_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2  # noqa: B018 (glibc >= 2.28)
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    at_fdcwd = -100
    result = _libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_into_place(new: Path, target: Path) -> None:
    """Put directory (or file) ``new`` at ``target``; the previous ``target``, if any, is deleted after.

    The swap is one atomic exchange where the filesystem allows it, so there is no moment without a
    ``target``; elsewhere the old one is moved aside to ``.NAME.old-PID`` first, and
    :func:`remove_stale_temps` puts it back if the process dies between the two renames.
    """
    if not os.path.lexists(target):
        os.replace(new, target)
        return
    if _exchange(new, target):
        _remove(new)  # now holds the old output
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    _remove(old)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, force: bool = False, check: bool = True,
                     inputs: Iterable | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    With ``force`` an existing directory at ``path`` is removed only after the new one is complete,
    so a failed run never destroys the previous output. ``check=False`` is for directories dlnlp
    manages inside its own outputs (a run's ``checkpoint/``).
    """
    target = check_can_write(path, force, inputs=inputs, directory=True) if check else Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp_dir = make_temp_dir(target)
    try:
        yield tmp_dir
        swap_into_place(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


class OutputLock:
    """An exclusive lock on an output (``.NAME.lock`` beside it), held for a whole training run.

    A second run on the same output fails at once, saying which process holds it. The lock file is
    removed on release; the inode check after locking makes that safe against a racing remover.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.path = self.target.with_name(f".{self.target.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise DlnlpError(f"{self.target}: another dlnlp run (pid {holder}) is writing it; wait for it "
                                 "to finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was removed by its previous holder while we waited: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
