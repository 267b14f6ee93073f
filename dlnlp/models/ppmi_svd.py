"""Count-based word vectors: a PPMI word-context matrix factored by truncated SVD.

The classic distributional recipe (Church and Hanks 1990; Bullinaria and Levy 2007; Levy, Goldberg
and Dagan, TACL 2015, "Improving distributional similarity with lessons learned from word
embeddings"):

1. count word-context co-occurrences ``#(w, c)`` in a window (shared with GloVe:
   :mod:`dlnlp.kernels.cooccur`);
2. PMI with context-distribution smoothing and an optional shift::

       PMI_alpha(w, c) = log( #(w,c) * sum_c' #(c')^alpha / (#(w) * #(c)^alpha) ) - log k
       PPMI = max(PMI, 0)

   ``alpha = 0.75`` (as word2vec's negative-sampling distribution) lowers the PMI of rare contexts;
   ``k`` is the SGNS-inspired shift (``k = 1``: none). Unobserved pairs have PMI -inf, so PPMI stays
   sparse (only observed pairs can be positive);
3. truncated SVD ``M ~ U_d Sigma_d V_d^T`` (randomized, Halko et al. 2011, ``torch.svd_lowrank``
   on the sparse matrix; or Lanczos through scipy's ``svds``), word vectors ``U_d Sigma_d^p``:
   ``p = 1`` is the textbook ``U Sigma``, Levy et al. found ``p = 0.5`` or ``0`` better on similarity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dlnlp.errors import DlnlpError, UsageError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.kernels.cooccur import DEFAULT_MEMORY_BYTES, CooccurrenceCounter, CooccurrenceMatrix, encode_lines
from dlnlp.models.vocab import Vocabulary
from dlnlp.settings import DictConfig

SVD_METHODS = ("randomized", "lanczos")


@dataclass
class PPMIConfig(DictConfig):
    dim: int = 100
    cds: float = 0.75  # context-distribution smoothing exponent (1: none)
    shift: float = 1.0  # k in PMI - log k (1: no shift)
    positive: bool = True  # PPMI (max(PMI, 0)); False keeps negative PMI of observed pairs
    eig: float = 0.5  # p in U Sigma^p
    svd: str = "randomized"
    oversample: int = 10
    power_iterations: int = 4
    seed: int = 0

    def validate(self) -> None:
        """Each option in its meaningful range (one-line errors naming the option as typed)."""
        import math

        from dlnlp.errors import OptionError, check_int

        check_int("--dim", self.dim, 1, 2**31 - 1)
        if not (math.isfinite(self.cds) and 0 < self.cds <= 1):
            raise OptionError(f"--cds (context-distribution smoothing) must be in (0, 1], got {self.cds:g}")
        if not (math.isfinite(self.shift) and self.shift > 0):
            raise OptionError(f"--shift must be > 0, got {self.shift:g}")
        if not (math.isfinite(self.eig) and 0 <= self.eig <= 1):  # Levy et al. (2015) weigh by Sigma^p, p in [0, 1]
            raise OptionError(f"--eig must be in [0, 1], got {self.eig:g}")
        if self.svd not in SVD_METHODS:
            raise UsageError(f"--svd must be one of {', '.join(SVD_METHODS)}, got {self.svd!r}")
        check_int("--power-iterations", self.power_iterations, 0, 100)
        check_int("oversample", self.oversample, 0, 2**31 - 1)



def pmi_values(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, vocab_size: int, *, cds: float = 0.75,
               shift: float = 1.0, positive: bool = True) -> np.ndarray:
    """(P)PMI of each observed entry, from the co-occurrence counts (COO arrays).

    Marginals are the matrix's own row and column sums, as Levy et al. compute them.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    word_sums = np.bincount(rows, weights=counts, minlength=vocab_size)
    context_sums = np.bincount(cols, weights=counts, minlength=vocab_size)
    smoothed = context_sums ** cds
    # P(w,c) / (P(w) P_a(c)) = #(w,c) / #(w) / (#(c)^a / sum_c' #(c')^a): the total count cancels.
    pmi = (np.log(counts) - np.log(word_sums[rows]) - np.log(smoothed[cols])
           + np.log(smoothed.sum()) - np.log(shift))
    if positive:
        np.maximum(pmi, 0.0, out=pmi)
    return pmi


def truncated_svd(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], k: int, *,
                  method: str = "randomized", oversample: int = 10, power_iterations: int = 4,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest singular triplets ``(U, S, Vt)`` of a sparse matrix given as COO arrays.

    ``randomized``: ``torch.svd_lowrank`` (Halko et al. 2011) on a sparse tensor with ``oversample``
    extra columns and ``power_iterations`` subspace iterations. ``lanczos``: scipy's ``svds`` (ARPACK).
    Singular values come in descending order.
    """
    k = min(k, min(shape))
    if method == "lanczos":
        try:
            import scipy.sparse
            from scipy.sparse.linalg import svds
        except ImportError as exc:  # scipy is an optional dependency
            raise RuntimeError("the lanczos SVD needs scipy (pip install scipy), or use the randomized one") from exc
        matrix = scipy.sparse.csr_matrix((np.asarray(values, dtype=np.float64),
                                          (np.asarray(rows), np.asarray(cols))), shape=shape)
        if k >= min(shape):
            u, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        else:
            rng = np.random.default_rng(seed)
            u, s, vt = svds(matrix, k=k, v0=rng.uniform(-1, 1, size=min(shape)))
        order = np.argsort(-s)[:k]
        return u[:, order], s[order], vt[order]
    if method != "randomized":
        raise ValueError(f"method must be one of {', '.join(SVD_METHODS)}")
    import torch

    indices = torch.from_numpy(np.stack([np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)]))
    matrix = torch.sparse_coo_tensor(indices, torch.from_numpy(np.asarray(values, dtype=np.float64)), shape,
                                     check_invariants=False)
    matrix = matrix.coalesce()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        u, s, v = torch.svd_lowrank(matrix, q=min(k + oversample, min(shape)), niter=power_iterations)
    finally:
        torch.random.set_rng_state(state)
    return u[:, :k].numpy(), s[:k].numpy(), v[:, :k].T.numpy()


def ppmi_svd_vectors(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, vocab_size: int,
                     config: PPMIConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Word vectors ``U Sigma^p`` (float32, one row per word) and the singular values."""
    config = config or PPMIConfig()
    config.validate()
    check_svd_size(config, vocab_size, len(rows))
    values = pmi_values(rows, cols, counts, vocab_size, cds=config.cds, shift=config.shift,
                        positive=config.positive)
    keep = values != 0
    u, s, _ = truncated_svd(np.asarray(rows)[keep], np.asarray(cols)[keep], values[keep], (vocab_size, vocab_size),
                            config.dim, method=config.svd, oversample=config.oversample,
                            power_iterations=config.power_iterations, seed=config.seed)
    # Fix each component's sign (largest-magnitude entry positive) so runs are comparable.
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1
    vectors = (u * signs) * (s ** config.eig)
    return vectors.astype(np.float32), s


def check_svd_size(config: PPMIConfig, vocab_size: int, nnz: int = 0) -> None:
    """Fail before the SVD when ``--dim`` exceeds the vocabulary (a rank-``V`` matrix has ``V``
    singular vectors) or when the factorization clearly needs more memory than the host has.

    Randomized SVD keeps about six ``V x (dim + oversample)`` float64 arrays (the sketch, its QR
    factors, the power iterations' products, U); Lanczos at full rank densifies the ``V x V``
    matrix and factors it (three ``V x V`` arrays), below it ARPACK keeps a few ``V x 2 dim``
    Lanczos vectors. Both keep the sparse matrix (``nnz`` values with two int64 indices).
    """
    from dlnlp.kernels.memory import Need, check_fits, dense_needs

    if config.dim > vocab_size:
        raise DlnlpError(f"--dim {config.dim} exceeds the vocabulary size ({vocab_size} words): the PPMI matrix "
                         f"has at most {vocab_size} singular vectors; use --dim {vocab_size} or less "
                         "(or lower --min-count for a larger vocabulary)")
    k = config.dim
    if config.svd == "randomized":
        dense = dense_needs(f"the randomized SVD of {vocab_size:,} x {vocab_size:,} to {k} dimensions", vocab_size,
                            min(k + config.oversample, vocab_size), copies=6, itemsize=8, lower="--dim")
    elif k >= vocab_size:
        dense = dense_needs(f"the dense {vocab_size:,} x {vocab_size:,} SVD", vocab_size, vocab_size, copies=3,
                            itemsize=8, lower="--dim (below the vocabulary size) or raise --min-count")
    else:
        dense = dense_needs(f"the Lanczos SVD of {vocab_size:,} words to {k} dimensions", vocab_size,
                            min(2 * k + 1, vocab_size), copies=2, itemsize=8, lower="--dim")
    check_fits([dense, Need(f"the PPMI matrix ({nnz:,} entries)", nnz * 24 * 2, "--window or raise --min-count")],
               "cpu", task="ppmi-svd")


# Co-occurrence counting makes one pass per window distance; glove.c's default is 15.
MAX_WINDOW = 1000


def check_counting_options(window: int, min_count: int, memory: float, max_vocab: int | None = None) -> None:
    """The co-occurrence options' bounds, checked before any work (one-line user errors); ``memory`` in any unit."""
    import math

    from dlnlp.errors import OptionError, check_int

    check_int("--window", window, 1, MAX_WINDOW)
    check_int("--min-count", min_count, 1, 2**63 - 1)
    if max_vocab is not None:
        check_int("--max-vocab", max_vocab, 1, 2**31 - 1)
    if not (math.isfinite(memory) and memory > 0):
        raise OptionError(f"--memory must be > 0 (GiB), got {memory:g}")


def corpus_cooccurrence(inputs: Sequence[str] | None, options: CorpusOptions | None = None, *, min_count: int = 5,
                        max_vocab: int | None = None, window: int = 10, symmetric: bool = True,
                        distance_weighting: bool = True, cross_lines: bool = False,
                        memory_bytes: int = DEFAULT_MEMORY_BYTES, tmp_dir: str | os.PathLike | None = None,
                        lines_per_chunk: int = 16384, on_lines: Callable[[int], None] | None = None,
                        ) -> tuple[Vocabulary, CooccurrenceMatrix, dict]:
    """Stanford's ``vocab_count`` + ``cooccur`` over a corpus: two streaming passes (shared with GloVe).

    Pass 1 counts words (``Vocabulary``: keep ``count >= min_count``, most frequent first, at most
    ``max_vocab``); pass 2 maps each chunk of lines to ids and counts co-occurrences within
    ``memory_bytes``. Standard input is spooled once to a temporary file for the second pass.
    Returns the vocabulary, the matrix and timing/size statistics.
    """
    import shutil
    import tempfile
    from collections import Counter

    from dlnlp.io.corpus import STDIN, empty_input_error, iter_chunks, iter_lines, resolve_inputs

    check_counting_options(window, min_count, memory_bytes)
    specs = given = resolve_inputs(inputs)
    spool_dir = None
    stats: dict = {}
    started = time.perf_counter()
    try:
        if STDIN in specs:
            spool_dir = tempfile.mkdtemp(prefix="dlnlp-stdin-", dir=tmp_dir)
            spooled = os.path.join(spool_dir, "stdin.txt")
            with open(spooled, "w", encoding="utf-8") as handle:
                for line in iter_lines([STDIN], options, require_text=False):
                    handle.write(line + "\n")
            specs = [spooled if s == STDIN else s for s in specs]
        counts: Counter[str] = Counter()
        for chunk in iter_chunks(iter_lines(specs, options, require_text=False), lines_per_chunk):
            for line in chunk:
                counts.update(line.split())
        total_tokens = sum(counts.values())
        if not total_tokens:  # named as given: "<stdin>", not the spooled copy
            raise empty_input_error(given)
        vocab = Vocabulary.from_counts(counts, min_count=min_count, max_vocab=max_vocab, total_tokens=total_tokens)
        del counts
        stats["vocab_seconds"] = time.perf_counter() - started
        if len(vocab) == 0:
            raise DlnlpError(f"no word occurs at least {min_count} times (lower --min-count)")
        counter = CooccurrenceCounter(len(vocab), window=window, symmetric=symmetric,
                                      distance_weighting=distance_weighting, cross_lines=cross_lines,
                                      memory_bytes=memory_bytes, tmp_dir=tmp_dir)
        count_started = time.perf_counter()
        for chunk in iter_chunks(iter_lines(specs, options), lines_per_chunk):
            ids, ends = encode_lines(chunk, vocab.index)
            counter.add_ids(ids, ends)
            if on_lines is not None:
                on_lines(len(chunk))
        matrix = counter.finish()
    finally:
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)
    stats.update({
        "cooccur_seconds": time.perf_counter() - count_started, "corpus_tokens": total_tokens,
        "vocab_tokens": counter.tokens, "pairs": counter.pairs, "nnz": matrix.nnz,
        "shards": matrix.shards_written, "dense_size": counter.dense_size,
    })
    return vocab, matrix, stats
