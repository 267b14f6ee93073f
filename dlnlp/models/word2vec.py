"""word2vec: skip-gram and CBOW with negative sampling or hierarchical softmax (Mikolov et al. 2013a, b).

Skip-gram predicts each word of a context from the center word's neighbor; CBOW predicts the
center word from the mean of its context vectors. With input vectors ``v`` (``syn0``), each
prediction of target ``w`` from hidden vector ``h`` (``h = v_c`` for skip-gram, ``h = mean_c v_c``
for CBOW) is trained with one of

* negative sampling:  ``log s(h.u_w) + sum_{k=1..K} log s(-h.u_{n_k})``, ``n_k ~ count^0.75``
  (output vectors ``u``, ``syn1neg``);
* hierarchical softmax: ``sum_j log s((1 - 2 c_j) h.v'_{p_j})`` over the inner nodes ``p_j`` of the
  target's path in a Huffman tree built from the counts, with branch bits ``c_j`` (one vector per
  inner node, ``syn1``; O(log V) per prediction, frequent words have short paths).

Around the objective, the details of the original tool (word2vec.c) and of gensim:

* the vocabulary comes from one counting pass, ``min_count`` / ``max_vocab`` (``dlnlp.models.vocab``);
* frequent words are subsampled each epoch, keeping word ``w`` with probability
  ``min(1, (sqrt(f_w / t) + 1) t / f_w)`` where ``t = sample * (total in-vocabulary count)``
  (the formula of word2vec.c and gensim, a smoothed form of the paper's ``1 - sqrt(t / f)``);
* each center word draws its window ``b`` uniformly from ``1..window`` (closer words count more);
* the learning rate decays linearly from ``lr`` to ``min_lr`` over all epochs' words;
* input vectors start uniform in ``[-0.5/dim, 0.5/dim]``, output vectors at zero.

The hot loop runs in ``dlnlp.kernels.w2v_native`` on CPUs (a compiled loop with lock-free
threads, as word2vec.c and gensim do) and as batched Torch kernels (``dlnlp.kernels.
embedding_losses``) on CUDA or when no C compiler is available.
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import DlnlpError, ModelDirError, UsageError, check_int
from dlnlp.io.vectors import KeyedVectors
from dlnlp.kernels.memory import MAX_WIDTH
from dlnlp.models.registry import Family, register
from dlnlp.models.vocab import Vocabulary

KIND = "word2vec"
MAX_SENTENCE = 10000  # longer lines are cut into pieces of this many words (gensim's limit)
# Documented caps of the options (far beyond any useful setting; the paper uses 5-20 negatives,
# windows of 2-10 and 100-1000 dimensions). They keep every number the native loop gets 32-bit.
MAX_NEGATIVE = 1000
MAX_WINDOW = 1000

MAX_EPOCHS = 100_000
MAX_WORKERS = 1024
MAX_BATCH = 1 << 24
INT32_MAX = 2**31 - 1


class VectorsDiverged(DlnlpError):
    """Training made the vectors overflow to nan or inf (the learning rate is too high)."""


@dataclass
class Word2VecConfig:
    arch: str = "skipgram"          # skipgram | cbow
    loss: str = "ns"                # ns | hs | both
    negative: int = 5
    window: int = 5
    min_count: int = 5
    max_vocab: int | None = None
    sample: float = 1e-3
    dim: int = 100
    epochs: int = 5
    lr: float = 0.025
    min_lr: float = 0.0001
    workers: int = 0                # 0: all cores
    batch_size: int = 0             # Torch path: center words per step (0: auto)
    seed: int = 1
    cbow_mean: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Every option in a range that makes sense (one-line errors naming the option as typed).

        The bounds keep the numbers that reach the native loop meaningful and within its types: a
        learning rate of 1 or more makes plain SGD on dot products overflow within a few words, more
        than ``MAX_NEGATIVE`` negatives per prediction or a window wider than ``MAX_WINDOW`` only
        burn time, and the counts are 32-bit in the C loop.
        """
        if self.arch not in ("skipgram", "cbow"):
            raise UsageError(f"--arch {self.arch}: expected skipgram or cbow")
        if self.loss not in ("ns", "hs", "both"):
            raise UsageError(f"--loss {self.loss}: expected ns, hs or both")
        check_int("--negative", self.negative, 1 if self.use_ns else 0, MAX_NEGATIVE)
        check_int("--window", self.window, 1, MAX_WINDOW)
        check_int("--min-count", self.min_count, 1, INT32_MAX)
        if self.max_vocab is not None:
            check_int("--max-vocab", self.max_vocab, 1, INT32_MAX)
        check_int("--dim", self.dim, 1, MAX_WIDTH)
        check_int("--epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("--workers", self.workers, 0, MAX_WORKERS, " (0: all cores)")
        check_int("--batch-size", self.batch_size, 0, MAX_BATCH, " (0: auto)")
        check_int("--seed", self.seed, 0, 2**63 - 1)
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise DlnlpError(f"--lr must be > 0 and < 1, got {self.lr:g}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise DlnlpError(f"--min-lr must be in [0, --lr] = [0, {self.lr:g}], got {self.min_lr:g}")
        if not (math.isfinite(self.sample) and 0 <= self.sample <= 1):
            raise DlnlpError(f"--sample must be in [0, 1] (0: off), got {self.sample:g}")

    @property
    def use_ns(self) -> bool:
        return self.loss in ("ns", "both")

    @property
    def use_hs(self) -> bool:
        return self.loss in ("hs", "both")


# -- the pieces of the method -----------------------------------------------------------------
@dataclass
class HuffmanTree:
    """Each word's path: ``points`` (inner-node ids, root first) and ``codes`` (branch bits), flattened."""

    points: np.ndarray   # int32, concatenated paths
    codes: np.ndarray    # uint8, concatenated codes
    offsets: np.ndarray  # int64, start of word i's path
    lengths: np.ndarray  # int32, path length of word i

    def path(self, word: int) -> tuple[list[int], list[int]]:
        start, length = int(self.offsets[word]), int(self.lengths[word])
        return (self.points[start:start + length].tolist(), self.codes[start:start + length].tolist())

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """V x L tables of points and codes (padding: node 0, code 0) for the batched kernels."""
        width = int(self.lengths.max()) if len(self.lengths) else 0
        points = np.zeros((len(self.lengths), width), dtype=np.int64)
        codes = np.zeros((len(self.lengths), width), dtype=np.uint8)
        rows = np.repeat(np.arange(len(self.lengths)), self.lengths)
        cols = np.arange(len(self.points)) - np.repeat(self.offsets, self.lengths)
        points[rows, cols] = self.points
        codes[rows, cols] = self.codes
        return points, codes


def build_huffman_tree(counts: np.ndarray) -> HuffmanTree:
    """Huffman coding of the words by count, as word2vec.c's CreateBinaryTree.

    The ``V - 1`` inner nodes are numbered so that the root is ``V - 2``; at each merge of the two
    lightest nodes, the lighter gets bit 0 and the other bit 1. Paths list inner nodes from the root
    down, codes the bit taken at each of them, so ``len(path(w)) = len(code(w))``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    vocab_size = len(counts)
    if vocab_size < 2:
        raise DlnlpError("hierarchical softmax needs a vocabulary of at least 2 words")
    # Nodes 0..V-1 are words, V..2V-2 inner nodes; a heap of (weight, tiebreak, node).
    heap = [(int(c), i, i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = np.zeros(2 * vocab_size - 1, dtype=np.int64)
    bit = np.zeros(2 * vocab_size - 1, dtype=np.uint8)
    for inner in range(vocab_size, 2 * vocab_size - 1):
        w1, _, n1 = heapq.heappop(heap)
        w2, _, n2 = heapq.heappop(heap)
        parent[n1] = parent[n2] = inner
        bit[n2] = 1
        heapq.heappush(heap, (w1 + w2, inner, inner))
    root = 2 * vocab_size - 2
    # Walk every word up to the root at once (one numpy step per tree level), leaf end first.
    node = np.arange(vocab_size)
    lengths = np.zeros(vocab_size, dtype=np.int32)
    up_nodes, up_bits = [], []
    active = node != root
    while active.any():
        up_bits.append(np.where(active, bit[node], 0))
        node = np.where(active, parent[node], node)
        up_nodes.append(np.where(active, node - vocab_size, 0))
        lengths += active
        active = node != root
    nodes_up = np.stack(up_nodes, axis=1)
    bits_up = np.stack(up_bits, axis=1)
    # Reverse each row's first `length` entries so that paths run root first.
    steps = np.arange(nodes_up.shape[1])
    source = lengths[:, None] - 1 - steps[None, :]
    valid = source >= 0
    rows = np.broadcast_to(np.arange(vocab_size)[:, None], source.shape)
    points = nodes_up[rows[valid], source[valid]].astype(np.int32)
    codes = bits_up[rows[valid], source[valid]].astype(np.uint8)
    offsets = np.zeros(vocab_size, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths[:-1], dtype=np.int64)
    return HuffmanTree(points, codes, offsets, lengths)


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each word under subsampling threshold ``sample`` (1 everywhere for 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def subsample_thresholds(counts: np.ndarray, sample: float) -> np.ndarray | None:
    """Keep probabilities scaled to 32 bits for the native loop (gensim's ``sample_int``): a token of
    word w is kept when ``threshold[w] >= rand32``. None when subsampling is off."""
    if sample <= 0:
        return None
    prob = keep_probabilities(counts, sample)
    return np.minimum(np.round(prob * 2.0**32), 2.0**32 - 1).astype(np.uint32)


def noise_weights(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Unnormalized noise distribution for negative sampling: ``count^0.75``."""
    return np.power(np.asarray(counts, dtype=np.float64), power)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- the model --------------------------------------------------------------------------------
class Word2Vec:
    """Vocabulary, input vectors ``syn0`` and output vectors (``syn1neg`` for NS, ``syn1`` for HS)."""

    def __init__(self, vocab: Vocabulary, config: Word2VecConfig):
        config.validate()
        if len(vocab) == 0:
            raise DlnlpError(f"no word occurs at least {config.min_count} times (lower --min-count)")
        self.vocab = vocab
        self.config = config
        rng = np.random.default_rng(config.seed)
        dim = config.dim
        self.syn0 = ((rng.random((len(vocab), dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
        self.syn1neg = np.zeros((len(vocab), dim), dtype=np.float32) if config.use_ns else None
        self.syn1 = np.zeros((max(len(vocab) - 1, 1), dim), dtype=np.float32) if config.use_hs else None
        self.huffman = build_huffman_tree(vocab.counts) if config.use_hs else None
        self.stats: dict[str, Any] = {}
        # One record per epoch trained: {"epoch", "loss", "predictions"}; the loss is the mean over
        # the epoch's predictions of -log sigmoid(+-v'.h) (gensim's compute_loss, as a mean).
        self.history: list[dict[str, Any]] = []

    # -- training -----------------------------------------------------------------------------
    def train(self, corpus: np.ndarray, line_ends: np.ndarray, *, device: str = "auto", kernel: str = "auto",
              on_progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
              ) -> dict[str, Any]:
        """Train on ``corpus`` (in-vocabulary token ids, int32) cut into sentences at ``line_ends``.

        ``kernel`` is ``auto`` (the compiled loop on CPU, batched Torch on CUDA), ``native`` or
        ``torch`` (the batched Torch kernels on ``device``, also on CPU).
        ``on_progress(words_done, words_total)`` is called about twice a second; setting ``stop``
        ends training early (the vectors trained so far are kept). Returns statistics.
        """
        corpus = np.ascontiguousarray(corpus, dtype=np.int32)
        line_ends = np.ascontiguousarray(line_ends, dtype=np.int64)
        backend = self._choose_backend(device, kernel)
        start = time.perf_counter()
        if backend == "native":
            done = self._train_native(corpus, line_ends, on_progress, stop)
        else:
            done = self._train_torch(corpus, line_ends, backend, on_progress, stop)
        self.check_finite(done, len(corpus) * self.config.epochs)
        seconds = time.perf_counter() - start
        self.stats = {"backend": backend, "train_seconds": seconds, "words_trained": int(done),
                      "corpus_words": int(len(corpus)), "words_per_second": done / max(seconds, 1e-9),
                      "workers": self.workers if backend in ("native", "cpu") else 1,
                      "stopped_early": bool(stop is not None and stop.is_set())}
        return self.stats

    def check_finite(self, done: int | None = None, total: int | None = None) -> None:
        """Raise :class:`VectorsDiverged` when any vector holds nan or inf (never save such vectors)."""
        bad = 0
        for matrix in (self.syn0, self.syn1neg, self.syn1):
            if matrix is not None:
                bad = max(bad, int((~np.isfinite(matrix)).any(axis=1).sum()))
        if bad:
            raise VectorsDiverged(_diverged_message(bad, len(self.vocab), self.config.lr, done, total))

    @property
    def workers(self) -> int:
        return self.config.workers or default_workers()

    def _choose_backend(self, device: str, kernel: str = "auto") -> str:
        from dlnlp.kernels import w2v_native

        if kernel not in ("auto", "native", "torch"):
            raise UsageError(f"--kernel {kernel}: expected auto, native or torch")
        spec = (device or "auto").lower()
        if kernel == "native":
            if spec not in ("auto", "cpu"):
                raise DlnlpError(f"--kernel native runs on the CPU, not --device {device}")
            if w2v_native.load_library() is None:
                raise DlnlpError(f"--kernel native: {w2v_native.failure_reason()}")
            return "native"
        if kernel == "torch":
            from dlnlp.kernels.device import resolve_device

            return str(resolve_device(spec))
        if spec == "cpu" or (spec == "auto" and not _cuda_available()):
            if w2v_native.load_library() is not None:
                return "native"
            from dlnlp.progress import warn

            warn(f"{w2v_native.failure_reason()}; using the (slower) batched Torch kernels")
            return "cpu"
        from dlnlp.kernels.device import resolve_device

        return str(resolve_device(spec))

    def _train_native(self, corpus: np.ndarray, line_ends: np.ndarray,
                      on_progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        from dlnlp.kernels import w2v_native

        cfg = self.config
        keep = subsample_thresholds(self.vocab.counts, cfg.sample)
        alias = w2v_native.build_alias(noise_weights(self.vocab.counts)) if cfg.use_ns else None
        huffman = None
        if self.huffman is not None:
            h = self.huffman
            huffman = (h.points, h.codes, h.offsets, h.lengths)
        progress = np.zeros(3, dtype=np.int64)  # words done, stop flag, diverged flag
        total = len(corpus) * cfg.epochs
        threads = min(self.workers, max(1, len(line_ends)))
        loss = (np.zeros(cfg.epochs * threads, dtype=np.float64), np.zeros(cfg.epochs * threads, dtype=np.int64))
        error: list[BaseException] = []

        def run() -> None:
            try:
                w2v_native.train_native(
                    corpus=corpus, line_ends=line_ends, keep=keep, syn0=self.syn0, syn1=self.syn1,
                    syn1neg=self.syn1neg, window=cfg.window, negative=cfg.negative if cfg.use_ns else 0,
                    hs=cfg.use_hs, sg=cfg.arch == "skipgram", cbow_mean=cfg.cbow_mean, alias=alias,
                    huffman=huffman, alpha=cfg.lr, min_alpha=cfg.min_lr, epochs=cfg.epochs, seed=cfg.seed,
                    threads=threads, progress=progress, loss=loss)
            except BaseException as exc:  # re-raised in the caller's thread
                error.append(exc)

        worker = threading.Thread(target=run, name="word2vec-native", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
                if stop is not None and stop.is_set():
                    progress[1] = 1
                if on_progress is not None:
                    on_progress(int(progress[0]), total)
        except KeyboardInterrupt:
            progress[1] = 1  # the C loop checks the flag once per line
            worker.join()
            raise
        if error:
            raise error[0]
        if progress[2]:  # a dot product overflowed: the loop stopped all threads
            self.check_finite(int(progress[0]), total)
            raise VectorsDiverged(_diverged_message(None, len(self.vocab), cfg.lr, int(progress[0]), total))
        sums, counts = (a.reshape(cfg.epochs, threads).sum(axis=1) for a in loss)
        self._record_losses(sums.tolist(), counts.tolist())
        return int(progress[0])

    def _record_losses(self, sums: list[float], counts: list[int]) -> None:
        self.history = [{"epoch": e + 1, "loss": s / n, "predictions": int(n)}
                        for e, (s, n) in enumerate(zip(sums, counts, strict=True)) if n]

    def _train_torch(self, corpus: np.ndarray, line_ends: np.ndarray, device_name: str,
                     on_progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        import torch

        device = torch.device(device_name)
        if device.type == "cpu":
            # --workers bounds the intra-op threads too (small ops on busy cores lose more to
            # thread synchronization than they gain).
            threads = torch.get_num_threads()
            torch.set_num_threads(self.workers)
            try:
                return self._train_torch_loop(corpus, line_ends, device, on_progress, stop)
            finally:
                torch.set_num_threads(threads)
        return self._train_torch_loop(corpus, line_ends, device, on_progress, stop)

    def _train_torch_loop(self, corpus: np.ndarray, line_ends: np.ndarray, device: Any,
                          on_progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        import torch

        from dlnlp.kernels import embedding_losses as K

        cfg = self.config
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        syn0 = torch.from_numpy(self.syn0).to(device)
        syn1neg = torch.from_numpy(self.syn1neg).to(device) if self.syn1neg is not None else None
        syn1 = torch.from_numpy(self.syn1).to(device) if self.syn1 is not None else None
        ids = torch.from_numpy(corpus.astype(np.int64)).to(device)
        # Sentence id of each token; lines longer than MAX_SENTENCE are cut into pieces.
        starts = np.concatenate([[0], line_ends[:-1]])
        line_of = np.repeat(np.arange(len(line_ends)), np.diff(np.concatenate([[0], line_ends])))
        within = np.arange(len(corpus)) - starts[line_of]
        sentence = torch.from_numpy(line_of * (1 + len(corpus) // MAX_SENTENCE) + within // MAX_SENTENCE).to(device)
        keep_prob = torch.from_numpy(keep_probabilities(self.vocab.counts, cfg.sample)).to(device, torch.float32)
        sampler = (K.AliasSampler.from_weights(torch.from_numpy(noise_weights(self.vocab.counts)).to(device))
                   if cfg.use_ns else None)
        if self.huffman is not None:
            points_np, codes_np = self.huffman.padded()
            points = torch.from_numpy(points_np).to(device)
            codes = torch.from_numpy(codes_np).to(device)
            lengths = torch.from_numpy(self.huffman.lengths.astype(np.int64)).to(device)
        else:
            points = codes = lengths = None
        try:
            return self._torch_epochs(ids, sentence, keep_prob, sampler, syn0, syn1neg, syn1,
                                      (points, codes, lengths) if self.huffman is not None else None, device,
                                      generator, on_progress, stop)
        finally:
            # Copy back (a no-op on CPU, where the tensors share the arrays' memory), also when
            # stopped or interrupted, so the vectors trained so far can be saved.
            self.syn0 = syn0.cpu().numpy()
            if syn1neg is not None:
                self.syn1neg = syn1neg.cpu().numpy()
            if syn1 is not None:
                self.syn1 = syn1.cpu().numpy()

    def _torch_epochs(self, ids: Any, sentence: Any, keep_prob: Any, sampler: Any, syn0: Any, syn1neg: Any,
                      syn1: Any, huffman: tuple | None, device: Any, generator: Any,
                      on_progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        import torch

        from dlnlp.kernels import embedding_losses as K

        cfg = self.config
        if huffman is not None:
            points, codes, lengths = huffman
        batch = cfg.batch_size or (16384 if device.type == "cuda" else 2048)
        window = cfg.window
        offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)]).to(device)
        total = len(ids) * cfg.epochs
        done = 0
        last_report = time.perf_counter()
        sums: list[Any] = []  # per epoch, kept on the device until the end (no sync per batch)
        counts: list[Any] = []

        def finish(result: int) -> int:
            self._record_losses([float(x) for x in sums], [int(x) for x in counts])
            return result

        for epoch in range(cfg.epochs):
            sums.append(torch.zeros((), dtype=torch.float64, device=device))
            counts.append(torch.zeros((), dtype=torch.float64, device=device))
            kept_mask = torch.rand(len(ids), device=device, generator=generator) < keep_prob[ids]
            kept, kept_sentence = ids[kept_mask], sentence[kept_mask]
            n = len(kept)
            raw_per_kept = len(ids) / max(n, 1)
            for begin in range(0, n, batch):
                if stop is not None and stop.is_set():
                    return finish(done)
                pos = torch.arange(begin, min(begin + batch, n), device=device)
                progress = (epoch * len(ids) + begin * raw_per_kept) / total
                lr = cfg.lr - (cfg.lr - cfg.min_lr) * progress
                span = window - torch.randint(0, window, (len(pos),), device=device, generator=generator)
                ctx = pos.unsqueeze(1) + offsets.unsqueeze(0)
                valid = (ctx >= 0) & (ctx < n) & (offsets.abs().unsqueeze(0) <= span.unsqueeze(1))
                ctx = ctx.clamp(0, n - 1)
                valid &= kept_sentence[ctx] == kept_sentence[pos].unsqueeze(1)
                if cfg.arch == "skipgram":
                    rows, cols = valid.nonzero(as_tuple=True)
                    inputs = kept[ctx[rows, cols]]
                    targets = kept[pos[rows]]
                    h = syn0[inputs]
                    grad = torch.zeros_like(h)
                else:
                    context = kept[ctx]
                    h, count = K.gather_context_mean(syn0, context, valid)
                    has = count > 0
                    h, targets, context, valid = h[has], kept[pos[has]], context[has], valid[has]
                    grad = torch.zeros_like(h)
                if sampler is not None:
                    negatives = sampler.sample((len(targets), cfg.negative), generator)
                    index, labels, mask = K.negative_sampling_targets(targets, negatives)
                    loss, grad_h = K.sgd_step_logistic(syn1neg, h, index, labels, mask, lr)
                    grad += grad_h
                    sums[-1] += loss.detach()
                    counts[-1] += mask.sum()
                if huffman is not None:
                    index, labels, mask = K.hierarchical_softmax_targets(targets, points, codes, lengths)
                    loss, grad_h = K.sgd_step_logistic(syn1, h, index, labels, mask, lr, damp_duplicates=True)
                    grad += grad_h
                    sums[-1] += loss.detach()
                    counts[-1] += mask.sum()
                if cfg.arch == "skipgram":
                    K.sgd_rows(syn0, inputs, grad, lr)
                else:
                    # Each context row gets the full gradient of the mean (word2vec.c's CBOW).
                    rows, cols = valid.nonzero(as_tuple=True)
                    K.sgd_rows(syn0, context[rows, cols], grad[rows], lr)
                done = int(epoch * len(ids) + min(begin + batch, n) * raw_per_kept)
                if time.perf_counter() - last_report > 0.5:
                    last_report = time.perf_counter()
                    # Overflowed vectors only get worse: stop at once (the caller reports it).
                    if not bool(torch.isfinite(syn0).all()):
                        return finish(done)
                    if on_progress is not None:
                        on_progress(done, total)
        return finish(total)

    # -- outputs ------------------------------------------------------------------------------
    def vectors(self, which: str = "input") -> np.ndarray:
        """``input`` (syn0, the usual word vectors) or ``average`` of input and NS output vectors."""
        self.check_finite()
        if which == "input":
            return self.syn0
        if which == "average":
            if self.syn1neg is None:
                raise DlnlpError("--vectors average needs negative sampling (HS has no per-word output vectors)")
            return (self.syn0 + self.syn1neg) / 2
        raise UsageError(f"--vectors {which}: expected input or average")

    def keyed_vectors(self, which: str = "input") -> KeyedVectors:
        return KeyedVectors(self.vocab.words, self.vectors(which), self.vocab.counts)

    def save(self, path: str | os.PathLike, *, which: str = "input", force: bool = False,
             extra_config: dict[str, Any] | None = None) -> Path:
        """A model directory: config.json, model.safetensors (vectors, input, outputs), vocab.txt.

        ``dlnlp vectors`` reads it like any vectors file (the ``vectors`` tensor and vocab.txt).
        """
        from dlnlp.io.modeldir import METRICS_NAME, make_config, metrics_text, write_model_dir

        weights: dict[str, np.ndarray] = {"vectors": self.vectors(which)}
        if which != "input":
            weights["input"] = self.syn0
        if self.syn1neg is not None:
            weights["output_ns"] = self.syn1neg
        if self.syn1 is not None:
            weights["output_hs"] = self.syn1
        cfg = asdict(self.config)
        extra = cfg.pop("extra")
        config = make_config(KIND, **cfg, **extra, **(extra_config or {}), vectors=which, vocab_size=len(self.vocab),
                             corpus_tokens=self.vocab.total_tokens, stats=self.stats)
        files = {"vocab.txt": self.vocab.to_text()}
        if self.history:  # the loss per epoch, in the trainer's format (`dlnlp runs show` reads it)
            files[METRICS_NAME] = metrics_text({"step": r["epoch"], **r} for r in self.history)
        return write_model_dir(path, config, weights, files, force=force)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Word2Vec:
        from dlnlp.io.modeldir import load_weights, read_config

        config = read_config(path, KIND)
        fields = {k: config[k] for k in Word2VecConfig.__dataclass_fields__ if k in config and k != "extra"}
        model = cls.__new__(cls)
        model.config = Word2VecConfig(**fields)
        model.vocab = Vocabulary.load(path)
        weights = load_weights(path, framework="np")
        which = config.get("vectors", "input")
        model.syn0 = weights["input"] if which != "input" else weights["vectors"]
        model.syn1neg = weights.get("output_ns")
        model.syn1 = weights.get("output_hs")
        model.huffman = build_huffman_tree(model.vocab.counts) if model.syn1 is not None else None
        model.stats = config.get("stats", {})
        if model.syn0.shape[0] != len(model.vocab):
            raise ModelDirError(f"{path}: vocab.txt has {len(model.vocab)} words, the weights {model.syn0.shape[0]}")
        return model


def _diverged_message(bad: int | None, vocab: int, lr: float, done: int | None, total: int | None) -> str:
    where = f" after {done:,} of {total:,} words" if done is not None and total else ""
    what = f"{bad} of {vocab} word vectors" if bad else "the word vectors"
    return (f"training diverged: {what} became nan or inf{where}; stopped, nothing written "
            f"(try a lower --lr than {lr:g})")


def _cuda_available() -> bool:
    # Importing torch costs seconds: only ask when torch is already loaded or CUDA libraries exist.
    import importlib.util
    import sys

    if "torch" not in sys.modules and not any(
        os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/proc/driver/nvidia")
    ):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _load_word2vec(directory: Path, device: object = None) -> tuple[Word2Vec, dict[str, Any]]:
    from dlnlp.io.modeldir import read_config

    return Word2Vec.load(directory), read_config(directory, KIND)


register(Family(KIND, _load_word2vec, (1,), Word2VecConfig, save=Word2Vec.save, description="word2vec vectors"))
