"""The CPU hot loop of word2vec as a small C kernel, compiled once with the system compiler.

On CPUs, per-pair work in word2vec is tiny (a few 100-dimensional dot products and axpys), so
any per-batch framework overhead dominates; word2vec.c and gensim both run a tight native loop
over the corpus with lock-free ("Hogwild", Recht et al. 2011) threads updating shared matrices.
This module does the same: :mod:`dlnlp.kernels.native` compiles the C source shipped beside it
(``w2v_native.c``) with ``cc -O3 -march=native`` once, caches the shared library and loads it with
ctypes (no Python or torch in the loop, the GIL released).
If no compiler is available, :func:`load_library` returns None and the trainer falls back to the
batched Torch kernels of ``dlnlp.kernels.embedding_losses`` (the path used on CUDA).

The loop follows word2vec.c / gensim's ``word2vec_inner.pyx`` detail for detail:

* subsampling: a word is kept when ``keep[w] >= rand32`` with ``keep[w] = min(1, (sqrt(f/t) + 1) t/f)
  * 2^32`` (``f`` the word count, ``t = sample * total``), drawn again each epoch;
* dynamic window: center ``i`` uses ``window - (rand % window)`` words on each side;
* negatives drawn from ``count^0.75`` with an alias table (O(1) per draw), the positive word itself
  skipped when drawn;
* hierarchical softmax over the Huffman tree: for each inner node on the target's path,
  ``g = (1 - code - sigmoid(h . v_node)) * alpha``;
* sigmoid from word2vec.c's 1000-entry table over [-6, 6] (NS: clamped outside; HS: skipped
  outside, as both references do); the index is clamped too, and a NaN dot product (overflowed
  vectors) stops every thread and sets ``progress[2]``, so no value reads outside the table;
* CBOW averages the context vectors and adds the full gradient to each of them;
* learning rate ``alpha = start - (start - end) * progress`` refreshed every 10,000 words, progress
  measured over all threads' words (out-of-vocabulary words excluded, subsampled ones included);
* lines are sentences (windows never cross them), cut into pieces of at most 10,000 words.

Random numbers use word2vec.c's 48-bit linear congruential generator, seeded per thread, so one
thread and one seed reproduce the same vectors exactly.
"""

from __future__ import annotations

import ctypes

import numpy as np

from dlnlp.kernels.native import NativeKernel, pointer, source_text

C_SOURCE = source_text("w2v_native.c")  # the C source, shipped beside this module


class Params(ctypes.Structure):
    _fields_ = [
        ("corpus", ctypes.c_void_p), ("line_ends", ctypes.c_void_p), ("n_lines", ctypes.c_int64),
        ("keep", ctypes.c_void_p),
        ("syn0", ctypes.c_void_p), ("syn1", ctypes.c_void_p), ("syn1neg", ctypes.c_void_p),
        ("dim", ctypes.c_int32), ("window", ctypes.c_int32), ("negative", ctypes.c_int32),
        ("hs", ctypes.c_int32), ("sg", ctypes.c_int32), ("cbow_mean", ctypes.c_int32),
        ("alias_prob", ctypes.c_void_p), ("alias_other", ctypes.c_void_p), ("vocab_size", ctypes.c_int32),
        ("points", ctypes.c_void_p), ("codes", ctypes.c_void_p), ("code_offsets", ctypes.c_void_p),
        ("code_lens", ctypes.c_void_p),
        ("alpha", ctypes.c_float), ("min_alpha", ctypes.c_float), ("epochs", ctypes.c_int32),
        ("total_words", ctypes.c_int64), ("progress", ctypes.c_void_p), ("seed", ctypes.c_uint64),
        ("n_threads", ctypes.c_int32), ("loss", ctypes.c_void_p), ("loss_count", ctypes.c_void_p),
    ]


def _declare(library: ctypes.CDLL) -> None:
    library.w2v_train.argtypes = [ctypes.POINTER(Params)]
    library.w2v_train.restype = ctypes.c_int
    library.w2v_build_alias.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
    library.w2v_build_alias.restype = None
    library.w2v_count_negatives.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64,
                                            ctypes.c_uint64, ctypes.c_void_p]
    library.w2v_count_kept.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_uint64,
                                       ctypes.c_void_p]


KERNEL = NativeKernel("w2v_native", C_SOURCE, _declare)
_ptr = pointer


def load_library() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use, then cached), or None when it cannot be built.

    ``DLNLP_NO_NATIVE=1`` disables it (the Torch path is used instead).
    """
    return KERNEL.load()


def failure_reason() -> str | None:
    return KERNEL.failure_reason


def build_alias(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alias table (prob float32, other int32) for sampling index i with probability weights[i] / sum."""
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    prob = np.empty(len(weights), dtype=np.float32)
    other = np.empty(len(weights), dtype=np.int32)
    library = load_library()
    if library is not None:
        library.w2v_build_alias(_ptr(weights), len(weights), _ptr(prob), _ptr(other))
        return prob, other
    scaled = weights / weights.sum() * len(weights)
    other[:] = np.arange(len(weights))
    small = [i for i in range(len(weights)) if scaled[i] < 1.0]
    large = [i for i in range(len(weights)) if scaled[i] >= 1.0]
    while small and large:
        s, big = small.pop(), large.pop()
        prob[s] = scaled[s]
        other[s] = big
        scaled[big] = (scaled[big] + scaled[s]) - 1.0
        (small if scaled[big] < 1.0 else large).append(big)
    for i in large + small:
        prob[i] = 1.0
    return prob, other


def train_native(*, corpus: np.ndarray, line_ends: np.ndarray, keep: np.ndarray | None, syn0: np.ndarray,
                 syn1: np.ndarray | None, syn1neg: np.ndarray | None, window: int, negative: int, hs: bool,
                 sg: bool, cbow_mean: bool, alias: tuple[np.ndarray, np.ndarray] | None,
                 huffman: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None, alpha: float,
                 min_alpha: float, epochs: int, seed: int, threads: int, progress: np.ndarray,
                 loss: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Run the C loop (blocking, GIL released).

    ``progress`` is an int64[3] array shared with the loop: ``[0]`` counts words done, setting
    ``[1] = 1`` stops it, and the loop sets ``[2] = 1`` (and stops) when a dot product is not finite,
    i.e. the vectors diverged. ``loss`` (float64 sums, int64 counts, each ``epochs * threads`` long)
    receives each thread's sum of the logistic loss over its predictions, per epoch (slot
    ``epoch * threads + thread``). The arguments are checked here, so the C code stays in bounds.
    """
    library = load_library()
    if library is None:
        raise RuntimeError(KERNEL.failure_reason or "native kernel unavailable")
    _check_arguments(corpus, line_ends, keep, syn0, syn1, syn1neg, window, negative, hs, alias, huffman, epochs,
                     threads, progress)
    if loss is not None:
        sums, counts = loss
        if (sums.dtype != np.float64 or counts.dtype != np.int64 or not sums.flags["C_CONTIGUOUS"]
                or not counts.flags["C_CONTIGUOUS"] or min(len(sums), len(counts)) < epochs * max(threads, 1)):
            raise ValueError("loss must be float64 sums and int64 counts of epochs * threads each")
    keepalive = [corpus, line_ends, keep, syn0, syn1, syn1neg, progress, loss]
    params = Params()
    params.corpus, params.line_ends, params.n_lines = _ptr(corpus), _ptr(line_ends), len(line_ends)
    params.keep = _ptr(keep)
    params.syn0, params.syn1, params.syn1neg = _ptr(syn0), _ptr(syn1), _ptr(syn1neg)
    params.dim, params.window, params.negative = syn0.shape[1], window, negative
    params.hs, params.sg, params.cbow_mean = int(hs), int(sg), int(cbow_mean)
    if alias is not None:
        keepalive += list(alias)
        params.alias_prob, params.alias_other = _ptr(alias[0]), _ptr(alias[1])
    params.vocab_size = syn0.shape[0]
    if huffman is not None:
        keepalive += list(huffman)
        params.points, params.codes, params.code_offsets, params.code_lens = (_ptr(a) for a in huffman)
    params.alpha, params.min_alpha, params.epochs = alpha, min_alpha, epochs
    params.total_words = len(corpus)
    params.progress = _ptr(progress)
    params.seed = seed & 0xFFFFFFFFFFFF
    params.n_threads = threads
    if loss is not None:
        params.loss, params.loss_count = _ptr(loss[0]), _ptr(loss[1])
    rc = library.w2v_train(ctypes.byref(params))
    del keepalive
    if rc:
        raise RuntimeError("could not start the training threads")


INT32_MAX = 2**31 - 1


def _check_arguments(corpus, line_ends, keep, syn0, syn1, syn1neg, window, negative, hs, alias, huffman, epochs,
                     threads, progress) -> None:
    """Shapes, types and ranges the C loop relies on (it indexes with these numbers unchecked)."""
    vocab, dim = syn0.shape
    arrays = [("corpus", corpus, np.int32), ("line_ends", line_ends, np.int64), ("syn0", syn0, np.float32),
              ("progress", progress, np.int64)]
    arrays += [(name, a, t) for name, a, t in (("keep", keep, np.uint32), ("syn1", syn1, np.float32),
                                                ("syn1neg", syn1neg, np.float32)) if a is not None]
    for name, array, dtype in arrays:
        if array.dtype != dtype or not array.flags["C_CONTIGUOUS"]:
            raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array")
    if len(progress) < 3:
        raise ValueError("progress must hold 3 counters")
    if not (1 <= dim <= INT32_MAX and 1 <= vocab <= INT32_MAX and 1 <= window <= INT32_MAX
            and 0 <= negative < INT32_MAX and 1 <= epochs <= INT32_MAX and 1 <= threads <= INT32_MAX):
        raise ValueError("dim, vocabulary, window, negative, epochs or threads out of range")
    if len(corpus) and (int(corpus.min()) < 0 or int(corpus.max()) >= vocab):
        raise ValueError("corpus ids must be in [0, vocabulary size)")
    if len(line_ends) and (line_ends[-1] != len(corpus) or (np.diff(line_ends) < 0).any() or line_ends[0] < 0):
        raise ValueError("line_ends must be non-decreasing and end at the corpus length")
    if keep is not None and len(keep) != vocab:
        raise ValueError("keep must hold one threshold per word")
    if negative > 0 and (syn1neg is None or syn1neg.shape != syn0.shape or alias is None or len(alias[0]) != vocab):
        raise ValueError("negative sampling needs syn1neg and an alias table over the vocabulary")
    if hs:
        if syn1 is None or huffman is None or syn1.shape[1] != dim or len(huffman[3]) != vocab:
            raise ValueError("hierarchical softmax needs syn1 and a Huffman tree over the vocabulary")
        points = huffman[0]
        if len(points) and (int(points.min()) < 0 or int(points.max()) >= syn1.shape[0]):
            raise ValueError("Huffman points must index rows of syn1")


def count_negative_draws(alias: tuple[np.ndarray, np.ndarray], draws: int, seed: int = 1) -> np.ndarray:
    """How often the training loop's negative sampler picks each word in ``draws`` draws (for tests)."""
    library = load_library()
    if library is None:
        raise RuntimeError(KERNEL.failure_reason or "native kernel unavailable")
    prob, other = alias
    counts = np.zeros(len(prob), dtype=np.int64)
    library.w2v_count_negatives(_ptr(prob), _ptr(other), len(prob), draws, seed, _ptr(counts))
    return counts


def count_kept(corpus: np.ndarray, keep: np.ndarray, vocab_size: int, seed: int = 1) -> np.ndarray:
    """How many tokens of each word the training loop's subsampling keeps in one pass (for tests)."""
    library = load_library()
    if library is None:
        raise RuntimeError(KERNEL.failure_reason or "native kernel unavailable")
    corpus = np.ascontiguousarray(corpus, dtype=np.int32)
    keep = np.ascontiguousarray(keep, dtype=np.uint32)
    counts = np.zeros(vocab_size, dtype=np.int64)
    library.w2v_count_kept(_ptr(corpus), len(corpus), _ptr(keep), seed, _ptr(counts))
    return counts
