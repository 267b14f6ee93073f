"""Build-once, cache-forever loading of the small C kernels behind the CPU hot loops.

Some CPU loops (word2vec's per-pair updates, GloVe's per-entry AdaGrad steps) do so little work per
item that any per-batch framework overhead dominates; word2vec.c, gensim and Stanford GloVe all run
them as tight native loops with lock-free ("Hogwild", Recht et al. 2011) threads. dlnlp keeps each
such loop as a C source file beside its Python driver (``dlnlp/kernels/*.c``, shipped as package
data) and builds it here with the system compiler into a shared library cached under
``$DLNLP_CACHE`` (default ``~/.cache/dlnlp``), keyed by a hash of the source, flags, compiler and CPU
features (``-march=native`` code may not run on another CPU), and loads it with ctypes (no Python in
the loop; ctypes releases the GIL). When no compiler is found, the build fails, the cache cannot be
trusted, or ``DLNLP_NO_NATIVE=1`` is set, :func:`NativeKernel.load` returns None with a reason, and
callers fall back to the batched Torch kernels (the path that also runs on CUDA) with a warning.

Loading a shared library runs its code (constructors), so the cache is not trusted blindly:

* the cache directory is created ``0700``; a directory or file in it that belongs to another user
  or is writable by group or others is refused (the kernel falls back, the reason names the path);
* each library is stored under a name that carries the SHA-256 of its bytes
  (``NAME_KEY-SHA256.so``), and a pointer file ``NAME_KEY.sha256`` names the current one; before
  loading, the file's bytes are hashed again and must match, so a truncated or replaced library
  (or one planted under a predictable name without a matching pointer) is rebuilt, never loaded;
* builds go to a private temporary directory in the cache and are renamed into place (the library
  first, then the pointer, each atomically), so concurrent builders and readers never see a
  partial file and a process that has a library mapped keeps its (old, intact) copy.

The hash guards against corruption and stray files; the ownership and permission checks against
other users. Anyone who can write the cache as you can run code as you anyway.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

# -ffast-math for vectorized reductions, but -fno-finite-math-only so that isfinite() and comparisons
# with NaN keep their meaning: the kernels test for overflowed values to stay in bounds and report them.
DEFAULT_CFLAGS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-funroll-loops", "-fPIC",
                  "-shared", "-pthread")


def cache_dir() -> Path:
    return Path(os.environ.get("DLNLP_CACHE", Path.home() / ".cache" / "dlnlp"))


def source_text(filename: str) -> str:
    """A C source file shipped with the package (``dlnlp/kernels/FILENAME``)."""
    return resources.files("dlnlp.kernels").joinpath(filename).read_text(encoding="utf-8")


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


class UntrustedCache(Exception):
    """The cache directory or a file in it may have been written by someone else."""


def _check_owned_private(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse ``path`` unless it belongs to this user and nobody else may write it."""
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UntrustedCache(f"{what} {path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedCache(f"{what} {path} is writable by group or others (chmod go-w it, or remove it)")


def secure_cache_dir() -> Path:
    """The cache directory, created ``0700`` if missing; raises :class:`UntrustedCache` when others could write it."""
    directory = cache_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as exc:
        raise UntrustedCache(f"cannot create the kernel cache {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UntrustedCache(f"kernel cache {directory} is not a directory")
    _check_owned_private(directory, info, "kernel cache")
    return directory


def _read_trusted(path: Path) -> bytes | None:
    """The bytes of a cache file, None when it is missing; :class:`UntrustedCache` when others could write it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise UntrustedCache(f"kernel cache entry {path} is not a regular file")
    _check_owned_private(path, info, "kernel cache file")
    try:
        return path.read_bytes()
    except FileNotFoundError:  # replaced by a concurrent build between the two calls
        return None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class NativeKernel:
    """One C kernel: its source, flags, and a function that declares the ctypes signatures."""

    name: str
    source: str
    declare: Callable[[ctypes.CDLL], None]
    cflags: tuple[str, ...] = DEFAULT_CFLAGS
    _library: ctypes.CDLL | None = None
    _failure: str | None = None

    def load(self) -> ctypes.CDLL | None:
        """The compiled library (built on first use, then cached), or None when it cannot be built or trusted."""
        if self._library is not None or self._failure is not None:
            return self._library
        if os.environ.get("DLNLP_NO_NATIVE", "") not in ("", "0"):
            self._failure = "disabled by DLNLP_NO_NATIVE"
            return None
        compiler = _compiler()
        if compiler is None:
            self._failure = "no C compiler found"
            return None
        key = self.key(compiler)
        try:
            directory = secure_cache_dir()
            path = self._cached(directory, key) or self._build(directory, key, compiler)
            library = ctypes.CDLL(str(path))
            self.declare(library)
        except UntrustedCache as exc:
            self._failure = f"not loading the native {self.name} kernel: {exc}"
            return None
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            self._failure = f"cannot build the native {self.name} kernel: {detail[0] if detail else exc}"
            return None
        except (OSError, subprocess.SubprocessError, AttributeError) as exc:
            self._failure = f"cannot build the native {self.name} kernel: {exc}"
            return None
        self._library = library
        return library

    def key(self, compiler: str) -> str:
        """The cache key: a hash of the source, flags, compiler and CPU features."""
        return hashlib.sha256("\0".join([self.source, *self.cflags, compiler, _cpu_key()]).encode()).hexdigest()[:16]

    def _cached(self, directory: Path, key: str) -> Path | None:
        """The cached library whose bytes match its recorded SHA-256, or None (then it is rebuilt)."""
        pointer_file = directory / f"{self.name}_{key}.sha256"
        recorded = _read_trusted(pointer_file)
        if recorded is None:
            return None
        digest = recorded.decode("ascii", errors="replace").strip()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None
        path = directory / f"{self.name}_{key}-{digest}.so"
        data = _read_trusted(path)
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            return None  # missing, truncated or replaced: rebuild
        return path

    def _build(self, directory: Path, key: str, compiler: str) -> Path:
        """Compile in a private temporary directory, then rename the library and its pointer into place."""
        with tempfile.TemporaryDirectory(dir=directory, prefix=f".build-{self.name}-") as tmp:
            source = Path(tmp) / f"{self.name}.c"
            source.write_text(self.source, encoding="utf-8")
            # Relative names (run in tmp) keep the temporary path out of the binary, so builds repeat exactly.
            subprocess.run([compiler, *self.cflags, source.name, "-o", "built.so", "-lm"], check=True,
                           capture_output=True, timeout=120, cwd=tmp)
            built = Path(tmp) / "built.so"
            digest = hashlib.sha256(built.read_bytes()).hexdigest()
            os.chmod(built, 0o700)
            path = directory / f"{self.name}_{key}-{digest}.so"
            os.replace(built, path)  # atomic; its name carries its hash
            _write_atomic(directory / f"{self.name}_{key}.sha256", (digest + "\n").encode(), 0o600)
        return path

    @property
    def failure_reason(self) -> str | None:
        return self._failure


def pointer(array: np.ndarray | None) -> int | None:
    """The data address of a C-contiguous array for a ctypes ``c_void_p`` field (None stays NULL)."""
    if array is None:
        return None
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("arrays passed to a native kernel must be C-contiguous")
    return array.ctypes.data
