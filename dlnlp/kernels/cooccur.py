"""Word-word co-occurrence counting, shared by GloVe and the count-based (PPMI-SVD) vectors.

Follows Stanford GloVe's ``cooccur`` conventions, so that the same corpus gives the same matrix:

- Out-of-vocabulary tokens are dropped *before* windowing: they take no position, so two in-vocabulary
  words separated only by rare words are adjacent (``cooccur.c`` skips them before the word enters
  its history buffer).
- A newline ends a document: windows never cross a line (GloVe >= 1.2; ``cross_lines=True`` treats
  the corpus as one token stream, as GloVe 1.0 and the text8 demo, a one-line corpus, effectively do).
- Each word ``w2`` looks ``window`` in-vocabulary words back; a context ``w1`` at distance ``d``
  adds ``1/d`` to ``X[w1, w2]`` (``distance_weighting=False``: adds 1), and with ``symmetric`` also
  to ``X[w2, w1]`` (the right context). A word co-occurring with itself counts too.
- Sums are accumulated in float64 (``cooccur.c``'s ``real`` is double).

Memory is bounded by ``memory_bytes``, the way ``cooccur`` bounds it: pairs of frequent words (both
indices below ``dense_size``) accumulate in a dense float64 block, the rest as sorted int64 keys
``row * V + col`` with summed weights. When that sparse table outgrows its share of the budget it
is written to disk as a sorted shard, and ``finish`` merges the shards range by range (each range
of rows is sliced out of every shard with a binary search, reduced and appended to the output), so
a corpus whose matrix is larger than RAM still counts. Everything is vectorized numpy: one array
operation per window distance and chunk of lines, sort + segment-reduce instead of hashing.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB, a soft limit like cooccur's -memory
INDEX_STRIDE = 4096  # a shard keeps every 4096th key in memory to find ranges without mapping the file


@dataclass
class CooccurrenceMatrix:
    """A sparse co-occurrence matrix as COO arrays sorted by (row, col).

    ``rows``/``cols`` are int32 word indices, ``values`` float64 sums. The arrays may be memory
    maps onto files in ``workdir`` when counting spilled to disk; ``close()`` removes them.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    vocab_size: int
    shards_written: int = 0
    workdir: Path | None = field(default=None, repr=False)

    @property
    def nnz(self) -> int:
        return int(len(self.values))

    def to_dense(self) -> np.ndarray:
        """The full V x V matrix (for tests and tiny vocabularies only)."""
        dense = np.zeros((self.vocab_size, self.vocab_size), dtype=np.float64)
        dense[np.asarray(self.rows), np.asarray(self.cols)] = np.asarray(self.values)
        return dense

    def close(self) -> None:
        """Drop the arrays and remove any files they live in."""
        self.rows = self.cols = np.zeros(0, dtype=np.int32)
        self.values = np.zeros(0, dtype=np.float64)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _reduce_sorted(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``values`` over runs of equal ``keys`` (``keys`` sorted)."""
    if len(keys) == 0:
        return keys, values
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(values, starts)


def _sort_reduce(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by key and sum duplicates (stable sort: two sorted runs merge in linear time)."""
    order = np.argsort(keys, kind="stable")
    return _reduce_sorted(keys[order], values[order])


class CooccurrenceCounter:
    """Streaming co-occurrence counter over in-vocabulary token ids.

    Feed it with :meth:`add_lines` (lists of token lists) or :meth:`add_ids` (ids with line ends),
    then call :meth:`finish`. ``memory_bytes`` is a soft limit on the counting structures (dense
    block, sparse table, per-chunk buffers); beyond it sorted shards go to ``tmp_dir``.
    """

    def __init__(self, vocab_size: int, *, window: int = 10, symmetric: bool = True,
                 distance_weighting: bool = True, cross_lines: bool = False,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, tmp_dir: str | os.PathLike | None = None,
                 dense_size: int | None = None):
        if vocab_size < 1:
            raise ValueError("the vocabulary is empty")
        if window < 1:
            raise ValueError("window must be at least 1")
        if memory_bytes < 1 << 20:
            raise ValueError("memory budget must be at least 1 MiB")
        self.vocab_size = int(vocab_size)
        self.window = int(window)
        self.symmetric = symmetric
        self.distance_weighting = distance_weighting
        self.cross_lines = cross_lines
        self.memory_bytes = int(memory_bytes)
        # Budget shares: dense block 25%, sparse table (with its sort temporaries) 50%, chunk 15%,
        # the rest for the interpreter and the line buffers.
        if dense_size is None:
            dense_size = math.isqrt(int(0.25 * memory_bytes) // 8)
        self.dense_size = max(0, min(self.vocab_size, int(dense_size)))
        self._dense = np.zeros(self.dense_size * self.dense_size, dtype=np.float64)
        # A sparse entry costs 16 bytes (int64 key, float64 value); sorting, symmetrizing (which
        # doubles the entries) and spilling need up to sixteen times that in temporaries at the peak.
        self.table_limit = max(1024, int(0.50 * memory_bytes) // (16 * 16))
        self.chunk_pairs = max(4096, int(0.15 * memory_bytes) // 48)
        self._table_keys = np.zeros(0, dtype=np.int64)
        self._table_values = np.zeros(0, dtype=np.float64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self._tail = np.zeros(0, dtype=np.int64)  # last `window` ids, carried over with cross_lines
        self._tmp_root = Path(tmp_dir) if tmp_dir is not None else None
        self._workdir: Path | None = None
        # Shards on disk: (keys file, values file, entries, every INDEX_STRIDE-th key kept in memory).
        self._shards: list[tuple[Path, Path, int, np.ndarray]] = []
        self.tokens = 0  # in-vocabulary tokens seen
        self.pairs = 0  # (context, word) pairs counted, one orientation
        self.peak_table_entries = 0

    # -- feeding ---------------------------------------------------------------------------------
    def add_lines(self, lines: Iterable[Sequence[int]]) -> None:
        """Count lines given as sequences of in-vocabulary ids (out-of-vocabulary already removed)."""
        ids: list[int] = []
        ends: list[int] = []
        for line in lines:
            ids.extend(line)
            ends.append(len(ids))
        self.add_ids(np.asarray(ids, dtype=np.int64), np.asarray(ends, dtype=np.int64))

    def add_ids(self, ids: np.ndarray, line_ends: np.ndarray) -> None:
        """Count a block of whole lines: ``ids`` concatenated, ``line_ends`` the end offset of each line."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError("token id out of range")
        # Split big blocks at line ends so the per-chunk pair buffers stay within budget.
        max_tokens = max(1, self.chunk_pairs // self.window)
        line_ends = np.asarray(line_ends, dtype=np.int64)
        start = 0
        while start < len(ids):
            limit = start + max_tokens
            if limit >= len(ids):
                stop = len(ids)
            else:
                cut = np.searchsorted(line_ends, limit, side="right") - 1
                stop = int(line_ends[cut]) if cut >= 0 and line_ends[cut] > start else limit
            ends = line_ends[(line_ends > start) & (line_ends <= stop)] - start
            self._add_chunk(ids[start:stop], ends, ends_line=len(ends) > 0 and int(ends[-1]) == stop - start)
            start = stop

    def _add_chunk(self, ids: np.ndarray, line_ends: np.ndarray, ends_line: bool = True) -> None:
        n_new = len(ids)
        self.tokens += n_new
        # The last `window` ids come along when the next chunk continues the same token stream
        # (always with cross_lines; otherwise only when a very long line was cut in two).
        ext = np.concatenate((self._tail, ids)) if len(self._tail) else ids
        tail = len(ext) - n_new
        if self.cross_lines:
            lines = None
        else:
            # Line index of every token of ext; the carried tail belongs to the chunk's first line.
            lines = np.zeros(len(ext), dtype=np.int64)
            np.add.at(lines, line_ends[line_ends < n_new] + tail, 1)
            lines = np.cumsum(lines)
        keep_tail = self.cross_lines or not ends_line
        self._tail = ext[-self.window:].copy() if keep_tail else np.zeros(0, dtype=np.int64)
        dense_size, vocab = self.dense_size, self.vocab_size
        sparse_codes: list[np.ndarray] = []
        for d in range(1, self.window + 1):
            first = max(tail, d)
            if first >= len(ext):
                break
            word = ext[first:]  # w2, the word whose left context is scanned
            context = ext[first - d:len(ext) - d]  # w1, d positions to its left
            if lines is not None:
                same = lines[first - d:len(ext) - d] == lines[first:]
                word, context = word[same], context[same]
            self.pairs += len(word)
            weight = 1.0 / d if self.distance_weighting else 1.0
            in_dense = (context < dense_size) & (word < dense_size)
            if in_dense.any():
                np.add.at(self._dense, context[in_dense] * dense_size + word[in_dense],
                          np.full(int(in_dense.sum()), weight))
            outside = ~in_dense
            # Encode the distance in the low bits so one integer sort groups (pair, distance);
            # the weight is recovered from the distance after counting.
            sparse_codes.append((context[outside] * vocab + word[outside]) * self.window + (d - 1))
        if sparse_codes:
            codes = np.sort(np.concatenate(sparse_codes))
            if len(codes):
                starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
                counts = np.diff(np.append(starts, len(codes))).astype(np.float64)
                unique_codes = codes[starts]
                if self.distance_weighting:
                    counts /= (unique_codes % self.window) + 1
                keys, values = _reduce_sorted(unique_codes // self.window, counts)
                self._pending.append((keys, values))
                self._pending_size += len(keys)
                if self._pending_size + len(self._table_keys) > self.table_limit:
                    self._compact()

    # -- sparse table ----------------------------------------------------------------------------
    def _merge_pending(self) -> None:
        """Merge the pending chunk results into the sorted table."""
        if self._pending:
            keys = np.concatenate([self._table_keys] + [k for k, _ in self._pending])
            values = np.concatenate([self._table_values] + [v for _, v in self._pending])
            self._pending, self._pending_size = [], 0
            self._table_keys, self._table_values = _sort_reduce(keys, values)
            self.peak_table_entries = max(self.peak_table_entries, len(self._table_keys))

    def _compact(self) -> None:
        """Merge pending chunk results into the table; spill the table to disk if it is too big."""
        self._merge_pending()
        if len(self._table_keys) > self.table_limit // 2:
            self._spill(self._table_keys, self._table_values)
            self._table_keys = np.zeros(0, dtype=np.int64)
            self._table_values = np.zeros(0, dtype=np.float64)

    def _symmetrize(self, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.symmetric:
            return keys, values
        vocab = self.vocab_size
        transposed = (keys % vocab) * vocab + keys // vocab
        return _sort_reduce(np.concatenate((keys, transposed)), np.concatenate((values, values)))

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            root = self._tmp_root
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
            self._workdir = Path(tempfile.mkdtemp(prefix="dlnlp-cooccur-", dir=root))
        return self._workdir

    def _spill(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Write one sorted shard (both orientations when symmetric) to disk."""
        keys, values = self._symmetrize(keys, values)
        workdir = self._ensure_workdir()
        number = len(self._shards)
        key_path, value_path = workdir / f"shard{number:04d}.keys", workdir / f"shard{number:04d}.values"
        keys.astype(np.int64).tofile(key_path)
        values.astype(np.float64).tofile(value_path)
        self._shards.append((key_path, value_path, len(keys), keys[::INDEX_STRIDE].copy()))

    # -- result ----------------------------------------------------------------------------------
    def _dense_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-zero entries of the (symmetrized) dense block, as sorted keys over the full vocabulary."""
        size = self.dense_size
        if size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        block = self._dense.reshape(size, size)
        if self.symmetric:
            # X = A + A^T tile by tile: a whole-matrix transposed copy is cache-hostile and doubles memory.
            tile = 512
            for i in range(0, size, tile):
                for j in range(i, size, tile):
                    upper = block[i:i + tile, j:j + tile] + block[j:j + tile, i:i + tile].T
                    block[i:i + tile, j:j + tile] = upper
                    block[j:j + tile, i:i + tile] = upper.T
        flat = np.flatnonzero(self._dense)
        values = self._dense[flat]
        keys = (flat // size) * self.vocab_size + flat % size
        self._dense = np.zeros(0, dtype=np.float64)
        return keys, values

    def finish(self) -> CooccurrenceMatrix:
        """The counted matrix. In memory when nothing spilled; otherwise merged from the shards into
        memory-mapped files (removed by ``CooccurrenceMatrix.close``)."""
        self._merge_pending()
        dense_keys, dense_values = self._dense_entries()
        vocab = self.vocab_size
        if not self._shards:
            keys, values = self._symmetrize(self._table_keys, self._table_values)
            self._table_keys = self._table_values = None
            # Dense and sparse keys are disjoint (a pair is dense iff both indices are small).
            keys, values = _sort_reduce(np.concatenate((dense_keys, keys)), np.concatenate((dense_values, values)))
            return CooccurrenceMatrix((keys // vocab).astype(np.int32), (keys % vocab).astype(np.int32),
                                      values, vocab)
        if len(self._table_keys):
            self._spill(self._table_keys, self._table_values)
        self._table_keys = self._table_values = None
        if len(dense_keys):
            self._spill_sorted(dense_keys, dense_values)
        return self._merge_shards()

    def _spill_sorted(self, keys: np.ndarray, values: np.ndarray) -> None:
        workdir = self._ensure_workdir()
        number = len(self._shards)
        key_path, value_path = workdir / f"shard{number:04d}.keys", workdir / f"shard{number:04d}.values"
        keys.tofile(key_path)
        values.tofile(value_path)
        self._shards.append((key_path, value_path, len(keys), keys[::INDEX_STRIDE].copy()))

    def _merge_shards(self) -> CooccurrenceMatrix:
        """K-way merge of the sorted shards, one key range at a time (bounded memory).

        Shards are read with plain file reads (no memory maps, whose readahead would make whole
        files resident): a range's end in each shard is found through the shard's in-memory sparse
        key index and one block read, so only the range being merged is in memory.
        """
        workdir = self._ensure_workdir()
        vocab = self.vocab_size
        shards = [shard for shard in self._shards if shard[2] > 0]
        total = sum(shard[2] for shard in shards)
        # Range boundaries at quantiles of the shards' sparse indexes (a uniform sample of keys),
        # each range holding about `per_range` entries summed over shards.
        per_range = max(1 << 16, self.table_limit // 2)
        n_ranges = max(1, -(-total // per_range))
        sample = np.sort(np.concatenate([shard[3] for shard in shards]))
        cuts = [int(sample[int(len(sample) * i / n_ranges)]) for i in range(1, n_ranges)]
        bounds = sorted(set(cuts)) + [vocab * vocab]

        def position(shard: tuple, key: int) -> int:
            """Index of the first entry >= key in a shard."""
            key_path, _, n, index = shard
            block = int(np.searchsorted(index, key, side="left")) - 1
            if block < 0:
                return 0
            start = block * INDEX_STRIDE
            keys = np.fromfile(key_path, dtype=np.int64, count=min(INDEX_STRIDE + 1, n - start), offset=8 * start)
            return start + int(np.searchsorted(keys, key, side="left"))

        out_paths = (workdir / "rows.int32", workdir / "cols.int32", workdir / "values.float64")
        handles = [open(p, "wb") for p in out_paths]  # noqa: SIM115
        nnz = 0
        try:
            positions = [0] * len(shards)
            for high in bounds:
                parts_k, parts_v = [], []
                for s, shard in enumerate(shards):
                    key_path, value_path, n, _ = shard
                    end = n if high >= vocab * vocab else position(shard, high)
                    count = end - positions[s]
                    if count > 0:
                        parts_k.append(np.fromfile(key_path, dtype=np.int64, count=count, offset=8 * positions[s]))
                        parts_v.append(np.fromfile(value_path, dtype=np.float64, count=count,
                                                   offset=8 * positions[s]))
                    positions[s] = end
                if not parts_k:
                    continue
                keys, values = _sort_reduce(np.concatenate(parts_k), np.concatenate(parts_v))
                del parts_k, parts_v
                (keys // vocab).astype(np.int32).tofile(handles[0])
                (keys % vocab).astype(np.int32).tofile(handles[1])
                values.tofile(handles[2])
                nnz += len(keys)
        finally:
            for handle in handles:
                handle.close()
        shards.clear()
        for key_path, value_path, _, _ in self._shards:
            key_path.unlink(missing_ok=True)
            value_path.unlink(missing_ok=True)
        written = len(self._shards)
        self._shards = []
        if nnz == 0:
            empty = np.zeros(0, dtype=np.int32)
            return CooccurrenceMatrix(empty, empty, np.zeros(0), vocab, written, workdir)
        rows = np.memmap(out_paths[0], dtype=np.int32, mode="r", shape=(nnz,))
        cols = np.memmap(out_paths[1], dtype=np.int32, mode="r", shape=(nnz,))
        values = np.memmap(out_paths[2], dtype=np.float64, mode="r", shape=(nnz,))
        return CooccurrenceMatrix(rows, cols, values, vocab, written, workdir)

    @property
    def shards_written(self) -> int:
        return len(self._shards)


def encode_lines(lines: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-tokenize ``lines`` and map tokens to vocabulary ids, dropping unknown ones.

    Returns ``(ids, line_ends)`` for :meth:`CooccurrenceCounter.add_ids`.
    """
    from itertools import chain, repeat

    split = [line.split() for line in lines]
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    total = int(lengths.sum())
    ids = np.fromiter(map(index.get, chain.from_iterable(split), repeat(-1, total)), dtype=np.int64, count=total)
    keep = ids >= 0
    kept_before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return ids[keep], kept_before[np.cumsum(lengths)]
