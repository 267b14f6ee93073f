"""GloVe's CPU training loop as a small C kernel (lock-free threads, glove.c's per-entry AdaGrad).

On a CPU the work per co-occurrence entry is two 100-dimensional dot/axpy passes, so a batched
framework step spends most of its time materializing gathered rows and per-entry gradients.
Stanford's ``glove.c`` runs a tight loop over the shuffled entries with lock-free ("Hogwild")
threads; this kernel does the same, built and cached by the shared loader
(:mod:`dlnlp.kernels.native`: ``cc -O3 -march=native``, cache under ``$DLNLP_CACHE``,
``DLNLP_NO_NATIVE=1`` to disable). The batched Torch kernels of :mod:`dlnlp.kernels.glove_loss`
are the GPU path and the fallback.

Per entry ``(i, j, log X_ij, f(X_ij))``, as glove.c (current version) does it::

    diff  = w_i . w~_j + b_i + b~_j - log X_ij ;  fdiff = f(X_ij) * diff ;  cost += 0.5 fdiff diff
    for each component:  t1 = clip(fdiff * w~_j) * lr ;  t2 = clip(fdiff * w_i) * lr
                         w_i  -= t1 / sqrt(G_i) ;  w~_j -= t2 / sqrt(G~_j) ;  G_i += t1^2 ;  G~_j += t2^2
    biases:              t = fdiff * bias_lr ;  b_i -= t / sqrt(Gb_i) ;  b~_j -= t / sqrt(Gb~_j) ;  Gb += t^2

A non-finite difference skips the entry and a non-finite vector update is dropped, as glove.c does.
Rows use the model's augmented layout (stride ``dim + 2``; the word bias at column ``dim``, the
context bias at ``dim + 1``), so the Torch and native paths share one set of parameters.
"""

from __future__ import annotations

import ctypes

import numpy as np

from dlnlp.kernels.native import NativeKernel, pointer, source_text

C_SOURCE = source_text("glove_native.c")  # the C source, shipped beside this module

# No -ffast-math: the loop relies on isfinite() to skip non-finite updates, as glove.c does.
CFLAGS = ("-O3", "-march=native", "-funroll-loops", "-fPIC", "-shared", "-pthread")


class GloveParams(ctypes.Structure):
    _fields_ = [
        ("rows", ctypes.c_void_p), ("cols", ctypes.c_void_p), ("log_x", ctypes.c_void_p),
        ("weight", ctypes.c_void_p), ("n", ctypes.c_int64),
        ("word", ctypes.c_void_p), ("context", ctypes.c_void_p),
        ("gsq_word", ctypes.c_void_p), ("gsq_context", ctypes.c_void_p),
        ("dim", ctypes.c_int32), ("stride", ctypes.c_int32),
        ("lr", ctypes.c_float), ("bias_lr", ctypes.c_float), ("clip", ctypes.c_float),
        ("n_threads", ctypes.c_int32), ("cost", ctypes.c_void_p), ("progress", ctypes.c_void_p),
    ]


def _declare(library: ctypes.CDLL) -> None:
    library.glove_epoch.argtypes = [ctypes.POINTER(GloveParams)]
    library.glove_epoch.restype = ctypes.c_int


KERNEL = NativeKernel("glove_native", C_SOURCE, _declare, CFLAGS)


def load_library() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use, then cached), or None when it cannot be built."""
    return KERNEL.load()


def failure_reason() -> str | None:
    return KERNEL.failure_reason


def train_epoch_native(*, rows: np.ndarray, cols: np.ndarray, log_x: np.ndarray, weight: np.ndarray,
                       word: np.ndarray, context: np.ndarray, gsq_word: np.ndarray, gsq_context: np.ndarray,
                       dim: int, lr: float, bias_lr: float, clip: float | None, threads: int,
                       progress: np.ndarray) -> float:
    """One pass of glove.c's loop over the entries in the given order (GIL released); returns the cost sum.

    ``word``/``context``/``gsq_*`` are float32 (V, dim + 2) arrays updated in place; ``progress``
    an int64[2] array (entries done, stop flag) another thread may read and set.
    """
    library = load_library()
    if library is None:
        raise RuntimeError(failure_reason() or "native kernel unavailable")
    for name, array, dtype in (("rows", rows, np.int32), ("cols", cols, np.int32), ("log_x", log_x, np.float32),
                               ("weight", weight, np.float32), ("word", word, np.float32),
                               ("context", context, np.float32), ("gsq_word", gsq_word, np.float32),
                               ("gsq_context", gsq_context, np.float32), ("progress", progress, np.int64)):
        if array.dtype != dtype:
            raise TypeError(f"{name} must be {np.dtype(dtype).name}, got {array.dtype}")
    vocab, stride = word.shape
    if stride != dim + 2 or any(a.shape != word.shape for a in (context, gsq_word, gsq_context)):
        raise ValueError("word, context and the accumulators must all be (V, dim + 2)")
    if not (len(rows) == len(cols) == len(log_x) == len(weight)) or len(progress) < 2:
        raise ValueError("rows, cols, log_x and weight must have one entry each; progress two counters")
    if len(rows) and (min(int(rows.min()), int(cols.min())) < 0 or max(int(rows.max()), int(cols.max())) >= vocab):
        raise ValueError("co-occurrence indices out of range")
    threads = max(1, min(int(threads), 2**31 - 1))
    cost = np.zeros(threads, dtype=np.float64)
    params = GloveParams()
    params.rows, params.cols, params.log_x, params.weight = pointer(rows), pointer(cols), pointer(log_x), pointer(weight)
    params.n = len(rows)
    params.word, params.context = pointer(word), pointer(context)
    params.gsq_word, params.gsq_context = pointer(gsq_word), pointer(gsq_context)
    params.dim, params.stride = dim, word.shape[1]
    params.lr, params.bias_lr = lr, bias_lr
    params.clip = float("inf") if clip is None else clip
    params.n_threads = threads
    params.cost, params.progress = pointer(cost), pointer(progress)
    library.glove_epoch(ctypes.byref(params))
    return float(cost.sum())
