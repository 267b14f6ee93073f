"""Intrinsic evaluation of word vectors: word analogies and word-pair similarity.

Conventions follow gensim's ``KeyedVectors.evaluate_word_analogies`` and ``evaluate_word_pairs`` so
the numbers are comparable:

* ``restrict`` keeps the first N rows (the most frequent words); case-insensitive matching maps each
  upper-cased word to its most frequent spelling among them.
* Analogies (Mikolov et al. 2013, ``questions-words.txt`` layout: ``: section`` headers, then
  ``a b c d`` lines). A question whose four words are not all covered is skipped (counted in
  ``questions`` and ``oov`` but not in ``covered``). 3CosAdd answers ``argmax_x cos(x, b - a + c)``
  over the unit vectors, excluding a, b and c; 3CosMul (Levy and Goldberg 2014) answers
  ``argmax_x cos'(x,b) cos'(x,c) / (cos'(x,a) + 1e-3)`` with ``cos' = (cos + 1) / 2``.
  gensim's score is accuracy over covered questions; we report that and accuracy over all
  questions (uncovered ones counted wrong). Semantic sections are those whose name does not start
  with ``gram`` (the first five sections of the Google set), syntactic the ``gram*`` ones.
* Similarity (WordSim-353 layout: ``word1<TAB>word2<TAB>score``, ``#`` comments): Spearman's rho
  (and Pearson's r) between human scores and cosine similarity over the pairs whose words are
  covered; ``pairs_used`` / ``pairs_skipped`` report the coverage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import InputError
from dlnlp.io.vectors import KeyedVectors

METHODS = ("3cosadd", "3cosmul")
# gensim asks most_similar for 5 candidates and takes the first that is not a question word.
CANDIDATES = 5


def _ok_vocab(kv: KeyedVectors, restrict: int | None, case_insensitive: bool) -> dict[str, int]:
    limit = len(kv) if restrict is None else min(restrict, len(kv))
    keys = kv.words[:limit]
    # reversed: the most frequent spelling wins when upper-casing merges words.
    if case_insensitive:
        return {w.upper(): i for i, w in reversed(list(enumerate(keys)))}
    return {w: i for i, w in reversed(list(enumerate(keys)))}


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from exc


def _accuracy(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def evaluate_analogies(kv: KeyedVectors, path: str | os.PathLike, restrict: int | None = 30000,
                       method: str = "3cosadd", case_insensitive: bool = True,
                       batch_size: int = 256) -> dict[str, Any]:
    """Accuracy on an analogy file; returns totals, semantic/syntactic splits and per-section figures."""
    if method not in METHODS:
        raise InputError(f"unknown analogy method {method!r} (expected {' or '.join(METHODS)})")
    path = Path(path)
    ok_vocab = _ok_vocab(kv, restrict, case_insensitive)
    limit = len(kv) if restrict is None else min(restrict, len(kv))
    sections: list[dict[str, Any]] = []
    questions: list[tuple[int, int, int, int, str, str, str]] = []  # a, b, c, expected ids; a, b, c keys
    section: dict[str, Any] | None = None
    for number, line in enumerate(_read_lines(path), start=1):
        if line.startswith(": "):
            section = {"section": line[2:].strip(), "questions": 0, "covered": 0, "correct": 0, "_items": []}
            sections.append(section)
            continue
        words = line.split()
        if not words:
            continue
        if section is None:
            raise InputError(f"{path}:{number}: a question before the first ': section' header")
        if len(words) != 4:
            continue  # gensim skips malformed lines
        if case_insensitive:
            words = [w.upper() for w in words]
        section["questions"] += 1
        if any(w not in ok_vocab for w in words):
            continue
        section["covered"] += 1
        ids = [ok_vocab[w] for w in words]
        section["_items"].append(len(questions))
        questions.append((ids[0], ids[1], ids[2], ids[3], words[0], words[1], words[2]))
    if not sections:
        raise InputError(f"{path}: no ': section' header; not an analogy file")

    correct = _solve(kv, questions, limit, method, case_insensitive, batch_size)
    for sec in sections:
        sec["correct"] = int(sum(correct[i] for i in sec.pop("_items")))
        sec["accuracy"] = _accuracy(sec["correct"], sec["questions"])
        sec["accuracy_covered"] = _accuracy(sec["correct"], sec["covered"])

    def total(group: list[dict[str, Any]]) -> dict[str, Any]:
        q = sum(s["questions"] for s in group)
        cov = sum(s["covered"] for s in group)
        ok = sum(s["correct"] for s in group)
        return {"questions": q, "covered": cov, "correct": ok, "accuracy": _accuracy(ok, q),
                "accuracy_covered": _accuracy(ok, cov)}

    semantic = [s for s in sections if not s["section"].startswith("gram")]
    syntactic = [s for s in sections if s["section"].startswith("gram")]
    return {"file": str(path), "method": method, "restrict": limit, **total(sections),
            "semantic": total(semantic), "syntactic": total(syntactic), "sections": sections}


def _solve(kv: KeyedVectors, questions: list, limit: int, method: str, case_insensitive: bool,
           batch_size: int) -> list[bool]:
    if not questions:
        return []
    vectors = kv.vectors[:limit]
    norms = kv.norms[:limit]
    unit = kv.normalized()
    words = kv.words
    q = np.asarray([item[:4] for item in questions], dtype=np.int64)
    results: list[bool] = []
    for start in range(0, len(q), batch_size):
        block = q[start:start + batch_size]
        ua, ub, uc = unit[block[:, 0]], unit[block[:, 1]], unit[block[:, 2]]
        if method == "3cosadd":
            # gensim: unit-normalize the mean of (b, c, -a) unit vectors; rank by dot / norm.
            mean = (ub + uc - ua) / 3.0
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            scores = (mean.astype(np.float32) @ vectors.T) / norms
        else:
            unit_r = unit[:limit]
            cos = [(1.0 + u @ unit_r.T) / 2.0 for u in (ua, ub, uc)]
            scores = cos[1] * cos[2] / (cos[0] + 1e-3)
        # Exclude the three question words themselves (by index, as gensim does).
        rows = np.arange(len(block))
        for col in range(3):
            inside = block[:, col] < limit
            scores[rows[inside], block[inside, col]] = -np.inf
        k = min(CANDIDATES, limit)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for row, item in zip(top, questions[start:start + batch_size], strict=True):
            ignore = set(item[4:7])
            predicted = None
            for candidate in row:
                predicted = words[candidate].upper() if case_insensitive else words[candidate]
                if predicted not in ignore:
                    break
            expected = words[item[3]].upper() if case_insensitive else words[item[3]]
            results.append(predicted == expected)
    return results


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / denominator) if denominator else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r between the (average-tie) ranks."""
    return pearson(_rank(np.asarray(x, dtype=np.float64)), _rank(np.asarray(y, dtype=np.float64)))


def evaluate_similarity(kv: KeyedVectors, path: str | os.PathLike, restrict: int | None = 300000,
                        case_insensitive: bool = True, delimiter: str = "\t") -> dict[str, Any]:
    """Spearman and Pearson correlation between human scores and cosine similarity on a word-pair file."""
    path = Path(path)
    ok_vocab = _ok_vocab(kv, restrict, case_insensitive)
    gold: list[float] = []
    model: list[float] = []
    skipped = 0
    invalid = 0
    unit = kv.normalized()
    for line in _read_lines(path):
        if not line or line.startswith("#"):
            continue
        parts = line.split(delimiter)
        if len(parts) != 3:
            invalid += 1
            continue
        a, b, score = (p.upper() for p in parts) if case_insensitive else parts
        try:
            value = float(score)
        except ValueError:
            invalid += 1
            continue
        if a not in ok_vocab or b not in ok_vocab:
            skipped += 1
            continue
        gold.append(value)
        model.append(float(np.dot(unit[ok_vocab[a]], unit[ok_vocab[b]])))
    if not gold and not skipped:
        raise InputError(f"{path}: no 'word1<TAB>word2<TAB>score' lines")
    used = len(gold)
    return {
        "file": str(path),
        "spearman": spearman(np.array(gold), np.array(model)) if used > 1 else float("nan"),
        "pearson": pearson(np.array(gold), np.array(model)) if used > 1 else float("nan"),
        "pairs_used": used,
        "pairs_skipped": skipped,
        "invalid_lines": invalid,
        "oov_ratio": skipped / (used + skipped) if used + skipped else 0.0,
    }
