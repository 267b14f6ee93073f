"""Data augmentation for distillation: new sentences the teacher labels (Tang et al. 2019, section 3.3).

For each example, ``factor`` times (their ``n_iter``, 20 in the paper):

    for each word w_i:  X_i ~ U[0, 1]
        X_i < p_mask                   -> w_i := [MASK]                                     (mask)
        p_mask <= X_i < p_mask + p_pos -> w_i := w ~ unigram(words with w_i's tag)           (pos)
    with probability p_ng: keep only an n-gram of the result, n ~ U{1..5}                    (ngram)

with ``p_mask = p_pos = 0.1`` and ``p_ng = 0.25`` as in the paper; duplicates (and copies of the
original) are dropped. A word's part of speech comes from a lexicon, not a tagger: each word's most
frequent tag in a CoNLL column file (``dlnlp data path conll2000``'s ``train.txt``: word, POS, chunk).
Words the lexicon does not know are never swapped. The replacement is drawn from the unigram
distribution of the words of that tag in the data being augmented (the paper's "unigram word
distribution re-normalized by the part-of-speech tag").

The augmented examples carry no label: the only way their class reaches a student is through the
teacher's output on them. Every draw comes from a generator seeded by ``(seed, example index)``, so
the same seed gives the same sentences in any order of computation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dlnlp.errors import InputError, UsageError
from dlnlp.io.labeled import Example

OPERATIONS = ("mask", "pos", "ngram")
MASK_TOKEN = "[MASK]"


def read_pos_lexicon(path: str | Path, word_column: int = 0, tag_column: int = 1) -> dict[str, str]:
    """Lowercased word -> its most frequent tag in a CoNLL column file (ties: the tag seen first)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such part-of-speech file (a CoNLL column file such as conll2000's train.txt)")
    counts: dict[str, Counter] = defaultdict(Counter)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            columns = line.split()
            if not columns:
                continue
            if len(columns) <= max(word_column, tag_column):
                raise InputError(f"{path}:{number}: expected a word and a tag column, got {line.strip()!r}")
            counts[columns[word_column].lower()][columns[tag_column]] += 1
    if not counts:
        raise InputError(f"{path}: no tagged words")
    return {word: tags.most_common(1)[0][0] for word, tags in counts.items()}


@dataclass
class Augmenter:
    """Tang et al.'s augmentation with the operations in ``operations`` (see the module docstring)."""

    operations: Sequence[str] = OPERATIONS
    factor: int = 20
    seed: int = 0
    p_mask: float = 0.1
    p_pos: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    lexicon: dict[str, str] | None = None
    mask_token: str = MASK_TOKEN

    def __post_init__(self) -> None:
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown:
            raise UsageError(f"--augment takes {', '.join(OPERATIONS)} (comma-separated), got {unknown[0]!r}")
        if self.factor < 1:
            raise UsageError(f"--augment-factor must be >= 1, got {self.factor}")
        if "pos" in self.operations and not self.lexicon:
            raise UsageError("--augment pos needs a part-of-speech lexicon (--pos-lexicon, a CoNLL file)")
        self._by_tag: dict[str, tuple[list[str], np.ndarray]] = {}

    def fit(self, texts: Sequence[str]) -> Augmenter:
        """The unigram distribution of each tag's words in ``texts`` (for ``pos``)."""
        if "pos" not in self.operations:
            return self
        counts: dict[str, Counter] = defaultdict(Counter)
        for text in texts:
            for word in text.split():
                tag = self.lexicon.get(word.lower())
                if tag is not None:
                    counts[tag][word] += 1
        self._by_tag = {}
        for tag, words in counts.items():
            ordered = sorted(words)  # a fixed order: the draws depend on the seed only
            weights = np.array([words[w] for w in ordered], dtype=np.float64)
            self._by_tag[tag] = (ordered, weights / weights.sum())
        return self

    def one(self, words: list[str], rng: np.random.Generator) -> list[str]:
        out = list(words)
        p_mask = self.p_mask if "mask" in self.operations else 0.0
        p_pos = self.p_pos if "pos" in self.operations else 0.0
        for i, word in enumerate(out):
            x = rng.random()
            if x < p_mask:
                out[i] = self.mask_token
            elif x < p_mask + p_pos:
                tag = self.lexicon.get(word.lower())
                if tag is not None and tag in self._by_tag:
                    choices, weights = self._by_tag[tag]
                    out[i] = choices[int(rng.choice(len(choices), p=weights))]
        if "ngram" in self.operations and out and rng.random() < self.p_ngram:
            n = int(rng.integers(1, self.max_ngram + 1))
            if n < len(out):
                start = int(rng.integers(0, len(out) - n + 1))
                out = out[start:start + n]
        return out

    def augment(self, examples: Sequence[Example]) -> list[Example]:
        """Up to ``factor`` new unlabeled examples per example (duplicates dropped), in input order. Only
        ``text`` changes; a pair's second text is kept."""
        out: list[Example] = []
        for index, example in enumerate(examples):
            rng = np.random.default_rng([self.seed, index])
            words = example.text.split()
            seen = {" ".join(words)}
            for _ in range(self.factor):
                text = " ".join(self.one(words, rng))
                if text and text not in seen:
                    seen.add(text)
                    out.append(replace(example, text=text, label=None,
                                       where=f"{example.where} (augmented)" if example.where else "augmented"))
        return out
