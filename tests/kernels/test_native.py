import ctypes

import numpy as np
import pytest

from dlnlp.kernels import native

SOURCE = "long add_one(long x) { return x + 1; }\n"


def _declare(library):
    library.add_one.argtypes = [ctypes.c_long]
    library.add_one.restype = ctypes.c_long


def test_builds_once_and_reuses_the_cached_library(tmp_path, monkeypatch):
    monkeypatch.setenv("DLNLP_CACHE", str(tmp_path))
    monkeypatch.delenv("DLNLP_NO_NATIVE", raising=False)
    if native._compiler() is None:
        pytest.skip("no C compiler")
    library = native.NativeKernel("probe", SOURCE, _declare).load()
    assert library is not None and library.add_one(41) == 42
    built = list(tmp_path.glob("probe_*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    assert native.NativeKernel("probe", SOURCE, _declare).load().add_one(1) == 2
    assert built[0].stat().st_mtime_ns == mtime  # not rebuilt
    other = native.NativeKernel("probe", SOURCE + "\n", _declare).load()
    assert other is not None and len(list(tmp_path.glob("probe_*.so"))) == 2  # the source is in the key


def test_disabled_or_failing_builds_return_none_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("DLNLP_CACHE", str(tmp_path))
    monkeypatch.setenv("DLNLP_NO_NATIVE", "1")
    kernel = native.NativeKernel("probe", SOURCE, _declare)
    assert kernel.load() is None and "DLNLP_NO_NATIVE" in kernel.failure_reason
    monkeypatch.delenv("DLNLP_NO_NATIVE")
    if native._compiler() is None:
        pytest.skip("no C compiler")
    broken = native.NativeKernel("broken", "this is not C", _declare)
    assert broken.load() is None and "cannot build" in broken.failure_reason
    assert not list(tmp_path.glob("broken_*.so"))


def test_pointer_requires_contiguous_arrays():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert native.pointer(array) == array.ctypes.data
    assert native.pointer(None) is None
    with pytest.raises(ValueError, match="C-contiguous"):
        native.pointer(array.T)
