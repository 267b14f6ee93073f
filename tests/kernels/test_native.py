import ctypes
import hashlib
import os
import stat
import subprocess

import numpy as np
import pytest

from dlnlp.kernels import native
from tests.conftest import run_cli

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


# -- the cache is not trusted blindly (issue #19, item 4) ---------------------------------------------
PLANTED = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("DLNLP_TEST_MARKER");
    if (marker) { FILE *f = fopen(marker, "w"); if (f) fclose(f); }
}
long add_one(long x) { return x + 100; }
"""


def _needs_compiler():
    if native._compiler() is None:
        pytest.skip("no C compiler")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache directory (not created yet) and a marker file a planted library would create."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("DLNLP_CACHE", str(directory))
    monkeypatch.delenv("DLNLP_NO_NATIVE", raising=False)
    monkeypatch.setenv("DLNLP_TEST_MARKER", str(tmp_path / "planted-ran"))
    _needs_compiler()
    return directory


def _plant(path, tmp_path):
    """Compile the planted library (its constructor creates the marker) to ``path``."""
    source = tmp_path / "planted.c"
    source.write_text(PLANTED)
    subprocess.run([native._compiler(), "-shared", "-fPIC", str(source), "-o", str(path)], check=True)


def test_cache_directory_and_files_are_private(cache):
    library = native.NativeKernel("private", SOURCE, _declare).load()
    assert library is not None and library.add_one(1) == 2
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for path in cache.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert [p.name for p in cache.glob("private_*.so")] and [p.name for p in cache.glob("private_*.sha256")]


def test_planted_library_is_not_loaded(cache, tmp_path):
    kernel = native.NativeKernel("planted", SOURCE + "/* planted */\n", _declare)
    key = kernel.key(native._compiler())
    cache.mkdir(mode=0o700)
    # Under the name the loader used to trust, and under a hashed name with no pointer to it.
    _plant(cache / f"planted_{key}.so", tmp_path)
    _plant(cache / f"planted_{key}-{'0' * 64}.so", tmp_path)
    library = kernel.load()
    assert library is not None and library.add_one(41) == 42  # the real kernel, rebuilt
    assert not (tmp_path / "planted-ran").exists()


def _build_only(name, source):
    """Build into the cache without loading (truncating a library mapped in this process would crash it)."""
    kernel = native.NativeKernel(name, source, _declare)
    compiler = native._compiler()
    return kernel._build(native.secure_cache_dir(), kernel.key(compiler), compiler)


def test_library_that_does_not_match_its_hash_is_rebuilt_not_loaded(cache, tmp_path):
    built = _build_only("replaced", SOURCE)
    _plant(built, tmp_path)  # same name, other bytes: the recorded hash no longer matches
    library = native.NativeKernel("replaced", SOURCE, _declare).load()
    assert library is not None and library.add_one(41) == 42
    assert not (tmp_path / "planted-ran").exists()
    assert hashlib.sha256(built.read_bytes()).hexdigest() in built.name


def test_truncated_library_is_rebuilt(cache):
    built = _build_only("truncated", SOURCE)
    size = built.stat().st_size
    with open(built, "r+b") as handle:
        handle.truncate(size // 3)
    library = native.NativeKernel("truncated", SOURCE, _declare).load()
    assert library is not None and library.add_one(1) == 2
    assert built.stat().st_size == size


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o722])
def test_cache_directory_writable_by_others_is_refused(cache, tmp_path, mode):
    cache.mkdir()
    os.chmod(cache, mode)
    kernel = native.NativeKernel("shared", SOURCE, _declare)
    assert kernel.load() is None
    assert "writable by group or others" in kernel.failure_reason and str(cache) in kernel.failure_reason
    assert not list(cache.iterdir())  # nothing built or loaded there


def test_cache_file_writable_by_others_is_refused(cache, tmp_path):
    built = _build_only("groupfile", SOURCE)
    os.chmod(built, 0o777)
    kernel = native.NativeKernel("groupfile", SOURCE, _declare)
    assert kernel.load() is None and "writable by group or others" in kernel.failure_reason


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_cache_owned_by_another_user_is_refused(cache, tmp_path):
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    kernel = native.NativeKernel("foreign", SOURCE, _declare)
    assert kernel.load() is None and "another user" in kernel.failure_reason


def test_untrusted_cache_falls_back_to_torch_with_a_warning(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c d a b c d\n" * 20)
    result = run_cli("word2vec", "train", str(corpus), "--min-count", "1", "--dim", "4", "--epochs", "1",
                     "--device", "cpu", "--quiet", "--out", str(tmp_path / "v.txt"),
                     env={"DLNLP_CACHE": str(cache), "DLNLP_NO_NATIVE": ""})
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "writable by group or others" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_c_sources_are_package_files():
    from dlnlp.kernels import glove_native, w2v_native

    assert "w2v_train" in w2v_native.C_SOURCE and "glove_epoch" in glove_native.C_SOURCE
    assert native.source_text("w2v_native.c") == w2v_native.C_SOURCE
