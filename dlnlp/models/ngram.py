"""Count-based n-gram language models: modified Kneser-Ney (KenLM's estimator), KN, Witten-Bell,
add-k, maximum likelihood and stupid backoff, all stored as one backoff trie (numpy, no torch).

Every model, whatever the smoothing, is kept in the form an ARPA file has, so scoring, generation
and ARPA export are shared::

    log10 p(w | h) = logp(h' w) + sum of logbo(g) over the contexts g of h longer than h'

where ``h' w`` is the longest n-gram in the model ending the history (Katz's backoff evaluation;
interpolated models write the already-interpolated probability and the interpolation weight as
the backoff, as KenLM's lmplz and SRILM do). Per order n the model holds ``keys[n]`` (sorted int64
trie keys, see :mod:`dlnlp.models.ngram_counts`), ``logp[n]`` and, below the top order,
``logbo[n]`` (log10; ``-inf`` stands for probability 0).

Modified Kneser-Ney follows KenLM's ``lmplz`` exactly (Heafield et al. 2013; Chen & Goodman 1998):

* adjusted counts a(.): raw counts at the top order; continuation counts N1+(. g) below it,
  except for n-grams starting with ``<s>``, which keep raw counts;
* three discounts per order from counts-of-counts t_k of adjusted counts (Chen & Goodman eq. 26):
  Y = t1 / (t1 + 2 t2),  D_k = k - (k + 1) Y t_{k+1} / t_k  for k = 1, 2, 3+;
* p(w | h) = (a(hw) - D(a(hw))) / sum_x a(hx) + gamma(h) p(w | h[1:]),
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / sum_x a(hx), which is also h's backoff;
* the unigram level interpolates with the uniform distribution over the vocabulary without
  ``<s>`` (so ``<unk>``, never seen, gets gamma(empty) / (|V| - 1));
* when counts-of-counts leave a discount undefined or out of range (tiny or artificial corpora),
  the discounts fall back to lmplz's ``--discount_fallback`` defaults 0.5, 1, 1.5, with a warning.

Scoring follows KenLM too: each line is ``<s> w1 .. wk </s>``; ``<s>`` is context only; an
out-of-vocabulary word is scored as ``<unk>`` (its context's backoffs plus p(<unk>)), and since
no n-gram continues ``<unk>`` the next word starts from an empty context.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlnlp.errors import InputError, ModelDirError, UsageError
from dlnlp.models.ngram_counts import (
    BOS_ID,
    EOS_ID,
    SPECIALS,
    UNK_ID,
    NgramCounts,
    Vocabulary,
    adjusted_counts,
    count_corpus,
    encode_lines,
    ngram_words,
)
from dlnlp.models.registry import Family, register

SMOOTHING = ("modified-kn", "kn", "witten-bell", "add-k", "mle", "stupid-backoff")
NORMALIZED = {"modified-kn": True, "kn": True, "witten-bell": True, "add-k": True, "mle": True,
              "stupid-backoff": False}
# lmplz --discount_fallback defaults, for orders whose counts-of-counts cannot give discounts.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
STUPID_BACKOFF_ALPHA = 0.4  # Brants et al. (2007)
# Each order is a counting pass and a table: 5-grams are the usual, KenLM builds up to 6 by default;
# far beyond the longest sentence every order is empty, so orders past 64 only cost time.
MAX_ORDER = 64
KIND = "ngram"
FORMAT_VERSION = 1
LOG10_ZERO = -99.0  # how ARPA writes log10(0)


def check_generate_args(*, num: int, max_tokens: int, temperature: float, top_k: int | None,
                        top_p: float | None = None, seed: int = 0) -> None:
    """Refuse sampling options that mean nothing, naming the option as ``ngram generate`` spells it.

    Temperature, top-k and top-p mean what they mean for every sampler
    (:func:`dlnlp.kernels.sampling.check_sampling_args`): temperature 0 is greedy, top-k 0 no limit.
    """
    from dlnlp.kernels.sampling import check_sampling_args

    if num < 1:
        raise InputError(f"--num must be >= 1, got {num}")
    if max_tokens < 1:
        raise InputError(f"--max-tokens must be >= 1, got {max_tokens}")
    try:
        check_sampling_args(temperature, top_k, top_p)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")


@dataclass
class NgramModel:
    """A backoff trie over a vocabulary; see the module docstring for the scoring rule."""

    vocab: list[str]
    keys: list[np.ndarray]
    logp: list[np.ndarray]
    logbo: list[np.ndarray]  # orders 1..N-1
    smoothing: str = "modified-kn"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[str, int] | None = None

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def normalized(self) -> bool:
        return NORMALIZED.get(self.smoothing, True)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {w: i for i, w in enumerate(self.vocab)}
        return self._index

    def counts(self) -> list[int]:
        return [len(k) for k in self.keys]

    # -- lookups ---------------------------------------------------------------------------------

    def _find(self, n: int, keys: np.ndarray) -> np.ndarray:
        """Index of each key among order-n n-grams, -1 where absent (keys < 0 are absent)."""
        table = self.keys[n - 1]
        if len(table) == 0:
            return np.full(np.shape(keys), -1, dtype=np.int64)
        pos_c = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        found = (keys >= 0) & (table[pos_c] == keys)
        return np.where(found, pos_c, -1)

    def encode(self, lines: list[str]) -> np.ndarray:
        """The id stream ``<s> w.. </s> <s> ..`` of lines; unknown words become ``<unk>``."""
        vocab = Vocabulary.__new__(Vocabulary)
        vocab.index = self.index
        ids, _ = encode_lines(lines, vocab, grow=False)
        return ids

    def score_stream(self, tokens: np.ndarray) -> np.ndarray:
        """log10 p of every position of an id stream (NaN at ``<s>`` positions, which are not scored)."""
        return self.score_stream_orders(tokens)[0]

    def score_stream_orders(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log10 p, n-gram order used) of every position of an id stream, as KenLM's ``query`` reports
        them: the order is the length of the longest n-gram found ending at the word."""
        V = len(self.vocab)
        tokens = np.asarray(tokens, dtype=np.int64)
        ids = [tokens]
        for n in range(2, self.order + 1):
            prev = ids[-1]
            keys = np.full(len(tokens), -1, dtype=np.int64)
            ok = (prev[:-1] >= 0) & (tokens[1:] != BOS_ID)
            keys[1:][ok] = prev[:-1][ok] * V + tokens[1:][ok]
            ids.append(self._find(n, keys))
        # Longest match: orders found without a gap from the unigram up.
        match = np.ones(len(tokens), dtype=np.int64)
        for n in range(2, self.order + 1):
            match = np.where((ids[n - 1] >= 0) & (match == n - 1), n, match)
        logprob = np.zeros(len(tokens), dtype=np.float64)
        for n in range(1, self.order + 1):
            sel = match == n
            logprob[sel] = self.logp[n - 1][ids[n - 1][sel]]
        # Backoffs of the contexts longer than the match: context of length k ends at i-1.
        for k in range(1, self.order):
            ctx = np.full(len(tokens), -1, dtype=np.int64)
            ctx[1:] = ids[k - 1][:-1]
            use = (match <= k) & (ctx >= 0)
            if k == 1:
                use &= tokens != BOS_ID
            logprob[use] += self.logbo[k - 1][ctx[use]]
        logprob[tokens == BOS_ID] = np.nan
        return logprob, match

    def score_words(self, lines: list[str]) -> Iterator[list[tuple[str, int, int, float]]]:
        """Per line: (word, id, order, log10 p) of each word and of ``</s>``; an OOV word has the id of
        ``<unk>`` (:data:`UNK_ID`, 0 as in KenLM)."""
        tokens = self.encode(lines)
        logprob, order = self.score_stream_orders(tokens)
        starts = np.flatnonzero(tokens == BOS_ID)
        ends = np.append(starts[1:], len(tokens))
        ids, orders, probs = tokens.tolist(), order.tolist(), logprob.tolist()
        for line, start, end in zip(lines, starts.tolist(), ends.tolist(), strict=True):
            words = [*(w for w in line.split() if w not in SPECIALS), self.vocab[EOS_ID]]  # as split_sentences
            yield [(w, ids[i], orders[i], probs[i]) for w, i in zip(words, range(start + 1, end), strict=True)]

    def score_lines(self, lines: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per line: total log10 probability, scored tokens (words + </s>), OOV count."""
        tokens = self.encode(lines)
        logprob = self.score_stream(tokens)
        starts = np.flatnonzero(tokens == BOS_ID)
        scored = np.where(np.isnan(logprob), 0.0, logprob)
        totals = np.add.reduceat(scored, starts) if len(starts) else np.zeros(0)
        lengths = np.diff(np.append(starts, len(tokens))) - 1
        oov = np.add.reduceat((tokens == UNK_ID).astype(np.int64), starts) if len(starts) else np.zeros(0)
        return totals, lengths, oov

    def evaluate(self, lines: Iterable[str], chunk_lines: int = 20000) -> dict:
        """Perplexity and cross-entropy with and without OOVs, as KenLM's ``query`` reports them."""
        total = total_iv = 0.0
        tokens = oovs = sentences = 0
        buffer: list[str] = []

        def flush() -> None:
            nonlocal total, total_iv, tokens, oovs, sentences
            ids = self.encode(buffer)
            lp = self.score_stream(ids)
            scored = ids != BOS_ID
            is_oov = ids == UNK_ID
            total += float(lp[scored].sum())
            total_iv += float(lp[scored & ~is_oov].sum())
            tokens += int(scored.sum())
            oovs += int(is_oov.sum())
            sentences += len(buffer)
            buffer.clear()

        for line in lines:
            buffer.append(line)
            if len(buffer) >= chunk_lines:
                flush()
        if buffer:
            flush()
        if sentences == 0:
            raise InputError("the evaluation text is empty")
        ppl = 10.0 ** (-total / tokens) if tokens else math.nan
        iv_tokens = tokens - oovs
        ppl_iv = 10.0 ** (-total_iv / iv_tokens) if iv_tokens else math.nan
        return {
            "sentences": sentences, "tokens": tokens, "oov": oovs, "log10_prob": total,
            "perplexity": ppl, "cross_entropy": -total / tokens * math.log2(10) if tokens else math.nan,
            "log10_prob_excl_oov": total_iv, "tokens_excl_oov": iv_tokens, "perplexity_excl_oov": ppl_iv,
            "cross_entropy_excl_oov": -total_iv / iv_tokens * math.log2(10) if iv_tokens else math.nan,
            "normalized": self.normalized,
        }

    # -- full next-word distributions --------------------------------------------------------------

    def context_ids(self, history: list[int]) -> list[int]:
        """Indices among orders 1..N-1 of the last k words of ``history`` (stopping at the first miss)."""
        out: list[int] = []
        V = len(self.vocab)
        for k in range(1, min(self.order - 1, len(history)) + 1):
            words = history[-k:]
            if BOS_ID in words[1:]:
                break
            idx = words[0]
            ok = True
            for n, w in enumerate(words[1:], start=2):
                idx = int(self._find(n, np.array([idx * V + w]))[0])
                if idx < 0:
                    ok = False
                    break
            if not ok:
                break
            out.append(idx)
        return out

    def next_log10(self, history: list[int]) -> np.ndarray:
        """log10 p(w | history) for every word id (``<s>`` gets -inf: it is never predicted)."""
        V = len(self.vocab)
        lp = self.logp[0].astype(np.float64).copy()
        for k, ctx in enumerate(self.context_ids(history), start=1):
            lp += self.logbo[k - 1][ctx]
            table = self.keys[k]
            lo, hi = np.searchsorted(table, [ctx * V, (ctx + 1) * V])
            lp[table[lo:hi] % V] = self.logp[k][lo:hi]
        lp[BOS_ID] = -np.inf
        return lp

    def generate(self, *, num: int = 1, max_tokens: int = 30, temperature: float = 1.0, top_k: int | None = 0,
                 top_p: float | None = None, seed: int = 0, prompt: str = "", allow_unk: bool = False
                 ) -> Iterator[str]:
        """Sample sentences word by word (ancestral sampling), stopping at ``</s>``.

        ``temperature`` 0 is greedy (the likeliest word each time), ``top_k`` 0 no limit, ``top_p``
        nucleus sampling, filtered as every dlnlp sampler does
        (:func:`dlnlp.kernels.sampling.filter_scores_numpy`). Sentences are yielded one at a time as
        they are sampled (so ``ngram generate --num 100000 | head -1`` prints at once); the options
        are checked before the first one.
        """
        check_generate_args(num=num, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            seed=seed)
        return self._generate(num, max_tokens, temperature, top_k, top_p, seed, prompt, allow_unk)

    def _generate(self, num: int, max_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                  seed: int, prompt: str, allow_unk: bool) -> Iterator[str]:
        from dlnlp.kernels.sampling import filter_scores_numpy

        rng = np.random.default_rng(seed)
        prompt_ids = [self.index.get(w, UNK_ID) for w in prompt.split()]
        for _ in range(num):
            history = [BOS_ID, *prompt_ids]
            words = list(prompt.split())
            for _ in range(max_tokens):
                lp = self.next_log10(history)
                if not allow_unk:
                    lp[UNK_ID] = -np.inf
                logits = lp * math.log(10)
                if temperature == 0:
                    w = int(np.argmax(logits))
                else:
                    logits = filter_scores_numpy(logits, temperature, top_k, top_p)
                    logits -= logits.max()
                    probs = np.exp(logits)
                    probs /= probs.sum()
                    w = int(rng.choice(len(probs), p=probs))
                if w == EOS_ID:
                    break
                history.append(w)
                words.append(self.vocab[w])
            yield " ".join(words)

    # -- persistence -----------------------------------------------------------------------------

    def config(self) -> dict:
        from dlnlp.io.modeldir import make_config

        return make_config(KIND, FORMAT_VERSION, order=self.order, smoothing=self.smoothing,
                           normalized=self.normalized, vocab_size=len(self.vocab), ngram_counts=self.counts(),
                           **self.info)

    def tensors(self) -> dict[str, np.ndarray]:
        out = {}
        for n in range(1, self.order + 1):
            out[f"keys.{n}"] = np.ascontiguousarray(self.keys[n - 1], dtype=np.int64)
            out[f"logp.{n}"] = np.ascontiguousarray(self.logp[n - 1], dtype=np.float32)
            if n < self.order:
                out[f"logbo.{n}"] = np.ascontiguousarray(self.logbo[n - 1], dtype=np.float32)
        return out

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        from dlnlp.io.modeldir import write_model_dir

        return write_model_dir(path, self.config(), self.tensors(), {"vocab.txt": "\n".join(self.vocab) + "\n"},
                               force=force)

    @classmethod
    def load(cls, path: str | Path) -> NgramModel:
        from dlnlp.io.modeldir import load_weights, read_config

        config = read_config(path, KIND, (FORMAT_VERSION,))
        directory = Path(path)
        vocab_path = directory / "vocab.txt"
        if not vocab_path.is_file():
            raise ModelDirError(f"{directory}: no vocab.txt")
        vocab = vocab_path.read_text(encoding="utf-8").split("\n")[:-1]
        order = config.get("order")
        if type(order) is not int or order < 1:
            raise ModelDirError(f"{directory / 'config.json'}: 'order' must be an integer >= 1, got {order!r}")
        tensors = load_weights(directory, framework="np")
        try:
            keys = [tensors[f"keys.{n}"] for n in range(1, order + 1)]
            logp = [tensors[f"logp.{n}"] for n in range(1, order + 1)]
            logbo = [tensors[f"logbo.{n}"] for n in range(1, order)]
        except KeyError as exc:
            raise ModelDirError(f"{directory}: model.safetensors lacks {exc.args[0]}") from exc
        if len(vocab) != len(keys[0]):
            raise ModelDirError(f"{directory}: vocab.txt has {len(vocab)} words, the model {len(keys[0])}")
        info = {k: v for k, v in config.items()
                if k not in ("kind", "format_version", "dlnlp_version", "order", "smoothing", "normalized",
                             "vocab_size", "ngram_counts")}
        return cls(vocab, keys, logp, logbo, config.get("smoothing", "modified-kn"), info)


# ---------------------------------------------------------------------------------------------
# Estimation


def kn_discounts(adjusted: np.ndarray, modified: bool = True) -> tuple[tuple[float, float, float], bool]:
    """Discounts (D1, D2, D3+) from counts-of-counts; the bool says whether they were estimable."""
    t = [int(np.count_nonzero(adjusted == k)) for k in range(1, 5)]
    if t[0] == 0 or t[1] == 0 or (modified and (t[2] == 0 or t[3] == 0)):
        return FALLBACK_DISCOUNTS if modified else (0.5, 0.5, 0.5), False
    y = t[0] / (t[0] + 2.0 * t[1])
    if not modified:
        return (y, y, y), 0.0 < y < 1.0
    d = tuple(k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3))
    ok = all(0.0 <= d[k - 1] <= k for k in (1, 2, 3))
    return (d if ok else FALLBACK_DISCOUNTS), ok


def _log10(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(x)


def estimate(counts: NgramCounts, smoothing: str = "modified-kn", *, k: float = 1.0,
             discounts: list[tuple[float, float, float]] | None = None, warn=None) -> NgramModel:
    """Turn counts into a backoff trie with the chosen smoothing (see the module docstring)."""
    if smoothing not in SMOOTHING:
        raise UsageError(f"--smoothing must be one of {', '.join(SMOOTHING)}")
    V = len(counts.vocab)
    N = counts.order
    orders = counts.orders
    keys = [o.keys for o in orders]
    info: dict = {"tokens": counts.tokens, "sentences": counts.sentences}
    uniform = 1.0 / (V - 1)  # the vocabulary without <s>, as lmplz
    probs: list[np.ndarray] = _Probs()
    logbo: list[np.ndarray] = []

    if smoothing in ("modified-kn", "kn"):
        adj = adjusted_counts(orders, V)
        used = []
        for n in range(1, N + 1):
            if discounts is not None:
                d, ok = tuple(discounts[n - 1]), True
            else:
                d, ok = kn_discounts(adj[n - 1], modified=smoothing == "modified-kn")
                if not ok and warn is not None:
                    warn(f"order {n}: counts-of-counts leave the Kneser-Ney discounts undefined (tiny or "
                         f"artificial corpus); using the fallback discounts {' '.join(map(str, d))}")
            used.append([float(x) for x in d])
        info["discounts"] = used
        for n in range(1, N + 1):
            a = adj[n - 1].astype(np.float64)
            table = np.array([0.0, *used[n - 1]])
            disc = table[np.minimum(adj[n - 1], 3)]
            if n == 1:
                den = a.sum()
                gamma = disc.sum() / den
                probs.append((a - disc) / den + gamma * uniform)
                continue
            ctx = keys[n - 1] // V
            T = len(keys[n - 2])
            den = np.bincount(ctx, weights=a, minlength=T)
            gnum = np.bincount(ctx, weights=disc, minlength=T)
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(den > 0, gnum / den, 1.0)
            probs.append((a - disc) / den[ctx] + gamma[ctx] * probs[n - 2][orders[n - 1].suffix])
            logbo.append(_log10(gamma).astype(np.float32))
    elif smoothing == "witten-bell":
        for n in range(1, N + 1):
            c = orders[n - 1].raw.astype(np.float64)
            if n == 1:
                total, types = c.sum(), float(np.count_nonzero(c))
                probs.append(c / (total + types) + types / (total + types) * uniform)
                continue
            ctx = keys[n - 1] // V
            T = len(keys[n - 2])
            den = np.bincount(ctx, weights=c, minlength=T)
            types = np.bincount(ctx, minlength=T).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(den > 0, types / (den + types), 1.0)
            probs.append(c / (den[ctx] + types[ctx]) + gamma[ctx] * probs[n - 2][orders[n - 1].suffix])
            logbo.append(_log10(gamma).astype(np.float32))
    else:
        # Backoff (not interpolated) estimates: explicit probabilities for seen n-grams; the mass
        # left in a context goes to its lower order (add-k), to nothing (mle), or a fixed 0.4 (stupid).
        if smoothing == "add-k" and k <= 0:
            raise InputError("--k must be positive")
        info["k"] = k if smoothing == "add-k" else None
        for n in range(1, N + 1):
            c = orders[n - 1].raw.astype(np.float64)
            if n == 1:
                c = c.copy()
                c[BOS_ID] = 0.0
                total = c.sum()
                p = (c + k) / (total + k * (V - 1)) if smoothing == "add-k" else c / total
                probs.append(p)
                continue
            ctx = keys[n - 1] // V
            T = len(keys[n - 2])
            den = np.bincount(ctx, weights=c, minlength=T)
            if smoothing == "add-k":
                types = np.bincount(ctx, minlength=T).astype(np.float64)
                p = (c + k) / (den[ctx] + k * (V - 1))
                left = k * (V - 1 - types) / (den + k * (V - 1))
                lower = np.bincount(ctx, weights=probs[n - 2][orders[n - 1].suffix], minlength=T)
                with np.errstate(divide="ignore", invalid="ignore"):
                    bo = np.where(den > 0, left / np.maximum(1.0 - lower, 1e-300), 1.0)
                logbo.append(_log10(bo).astype(np.float32))
            else:
                p = c / den[ctx]
                value = 0.0 if smoothing == "mle" else STUPID_BACKOFF_ALPHA
                logbo.append(_log10(np.where(den > 0, value, 1.0)).astype(np.float32))
            probs.append(p)
    logp = [_to_logp(p) for p in probs]
    logp[0][BOS_ID] = -np.inf
    # N-grams that are no context (those ending in </s>, and <unk> unless --min-count put it in the
    # text) got gamma = 1 above, i.e. no backoff, which is what lmplz writes for them.
    return NgramModel(list(counts.vocab), keys, logp, logbo, smoothing, info)


class _Probs(list):
    """Per-order probabilities, kept in float64 only while the next order needs them.

    Older orders become float32 log10 right away (what the model stores, and KenLM's precision),
    so estimation holds about 40 bytes per n-gram instead of 100.
    """

    def append(self, p: np.ndarray) -> None:
        if len(self) and self[-1].dtype == np.float64:
            self[-1] = _to_logp(self[-1])
        super().append(p)


def _to_logp(p: np.ndarray) -> np.ndarray:
    if p.dtype == np.float32:
        return p  # already converted
    return np.minimum(_log10(p), 0.0).astype(np.float32)  # lmplz clamps rounding above 0


def train(lines: Iterable[str], order: int = 3, smoothing: str = "modified-kn", *, k: float = 1.0,
          min_count: int = 1, max_vocab: int | None = None, memory_bytes: int | None = None,
          discounts: list[tuple[float, float, float]] | None = None, warn=None, temp_dir: str | None = None,
          on_chunk=None) -> NgramModel:
    """Count and estimate in one call: ``train(open('corpus.txt'), order=5)``."""
    if not 1 <= order <= MAX_ORDER:
        raise InputError(f"--order must be between 1 and {MAX_ORDER}, got {order}")
    if smoothing not in SMOOTHING:
        raise UsageError(f"--smoothing must be one of {', '.join(SMOOTHING)}")
    if min_count < 1:
        raise InputError("--min-count must be at least 1")
    if max_vocab is not None and max_vocab < 1:
        raise InputError("--max-vocab must be at least 1")
    counts = count_corpus(lines, order, min_count=min_count, max_vocab=max_vocab, memory_bytes=memory_bytes,
                          temp_dir=temp_dir, on_chunk=on_chunk)
    if counts.tokens == counts.sentences and warn is not None:
        warn("the corpus has no words, only empty lines")
    model = estimate(counts, smoothing, k=k, discounts=discounts, warn=warn)
    model.info["dropped_special_tokens"] = counts.dropped_specials
    if counts.dropped_specials and warn is not None:
        warn(f"{counts.dropped_specials} literal <s>, </s> or <unk> tokens in the corpus were treated as "
             "whitespace (as lmplz does)")
    return model


def ngram_rows(model: NgramModel, n: int) -> np.ndarray:
    """Word-id rows of the order-n n-grams of a model."""
    return ngram_words(model.keys[:n], len(model.vocab))


def load_arpa(path: str | os.PathLike, warn=None, *, quiet: bool = True) -> NgramModel:
    """An ARPA file (plain, ``.gz``, ``.bz2``, ``.xz``) as an :class:`NgramModel` (smoothing ``"arpa"``);
    progress on stderr unless ``quiet``."""
    from dlnlp.io.arpa import read_arpa_tables

    tables = read_arpa_tables(path, warn=warn, quiet=quiet)
    return from_ngrams(tables.vocab, tables.rows, tables.logp, tables.logbo, "arpa", tables.info)


def from_ngrams(vocab: list[str], rows: list[np.ndarray], logp: list[np.ndarray], logbo: list[np.ndarray],
                smoothing: str = "arpa", info: dict | None = None) -> NgramModel:
    """Build the trie from explicit n-grams (word-id rows per order); vocab[0:3] = <unk>, <s>, </s>.

    Every n-gram's context must itself be an n-gram of the order below (ARPA requires it); rows
    whose context is missing are reported as an error naming the first one.
    """
    V = len(vocab)
    N = len(rows)
    order1 = np.asarray(rows[0][:, 0])
    perm = np.argsort(order1)
    if not np.array_equal(order1[perm], np.arange(V)):
        raise InputError("ARPA: the unigrams do not match the vocabulary")
    keys = [np.arange(V, dtype=np.int64)]
    out_p = [np.asarray(logp[0], dtype=np.float64)[perm]]
    out_bo = [np.asarray(logbo[0], dtype=np.float64)[perm]] if N > 1 else []
    for n in range(2, N + 1):
        r = rows[n - 1]
        idx = r[:, 0].astype(np.int64)
        for m in range(2, n):
            table = keys[m - 1]
            q = idx * V + r[:, m - 1]
            pos = np.minimum(np.searchsorted(table, q), max(len(table) - 1, 0))
            found = (len(table) > 0) & (table[pos] == q)
            if not found.all():
                bad = int(np.flatnonzero(~found)[0])
                words = " ".join(vocab[w] for w in r[bad])
                raise InputError(f"ARPA: the context of the {n}-gram '{words}' is not among the {n - 1}-grams")
            idx = pos
        k = idx * V + r[:, -1]
        perm = np.argsort(k, kind="stable")
        k = k[perm]
        if len(k) > 1 and (np.diff(k) == 0).any():
            raise InputError(f"ARPA: duplicate {n}-grams")
        keys.append(k)
        out_p.append(np.asarray(logp[n - 1], dtype=np.float64)[perm])
        if n < N:
            out_bo.append(np.asarray(logbo[n - 1], dtype=np.float64)[perm])
    return NgramModel(list(vocab), keys, out_p, out_bo, smoothing, dict(info or {}))


def _load_ngram(directory: Path, device: object = None) -> tuple[NgramModel, dict]:
    from dlnlp.io.modeldir import read_config

    return NgramModel.load(directory), read_config(directory, KIND, (FORMAT_VERSION,))


register(Family(KIND, _load_ngram, (FORMAT_VERSION,), save=NgramModel.save, description="backoff n-gram LM"))
