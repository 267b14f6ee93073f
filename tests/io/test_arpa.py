"""ARPA files: hand-written models scored by hand, round trips, compressed files, bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dlnlp.errors import InputError
from dlnlp.io.arpa import write_arpa
from dlnlp.models.ngram import load_arpa, train

HAND = """\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.5
-0.5\ta\t-0.3
-0.7\t</s>

\\2-grams:
-0.2\t<s> a
-0.1\ta </s>

\\end\\
"""


def score(model, sentence: str) -> float:
    return float(model.score_lines([sentence])[0][0])


@pytest.mark.parametrize("text", [HAND, HAND.replace("\t", " ")])
def test_hand_written_arpa_is_scored_by_backoff(tmp_path, text):
    path = tmp_path / "hand.arpa"
    path.write_text(text)
    model = load_arpa(path)
    assert model.counts() == [4, 2]
    assert score(model, "a") == pytest.approx(-0.2 - 0.1)
    # "a a": the bigram is missing, so bo(a) + p(a); then p(</s> | a).
    assert score(model, "a a") == pytest.approx(-0.2 + (-0.3 - 0.5) - 0.1)
    # An OOV costs bo(<s>) + p(<unk>); no bigram continues <unk>, so </s> is a unigram.
    assert score(model, "b") == pytest.approx(-0.5 - 1.0 - 0.7)


def test_hand_written_arpa_matches_kenlm(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    path = tmp_path / "hand.arpa"
    path.write_text(HAND)
    model = load_arpa(path)
    reference = kenlm.Model(str(path))
    for sentence in ["a", "a a", "b", "a b a", ""]:
        assert score(model, sentence) == pytest.approx(reference.score(sentence), abs=1e-5)


def test_missing_unk_gets_minus_100_with_a_warning(tmp_path):
    path = tmp_path / "nounk.arpa"
    path.write_text(HAND.replace("ngram 1=4", "ngram 1=3").replace("-1.0\t<unk>\n", ""))
    warnings: list[str] = []
    model = load_arpa(path, warn=warnings.append)
    assert warnings and "<unk>" in warnings[0]
    assert model.logp[0][0] == -100.0


@pytest.mark.parametrize("suffix", [".arpa", ".arpa.gz", ".arpa.xz"])
@pytest.mark.parametrize("smoothing", ["modified-kn", "witten-bell", "mle", "stupid-backoff"])
def test_round_trip_scores_identically(tmp_path, suffix, smoothing):
    corpus = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "the mat"] * 3 + ["on a mat"]
    model = train(corpus, 3, smoothing)
    path = tmp_path / f"model{suffix}"
    write_arpa(model, path)
    if suffix == ".arpa.gz":
        with gzip.open(path, "rt") as handle:
            assert handle.read().startswith("#")
    again = load_arpa(path)
    assert again.counts() == model.counts()
    assert again.vocab[:3] == ["<unk>", "<s>", "</s>"] and sorted(again.vocab) == sorted(model.vocab)
    tests = ["the cat sat on the mat", "a dog sat on the cat", "zebra sat", ""]
    np.testing.assert_allclose(again.score_lines(tests)[0], model.score_lines(tests)[0], atol=1e-5)
    with pytest.raises(Exception, match="exists"):
        write_arpa(model, path)


@pytest.mark.parametrize("text, message", [
    ("just some text\n", "not an ARPA"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<unk>\n\n\\end\\\n", "header says 2"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\nx\t<unk>\n\n\\end\\\n", "bad number"),
    ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\t<unk>\n\n\\2-grams:\n-1\t<unk> foo\n\n\\end\\\n",
     "not a unigram"),
])
def test_bad_arpa_files_are_input_errors(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_arpa(path)


def test_unreadable_arpa_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_arpa(tmp_path / "missing.arpa")
    broken = tmp_path / "broken.arpa.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="cannot read"):
        load_arpa(broken)
