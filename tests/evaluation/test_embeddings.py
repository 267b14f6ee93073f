"""Analogy and similarity evaluation: hand-checked cases and agreement with gensim on the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from dlnlp.errors import InputError
from dlnlp.evaluation.embeddings import evaluate_analogies, evaluate_similarity, spearman
from dlnlp.io.vectors import KeyedVectors
from tests.conftest import shared_path


def _planted_vectors(seed=0, dim=20):
    """Countries/capitals and plurals with planted offsets plus noise, and filler words.

    Mixed case (``Paris`` and ``paris``) checks the case-insensitive matching: the first
    (most frequent) spelling wins.
    """
    rng = np.random.default_rng(seed)
    pairs = [("france", "Paris"), ("japan", "tokyo"), ("italy", "rome"), ("spain", "madrid"), ("china", "beijing")]
    plurals = [("cat", "cats"), ("dog", "dogs"), ("car", "cars"), ("tree", "trees")]
    capital = rng.standard_normal(dim)
    plural = rng.standard_normal(dim)
    words, rows = [], []
    for country, city in pairs:
        base = rng.standard_normal(dim)
        words += [country, city]
        rows += [base, base + capital + 1.1 * rng.standard_normal(dim)]
    for single, many in plurals:
        base = rng.standard_normal(dim)
        words += [single, many]
        rows += [base, base + plural + 1.1 * rng.standard_normal(dim)]
    words += ["paris", "filler1", "filler2", "rare"]
    rows += [rng.standard_normal(dim) for _ in range(4)]
    return KeyedVectors(words, np.array(rows, dtype=np.float32)), pairs, plurals


def _analogy_file(tmp_path, pairs, plurals):
    lines = [": capital-common-countries"]
    for (a, b), (c, d) in [(x, y) for x in pairs for y in pairs if x != y]:
        lines.append(f"{a.title()} {b.title()} {c.title()} {d.title()}")
    lines.append("France Paris Atlantis Poseidonia")  # not covered
    lines.append("too few words")  # malformed: skipped
    lines.append(": gram8-plural")
    for (a, b), (c, d) in [(x, y) for x in plurals for y in plurals if x != y]:
        lines.append(f"{a} {b} {c} {d}")
    path = tmp_path / "questions.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _gensim_kv(kv):
    gensim_models = pytest.importorskip("gensim.models")
    theirs = gensim_models.KeyedVectors(kv.dim)
    theirs.add_vectors(kv.words, kv.vectors)
    return theirs


@pytest.mark.parametrize("restrict", [None, 12])
def test_analogies_agree_with_gensim(tmp_path, restrict):
    kv, pairs, plurals = _planted_vectors()
    path = _analogy_file(tmp_path, pairs, plurals)
    ours = evaluate_analogies(kv, path, restrict=restrict)
    score, sections = _gensim_kv(kv).evaluate_word_analogies(str(path), restrict_vocab=restrict or 300000)
    theirs = {s["section"]: s for s in sections}
    assert ours["accuracy_covered"] == pytest.approx(score)
    for section in ours["sections"]:
        g = theirs[section["section"]]
        assert section["correct"] == len(g["correct"])
        assert section["covered"] == len(g["correct"]) + len(g["incorrect"])
    total = theirs["Total accuracy"]
    assert ours["correct"] == len(total["correct"])
    assert ours["covered"] == len(total["correct"]) + len(total["incorrect"])
    assert 0 < ours["correct"] < ours["covered"] < ours["questions"]


def test_analogy_report_structure(tmp_path):
    kv, pairs, plurals = _planted_vectors()
    result = evaluate_analogies(kv, _analogy_file(tmp_path, pairs, plurals), restrict=None)
    assert result["questions"] == 20 + 1 + 12  # malformed line not counted
    assert result["covered"] == 32
    assert result["semantic"]["questions"] == 21 and result["syntactic"]["questions"] == 12
    assert result["accuracy"] == pytest.approx(result["correct"] / 33)
    assert [s["section"] for s in result["sections"]] == ["capital-common-countries", "gram8-plural"]


def test_hand_checked_analogy_and_3cosmul(tmp_path):
    # man -> king is +y; woman + y is exactly queen.
    kv = KeyedVectors(["man", "king", "woman", "queen", "apple"],
                      np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
    path = tmp_path / "q.txt"
    path.write_text(": family\nman king woman queen\nMAN KING WOMAN QUEEN\n", encoding="utf-8")
    for method in ("3cosadd", "3cosmul"):
        result = evaluate_analogies(kv, path, restrict=None, method=method)
        assert result["correct"] == 2, method
    with pytest.raises(InputError):
        evaluate_analogies(kv, path, method="3cosfoo")


def test_similarity_agrees_with_gensim(tmp_path):
    kv, pairs, plurals = _planted_vectors(seed=3)
    lines = ["# Word 1\tWord 2\tHuman (mean)"]
    rng = np.random.default_rng(1)
    words = kv.words
    for _ in range(40):
        a, b = rng.choice(words, 2, replace=False)
        lines.append(f"{a.upper()}\t{b}\t{rng.integers(0, 10)}")  # integer scores: ties in the gold ranks
    lines.append("atlantis\tparis\t5.0")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = evaluate_similarity(kv, path)
    pearson, spear, oov = _gensim_kv(kv).evaluate_word_pairs(str(path))
    assert ours["spearman"] == pytest.approx(spear.statistic, abs=1e-6)
    assert ours["pearson"] == pytest.approx(pearson.statistic, abs=1e-6)
    assert ours["pairs_used"] == 40 and ours["pairs_skipped"] == 1
    assert 100 * ours["oov_ratio"] == pytest.approx(oov)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 50).astype(float)
    y = x + rng.integers(0, 3, 50)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_shared_google_set_sections_and_gensim_agreement():
    questions = shared_path("eval/questions-words.txt")
    kv, _, _ = _planted_vectors()
    result = evaluate_analogies(kv, questions, restrict=30000)
    assert result["questions"] == 19544
    assert result["semantic"]["questions"] == 8869 and result["syntactic"]["questions"] == 10675
    assert len(result["sections"]) == 14


def test_bad_files(tmp_path):
    kv, _, _ = _planted_vectors()
    with pytest.raises(InputError, match="no such file"):
        evaluate_analogies(kv, tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a b c d\n", encoding="utf-8")
    with pytest.raises(InputError, match="section"):
        evaluate_analogies(kv, bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(InputError):
        evaluate_similarity(kv, empty)
