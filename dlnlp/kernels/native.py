"""Build-once, cache-forever loading of the small C kernels behind the CPU hot loops.

Some CPU loops (word2vec's per-pair updates, GloVe's per-entry AdaGrad steps) do so little work per
item that any per-batch framework overhead dominates; word2vec.c, gensim and Stanford GloVe all run
them as tight native loops with lock-free ("Hogwild", Recht et al. 2011) threads. dlnlp keeps each
such loop as C source beside its Python driver and builds it here with the system compiler into a
shared library cached under ``$DLNLP_CACHE`` (default ``~/.cache/dlnlp``), keyed by a hash of the
source, flags, compiler and CPU features (``-march=native`` code may not run on another CPU), and
loads it with ctypes (no Python in the loop; ctypes releases the GIL). When no compiler is found,
the build fails, or ``DLNLP_NO_NATIVE=1`` is set, :func:`load_native` returns None with a reason, and
callers fall back to the batched Torch kernels (the path that also runs on CUDA).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CFLAGS = ("-O3", "-march=native", "-ffast-math", "-funroll-loops", "-fPIC", "-shared", "-pthread")


def cache_dir() -> Path:
    return Path(os.environ.get("DLNLP_CACHE", Path.home() / ".cache" / "dlnlp"))


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
        """The compiled library (built on first use, then cached), or None when it cannot be built."""
        if self._library is not None or self._failure is not None:
            return self._library
        if os.environ.get("DLNLP_NO_NATIVE", "") not in ("", "0"):
            self._failure = "disabled by DLNLP_NO_NATIVE"
            return None
        compiler = _compiler()
        if compiler is None:
            self._failure = "no C compiler found"
            return None
        key = hashlib.sha256("\0".join([self.source, *self.cflags, compiler, _cpu_key()]).encode()).hexdigest()[:16]
        path = cache_dir() / f"{self.name}_{key}.so"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                    source = Path(tmp) / f"{self.name}.c"
                    source.write_text(self.source)
                    built = Path(tmp) / path.name
                    subprocess.run([compiler, *self.cflags, str(source), "-o", str(built), "-lm"], check=True,
                                   capture_output=True, timeout=120)
                    os.replace(built, path)  # atomic: concurrent builders never see a partial file
            library = ctypes.CDLL(str(path))
            self.declare(library)
        except (OSError, subprocess.SubprocessError, AttributeError) as exc:
            self._failure = f"cannot build the native {self.name} kernel: {exc}"
            return None
        self._library = library
        return library

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
