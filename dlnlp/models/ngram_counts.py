"""Vectorized n-gram counting for :mod:`dlnlp.models.ngram` (numpy only, no torch).

The corpus becomes one int32 stream of word ids with ``<s>`` before and ``</s>`` after every line
(KenLM's padding: ``<s>`` is context only, ``</s>`` is predicted). N-grams are then counted order by
order as integer keys, the way a trie numbers them::

    key_1(w)          = id(w)
    key_n(w_1..w_n)   = index of (w_1..w_{n-1}) among the sorted order-(n-1) keys * |V| + id(w_n)

so an n-gram is a single int64 whatever the order, sorting the keys groups n-grams by context, and
the order-(n-1) index of every position comes for free from ``np.unique(..., return_inverse=True)``
at the previous order. A window that would reach back past the ``<s>`` of its line is not an
n-gram (KenLM collapses ``<s> <s> w`` to ``<s> w``), so its key is -1.

Memory: with no budget the whole stream is counted in one chunk (fastest). With ``memory_bytes``
the stream is cut at sentence starts into chunks; each chunk's keys are counted with ``np.unique``
into a sorted count shard, shards are merged in memory while they fit and otherwise spill to disk
as ``.npy`` files that a range-partitioned merge reads back with ``mmap``; the per-position indices
of one order live on disk too. What stays resident is then the distinct n-grams (the tables that
estimation needs anyway) plus one chunk.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dlnlp.errors import InputError
from dlnlp.io.arpa import SPECIALS as ARPA_SPECIALS

SPECIALS = ARPA_SPECIALS  # <unk>, <s>, </s>: ids 0, 1, 2, as ARPA files read back
UNK, BOS, EOS = SPECIALS
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


@dataclass
class OrderCounts:
    """The distinct n-grams of one order, sorted by key (context-major, like a trie level)."""

    keys: np.ndarray  # int64, sorted: context index * V + last word (order 1: word id)
    raw: np.ndarray  # int64 occurrence counts
    suffix: np.ndarray | None  # int64 index of w_2..w_n among order n-1 (None for unigrams)


@dataclass
class NgramCounts:
    """Everything the estimators need: vocabulary, per-order tables, corpus statistics."""

    vocab: list[str]
    orders: list[OrderCounts]
    tokens: int  # predicted tokens (words + one </s> per line)
    sentences: int
    dropped_specials: int = 0
    info: dict = field(default_factory=dict)

    @property
    def order(self) -> int:
        return len(self.orders)

    def context(self, n: int) -> np.ndarray:
        """Index among order n-1 of each order-n n-gram's context (n >= 2)."""
        return self.orders[n - 1].keys // len(self.vocab)

    def words(self, n: int) -> np.ndarray:
        """The (T_n, n) matrix of word ids of the order-n n-grams."""
        V = len(self.vocab)
        return ngram_words([o.keys for o in self.orders[:n]], V)


def ngram_words(keys: list[np.ndarray], V: int) -> np.ndarray:
    """Word-id rows of the last order in ``keys`` (trie keys of orders 1..n), by following contexts."""
    n = len(keys)
    if n == 1:
        return keys[0].reshape(-1, 1).astype(np.int64)
    out = np.empty((len(keys[-1]), n), dtype=np.int64)
    index = None
    for level in range(n, 0, -1):
        k = keys[level - 1] if index is None else keys[level - 1][index]
        if level == 1:
            out[:, 0] = k
        else:
            out[:, level - 1] = k % V
            index = k // V
    return out


# ---------------------------------------------------------------------------------------------
# Corpus -> id stream


class Vocabulary:
    """Word <-> id, with ``<unk>``=0, ``<s>``=1, ``</s>``=2 (KenLM's numbering), then first-seen order."""

    def __init__(self, words: Iterable[str] = ()):
        # A defaultdict whose factory is a C counter: looking a new word up gives it the next id,
        # so encoding a chunk is one C-level pass over its tokens.
        self.index: dict[str, int] = defaultdict(itertools.count().__next__)
        for word in (*SPECIALS, *words):
            self.index[word]

    @property
    def words(self) -> list[str]:
        return list(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def encode(self, tokens: list[str], grow: bool = True) -> np.ndarray:
        if grow:
            return np.fromiter(map(self.index.__getitem__, tokens), dtype=np.int32, count=len(tokens))
        get = self.index.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int32, count=len(tokens))


def _has_special(text: str) -> bool:
    return "<s>" in text or "</s>" in text or "<unk>" in text


def split_sentences(lines: list[str]) -> tuple[list[str], int]:
    """Flat token list ``<s> w.. </s> <s> ..`` for a chunk of lines, and the number of dropped specials.

    Like lmplz, literal ``<s>``, ``</s>`` and ``<unk>`` in the text are treated as whitespace.
    Every line is a sentence, a blank one too (``<s> </s>``), as in KenLM.
    """
    joined = "\n".join(lines)
    if not _has_special(joined):
        # One C-level split for the whole chunk; the sentinel cannot occur inside a token.
        tokens = (" </s> <s> ".join(lines)).split()
        return [BOS, *tokens, EOS], 0
    tokens: list[str] = []
    dropped = 0
    for line in lines:
        words = line.split()
        kept = [w for w in words if w not in SPECIALS]
        dropped += len(words) - len(kept)
        tokens.append(BOS)
        tokens.extend(kept)
        tokens.append(EOS)
    return tokens, dropped


def encode_lines(lines: list[str], vocab: Vocabulary, grow: bool = True) -> tuple[np.ndarray, int]:
    """The id stream of a chunk of lines (see :func:`split_sentences`)."""
    tokens, dropped = split_sentences(lines)
    return vocab.encode(tokens, grow=grow), dropped


# ---------------------------------------------------------------------------------------------
# Spooling: arrays that live in memory, or on disk under a memory budget


class _Store:
    """A list of per-chunk arrays, kept in memory or written to .npy files in a temp dir."""

    def __init__(self, directory: str | None, name: str):
        self.directory = directory
        self.name = name
        self.items: list = []

    def append(self, array: np.ndarray) -> None:
        if self.directory is None:
            self.items.append(array)
            return
        path = os.path.join(self.directory, f"{self.name}-{len(self.items)}.npy")
        np.save(path, array)
        self.items.append(path)

    def __iter__(self) -> Iterator[np.ndarray]:
        for item in self.items:
            yield np.load(item, mmap_mode="r") if isinstance(item, str) else item

    def __len__(self) -> int:
        return len(self.items)

    def clear(self) -> None:
        for item in self.items:
            if isinstance(item, str):
                os.unlink(item)
        self.items = []


def _unique_counts(keys: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    if weights is None:
        return np.unique(keys, return_counts=True)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=weights, minlength=len(uniq)).astype(np.int64)


def _merge_shards(shards: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(shards) == 1:
        return shards[0]
    keys = np.concatenate([k for k, _ in shards])
    counts = np.concatenate([c for _, c in shards])
    return _unique_counts(keys, counts)


class _ShardSet:
    """Sorted (key, count) shards: merged in memory while under budget, spilled to disk past it."""

    def __init__(self, budget: int | None, directory: str | None, name: str):
        self.budget = budget
        self.directory = directory
        self.name = name
        self.memory: list[tuple[np.ndarray, np.ndarray]] = []
        self.memory_bytes = 0
        self.spilled: list[tuple[str, str]] = []

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.memory.append((keys, counts))
        self.memory_bytes += keys.nbytes + counts.nbytes
        # Merging sorts the concatenated shards with ~4x their size in temporaries, so shards are
        # merged at 1/8 of the budget and spilled when even the merged shard exceeds 1/16.
        if self.budget is not None and self.memory_bytes > self.budget // 8:
            merged = _merge_shards(self.memory)
            self.memory = [merged]
            self.memory_bytes = merged[0].nbytes + merged[1].nbytes
            if self.memory_bytes > self.budget // 16 and self.directory is not None:
                self._spill(merged)

    def _spill(self, shard: tuple[np.ndarray, np.ndarray]) -> None:
        base = os.path.join(self.directory, f"{self.name}-shard{len(self.spilled)}")
        np.save(base + ".keys.npy", shard[0])
        np.save(base + ".counts.npy", shard[1])
        self.spilled.append((base + ".keys.npy", base + ".counts.npy"))
        self.memory = []
        self.memory_bytes = 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.spilled:
            if not self.memory:
                return np.zeros(0, np.int64), np.zeros(0, np.int64)
            return _merge_shards(self.memory)
        if self.memory:
            self._spill(_merge_shards(self.memory))
        shards = [(np.load(k, mmap_mode="r"), np.load(c, mmap_mode="r")) for k, c in self.spilled]
        total = sum(len(k) for k, _ in shards)
        # Range-partitioned k-way merge: boundaries from quantiles of every shard, so each part
        # (one slice of each sorted shard) fits the budget.
        parts = max(1, int(np.ceil(total * 16 * 8 / max(self.budget or 1, 1))))
        sample = np.sort(np.concatenate([np.asarray(k[:: max(1, len(k) // 1024)]) for k, _ in shards]))
        bounds = np.unique(sample[np.linspace(0, len(sample) - 1, parts + 1).astype(np.int64)[1:-1]])
        edges = [None, *bounds.tolist(), None]
        out_keys, out_counts = [], []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            pieces = []
            for k, c in shards:
                a = 0 if lo is None else int(np.searchsorted(k, lo, "left"))
                b = len(k) if hi is None else int(np.searchsorted(k, hi, "left"))
                if b > a:
                    pieces.append((np.asarray(k[a:b]), np.asarray(c[a:b])))
            if pieces:
                keys, counts = _merge_shards(pieces)
                out_keys.append(keys)
                out_counts.append(counts)
        for k, c in self.spilled:
            os.unlink(k)
            os.unlink(c)
        return np.concatenate(out_keys), np.concatenate(out_counts)


# ---------------------------------------------------------------------------------------------
# Counting


def _level_keys(prev: np.ndarray, tokens: np.ndarray, V: int) -> np.ndarray:
    """Order-n keys of every position from the order-(n-1) indices of the previous positions."""
    keys = np.full(len(tokens), -1, dtype=np.int64)
    before = prev[:-1]
    ok = (before >= 0) & (tokens[1:] != BOS_ID)
    keys[1:][ok] = before[ok] * V + tokens[1:][ok]
    return keys


def count_stream(chunks: list[np.ndarray] | _Store, V: int, order: int, *, memory_bytes: int | None = None,
                 temp_dir: str | None = None) -> list[OrderCounts]:
    """Count every n-gram of orders 1..``order`` in id-stream chunks that each start at a ``<s>``.

    ``ids_n[i]`` is the index among order-n n-grams of the n-gram ending at position i (-1: none).
    The order-n key of position i is built from ``ids_{n-1}[i-1]``, and the suffix (w_2..w_n) of
    that n-gram is ``ids_{n-1}[i]``: both come from the previous order's indices.
    """
    if order < 1:
        raise InputError("--order must be at least 1")
    raw1 = np.zeros(V, dtype=np.int64)
    for tokens in chunks:
        raw1 += np.bincount(np.asarray(tokens), minlength=V)
    raw1[BOS_ID] = 0  # context only: never predicted
    orders = [OrderCounts(np.arange(V, dtype=np.int64), raw1, None)]
    positions = sum(len(t) for t in chunks)
    if positions * V >= 2**63:
        raise InputError(f"{positions:,} tokens with a vocabulary of {V:,} overflow 64-bit n-gram keys; "
                         "use --max-vocab")
    if order == 1:
        return orders
    if not isinstance(chunks, _Store) and len(chunks) == 1:
        tokens = np.asarray(chunks[0])
        prev = tokens.astype(np.int64)
        for _ in range(2, order + 1):
            keys = _level_keys(prev, tokens, V)
            valid = keys >= 0
            uniq, inverse, counts = np.unique(keys[valid], return_inverse=True, return_counts=True)
            suffix = np.empty(len(uniq), dtype=np.int64)
            suffix[inverse] = prev[valid]
            ids = np.full(len(tokens), -1, dtype=np.int64)
            ids[valid] = inverse
            orders.append(OrderCounts(uniq, counts.astype(np.int64), suffix))
            prev = ids
        return orders
    # Chunked: per order, one pass counts shards, a second indexes positions against the merged table.
    spill_dir = tempfile.mkdtemp(prefix="dlnlp-ngram-", dir=temp_dir) if memory_bytes is not None else None
    try:
        prev_store = None
        for n in range(2, order + 1):
            previous = _as_int64(chunks) if prev_store is None else prev_store
            shards = _ShardSet(memory_bytes, spill_dir, f"o{n}")
            for tokens, prev in zip(chunks, previous, strict=True):
                keys = _level_keys(np.asarray(prev), np.asarray(tokens), V)
                shards.add(*np.unique(keys[keys >= 0], return_counts=True))
            uniq, counts = shards.result()
            suffix = np.empty(len(uniq), dtype=np.int64)
            new_store = _Store(spill_dir, f"ids{n}")
            previous = _as_int64(chunks) if prev_store is None else prev_store
            for tokens, prev in zip(chunks, previous, strict=True):
                prev = np.asarray(prev)
                keys = _level_keys(prev, np.asarray(tokens), V)
                valid = keys >= 0
                ids = np.full(len(keys), -1, dtype=np.int64)
                ids[valid] = np.searchsorted(uniq, keys[valid])
                suffix[ids[valid]] = prev[valid]
                new_store.append(ids)
            orders.append(OrderCounts(uniq, counts.astype(np.int64), suffix))
            if prev_store is not None:
                prev_store.clear()
            prev_store = new_store
        return orders
    finally:
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)


def _as_int64(chunks) -> Iterator[np.ndarray]:
    for t in chunks:
        yield np.asarray(t).astype(np.int64)


def adjusted_counts(orders: list[OrderCounts], V: int) -> list[np.ndarray]:
    """KenLM's adjusted counts (Chen & Goodman; lmplz ``adjust_counts.cc``).

    The highest order keeps raw counts. A lower-order n-gram gets its continuation count
    N1+(. w_1..w_n): the number of distinct words seen before it (``<s>`` included), except an
    n-gram that starts with ``<s>``, which nothing can precede, and so keeps its raw count.
    ``<s>`` and ``<unk>`` as unigrams get 0 (they are never counted as predicted).
    """
    N = len(orders)
    adjusted = [None] * N
    adjusted[N - 1] = orders[N - 1].raw.copy()
    first = first_words(orders, V)
    for n in range(N - 1, 0, -1):
        cont = np.bincount(orders[n].suffix, minlength=len(orders[n - 1].keys)).astype(np.int64)
        starts_bos = first[n - 1] == BOS_ID
        cont[starts_bos] = orders[n - 1].raw[starts_bos]
        adjusted[n - 1] = cont
    adjusted[0][BOS_ID] = 0
    return adjusted


def first_words(orders: list[OrderCounts], V: int) -> list[np.ndarray]:
    first = [orders[0].keys]
    for n in range(2, len(orders) + 1):
        first.append(first[-1][orders[n - 1].keys // V])
    return first


def count_corpus(lines: Iterable[str], order: int, *, min_count: int = 1, max_vocab: int | None = None,
                 memory_bytes: int | None = None, temp_dir: str | None = None,
                 chunk_lines: int = 20000, on_chunk=None) -> NgramCounts:
    """Read lines, build the vocabulary (with cutoffs) and count n-grams of orders 1..order."""
    if order < 1:
        raise InputError("--order must be at least 1")
    vocab = Vocabulary()
    spill_dir = tempfile.mkdtemp(prefix="dlnlp-ngram-", dir=temp_dir) if memory_bytes is not None else None
    try:
        store = _Store(spill_dir, "stream")
        pending: list[np.ndarray] = []
        pending_len = 0
        # Chunk size in tokens when a budget is set: counting one order of a chunk holds about eight
        # int64 arrays per position (keys, sort buffers, indices of this order and the previous one).
        chunk_tokens = max(1 << 16, memory_bytes // 160) if memory_bytes is not None else None
        sentences = dropped = 0
        lines_buffer: list[str] = []

        def flush_lines() -> None:
            nonlocal sentences, dropped, pending_len
            if not lines_buffer:
                return
            ids, d = encode_lines(lines_buffer, vocab)
            dropped += d
            sentences += len(lines_buffer)
            lines_buffer.clear()
            pending.append(ids)
            pending_len += len(ids)
            if on_chunk is not None:
                on_chunk(len(ids))
            if chunk_tokens is not None and pending_len >= chunk_tokens:
                flush_pending()

        def flush_pending() -> None:
            nonlocal pending_len
            if pending:
                store.append(np.concatenate(pending) if len(pending) > 1 else pending[0])
                pending.clear()
                pending_len = 0

        for line in lines:
            lines_buffer.append(line)
            if len(lines_buffer) >= chunk_lines:
                flush_lines()
        flush_lines()
        flush_pending()
        if sentences == 0:
            raise InputError("the corpus is empty (no lines)")
        chunks: list[np.ndarray] | _Store
        if memory_bytes is None:
            chunks = [np.concatenate(list(store))] if len(store) > 1 else list(store)
        else:
            chunks = store
        words = vocab.words
        V = len(words)
        if min_count > 1 or max_vocab is not None:
            chunks, words = _apply_cutoffs(chunks, words, min_count, max_vocab, spill_dir)
            V = len(words)
        tokens_total = 0
        for c in chunks:
            tokens_total += int(np.count_nonzero(np.asarray(c) != BOS_ID))
        orders = count_stream(chunks, V, order, memory_bytes=memory_bytes, temp_dir=temp_dir)
        return NgramCounts(vocab=list(words), orders=orders, tokens=tokens_total, sentences=sentences,
                           dropped_specials=dropped)
    finally:
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)


def _apply_cutoffs(chunks, words: list[str], min_count: int, max_vocab: int | None, spill_dir: str | None):
    """Map words rarer than ``min_count`` (or beyond the ``max_vocab`` most frequent) to ``<unk>``."""
    V = len(words)
    counts = np.zeros(V, dtype=np.int64)
    for c in chunks:
        counts += np.bincount(np.asarray(c), minlength=V)
    keep = counts >= min_count
    keep[: len(SPECIALS)] = True
    if max_vocab is not None:
        regular = np.flatnonzero(keep[len(SPECIALS):]) + len(SPECIALS)
        # Most frequent first; ties keep first-seen order (stable sort) so the cut is deterministic.
        ranked = regular[np.argsort(-counts[regular], kind="stable")]
        keep[ranked[max_vocab:]] = False
    mapping = np.full(V, UNK_ID, dtype=np.int32)
    kept = np.flatnonzero(keep)
    mapping[kept] = np.arange(len(kept), dtype=np.int32)
    new_words = [words[i] for i in kept]
    if isinstance(chunks, _Store):
        out = _Store(spill_dir, "stream-cut")
        for c in chunks:
            out.append(mapping[np.asarray(c)])
        chunks.clear()
        return out, new_words
    return [mapping[np.asarray(c)] for c in chunks], new_words
