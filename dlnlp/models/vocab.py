"""Word vocabulary with counts, shared by the word-level embedding models (word2vec, GloVe).

Built from one streaming counting pass over whitespace-tokenized lines. Words seen fewer than
``min_count`` times are dropped (gensim's and word2vec.c's rule: keep ``count >= min_count``); the
survivors are sorted by descending count, ties broken by first occurrence in the corpus (a stable
sort over insertion order, so the result does not depend on hashing), and ``max_vocab`` keeps the
most frequent ones (like gensim's ``max_final_vocab``, applied after ``min_count``).

Saved as ``vocab.txt`` in a model directory: one ``word<TAB>count`` line per word, index order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dlnlp.errors import InputError, ModelDirError

VOCAB_NAME = "vocab.txt"


class Vocabulary:
    """Words in index order (most frequent first) with their corpus counts."""

    def __init__(self, words: Sequence[str], counts: Sequence[int] | np.ndarray, *, total_tokens: int | None = None):
        if len(words) != len(counts):
            raise ValueError("words and counts differ in length")
        self.words: list[str] = list(words)
        self.counts: np.ndarray = np.asarray(counts, dtype=np.int64)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("duplicate words in vocabulary")
        # Tokens in the corpus, out-of-vocabulary ones included (for reports and words/s).
        self.total_tokens = int(total_tokens if total_tokens is not None else self.counts.sum())

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, min_count: int = 5, max_vocab: int | None = None,
                    total_tokens: int | None = None) -> Vocabulary:
        """Filter and sort a word->count mapping (its iteration order breaks ties)."""
        if min_count < 1:
            raise ValueError("min_count must be at least 1")
        kept = [(w, c) for w, c in counts.items() if c >= min_count]
        kept.sort(key=lambda item: -item[1])  # stable: ties keep first-occurrence order
        if max_vocab is not None and max_vocab > 0:
            kept = kept[:max_vocab]
        total = total_tokens if total_tokens is not None else sum(counts.values())
        return cls([w for w, _ in kept], [c for _, c in kept], total_tokens=total)

    @classmethod
    def build(cls, token_lines: Iterable[Sequence[str]], *, min_count: int = 5,
              max_vocab: int | None = None) -> Vocabulary:
        """Count words in one pass over tokenized lines and build the vocabulary."""
        counts: dict[str, int] = {}
        get = counts.get
        for tokens in token_lines:
            for token in tokens:
                counts[token] = get(token, 0) + 1
        return cls.from_counts(counts, min_count=min_count, max_vocab=max_vocab)

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> int:
        return self.index[word]

    def __iter__(self) -> Iterator[str]:
        return iter(self.words)

    def get(self, word: str, default: int = -1) -> int:
        return self.index.get(word, default)

    @property
    def retained_tokens(self) -> int:
        """Corpus tokens that are in the vocabulary."""
        return int(self.counts.sum())

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Indices of the in-vocabulary tokens (out-of-vocabulary tokens are dropped, as word2vec does)."""
        get = self.index.get
        return [i for i in (get(t) for t in tokens) if i is not None]

    # -- persistence --------------------------------------------------------------------------
    def to_text(self) -> str:
        return "".join(f"{w}\t{int(c)}\n" for w, c in zip(self.words, self.counts, strict=True))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``word<TAB>count`` lines (``path`` is a file, or a directory that gets vocab.txt)."""
        target = Path(path)
        if target.is_dir():
            target = target / VOCAB_NAME
        target.write_text(self.to_text(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        target = Path(path)
        if target.is_dir():
            target = target / VOCAB_NAME
        if not target.is_file():
            raise ModelDirError(f"{target}: no such vocabulary file")
        words: list[str] = []
        counts: list[int] = []
        with open(target, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\n")
                if not line:
                    continue
                word, sep, count = line.rpartition("\t")
                if not sep:
                    raise ModelDirError(f"{target}:{number}: expected 'word<TAB>count'")
                try:
                    counts.append(int(count))
                except ValueError as exc:
                    raise ModelDirError(f"{target}:{number}: count {count!r} is not an integer") from exc
                words.append(word)
        return cls(words, counts)


def count_and_encode(token_lines: Iterable[Sequence[str]], *, min_count: int = 5, max_vocab: int | None = None,
                     ) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """One streaming pass that counts words and records the corpus as provisional ids.

    Returns ``(vocab, ids, line_ends)``: ``ids`` (int32) holds every in-vocabulary token of the
    corpus as a final vocabulary index, ``line_ends`` (int64) the end offset in ``ids`` of each line
    (lines are sentence boundaries; a context window never crosses one). Multi-epoch trainers use
    this to avoid re-reading and re-tokenizing the text each epoch (the corpus is held as 4 bytes a
    token, not as text).
    """
    provisional: dict[str, int] = {}
    chunks: list[np.ndarray] = []
    ends: list[int] = []
    buffer: list[int] = []
    position = 0
    setdefault = provisional.setdefault
    for tokens in token_lines:
        # Provisional ids in first-occurrence order; len() is read before setdefault inserts.
        buffer += [setdefault(token, len(provisional)) for token in tokens]
        position += len(tokens)
        ends.append(position)
        if len(buffer) >= 1 << 20:
            chunks.append(np.asarray(buffer, dtype=np.int32))
            buffer = []
    chunks.append(np.asarray(buffer, dtype=np.int32))
    if not provisional:
        raise InputError("the corpus has no tokens")
    raw = np.concatenate(chunks)
    counts = np.bincount(raw, minlength=len(provisional)).tolist()
    vocab = Vocabulary.from_counts(dict(zip(provisional, counts, strict=True)), min_count=min_count,
                                   max_vocab=max_vocab, total_tokens=position)
    remap = np.full(len(counts), -1, dtype=np.int32)
    for final, word in enumerate(vocab.words):
        remap[provisional[word]] = final
    mapped = remap[raw]
    keep = mapped >= 0
    # Line ends in the filtered stream: count kept tokens before each raw end.
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    line_ends = kept_before[np.asarray(ends, dtype=np.int64)]
    return vocab, mapped[keep], line_ends
