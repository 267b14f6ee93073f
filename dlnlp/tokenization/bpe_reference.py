"""A small pure-Python BPE trainer written from the algorithm, used by the tests as an oracle.

Byte-pair encoding (Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword
Units"; byte-level as in GPT-2): start from words split into single symbols; repeatedly count
every adjacent pair of symbols *within* words, weighted by word frequency, and merge the most
frequent pair everywhere into a new symbol, until the vocabulary reaches its budget.

Details chosen to match HF ``tokenizers``' ``BpeTrainer`` (so that, given the same words, both
learn the same merges in the same order):

- Vocabulary ids: the special tokens first (in the given order), then the alphabet (every character
  of the words plus the initial alphabet) sorted by code point, then each merged symbol in the order
  it is created. The vocabulary size counts all of them.
- Stop when the vocabulary reaches ``vocab_size``, when no pair is left, or when the best pair's
  count is below ``min_frequency`` (or below 1).
- **Tie-breaking**: among pairs with the same count, the pair whose (left id, right id) is smallest
  wins, comparing the left id first; ids as above, so an older symbol beats a newer one and, among
  characters, the lower code point wins.
- A merge rewrites each word left to right without overlap (``a a a`` with pair ``(a, a)`` becomes
  ``aa a``).
- If the merged string already exists in the vocabulary (reached by a different merge path), the
  merge is still recorded but the vocabulary does not grow.

It recounts all pairs after every merge (quadratic; fine for the small corpora of the tests),
where HF keeps the counts incrementally with a priority queue; the results are the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class BPEResult:
    vocab: dict[str, int]
    merges: list[tuple[str, str]]

    def encode_word(self, word: str) -> list[str]:
        """Apply the merges to one word in rank order (how a trained BPE tokenizes)."""
        ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        symbols = list(word)
        while len(symbols) > 1:
            pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False))]
            ranked = [(rank, i) for rank, i in pairs if rank is not None]
            if not ranked:
                break
            best = min(ranked)[0]
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and ranks.get((symbols[i], symbols[i + 1])) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols


def count_words(words: Iterable[str]) -> Counter:
    """Word frequencies from an iterable of (pre-tokenized) words."""
    return Counter(words)


def train_bpe(
    words: Mapping[str, int] | Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 0,
    special_tokens: Sequence[str] = (),
    initial_alphabet: Iterable[str] = (),
) -> BPEResult:
    """Learn BPE merges from word frequencies (a mapping word -> count, or an iterable of words)."""
    counts = dict(words) if isinstance(words, Mapping) else dict(Counter(words))
    vocab: dict[str, int] = {}
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    alphabet = set(initial_alphabet)
    for word in counts:
        alphabet.update(word)
    for char in sorted(alphabet):  # sorted by code point
        vocab.setdefault(char, len(vocab))
    strings = {token_id: token for token, token_id in vocab.items()}

    corpus = [([vocab[c] for c in word], count) for word, count in counts.items() if word]
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pair_counts: Counter = Counter()
        for symbols, count in corpus:
            for pair in zip(symbols, symbols[1:], strict=False):
                pair_counts[pair] += count
        if not pair_counts:
            break
        # Highest count first; on a tie the smallest (left id, right id).
        (left, right), best = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if best < 1 or best < min_frequency:
            break
        token = strings[left] + strings[right]
        if token not in vocab:
            vocab[token] = len(vocab)
            strings[vocab[token]] = token
        new_id = vocab[token]
        merges.append((strings[left], strings[right]))
        for index, (symbols, count) in enumerate(corpus):
            if len(symbols) < 2:
                continue
            merged: list[int] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            if len(merged) != len(symbols):
                corpus[index] = (merged, count)
    return BPEResult(vocab=vocab, merges=merges)
