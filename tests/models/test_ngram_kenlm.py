"""Parity with the kenlm Python module on ARPA files exported by dlnlp (skipped without kenlm)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlnlp.io.arpa import write_arpa
from dlnlp.io.corpus import iter_lines
from dlnlp.models.ngram import train
from tests.conftest import shared_path

kenlm = pytest.importorskip("kenlm")


def kenlm_sentence_scores(path, lines):
    model = kenlm.Model(str(path))
    # Per-word scores summed in float64: kenlm's own score() adds in float32, which alone drifts
    # by up to ~1e-4 on 50-word sentences. score() is checked too, with that in mind.
    per_word = np.array([sum(s[0] for s in model.full_scores(line)) for line in lines])
    whole = np.array([model.score(line) for line in lines])
    return per_word, whole


def check_parity(model, lines, tmp_path):
    path = tmp_path / "model.arpa"
    write_arpa(model, path)
    ours = model.score_lines(lines)[0]
    per_word, whole = kenlm_sentence_scores(path, lines)
    assert np.abs(per_word - ours).max() < 1e-4
    assert np.abs(whole - ours).max() < 2e-4


def test_kenlm_scores_exported_model_on_brown_subset(tmp_path):
    train_lines = list(itertools.islice(iter_lines([str(shared_path("corpora/brown/train.txt"))]), 6000))
    valid = list(itertools.islice(iter_lines([str(shared_path("corpora/brown/valid.txt"))]), 500))
    check_parity(train(train_lines, 4), valid, tmp_path)


@pytest.mark.parametrize("smoothing", ["kn", "witten-bell", "add-k"])
def test_kenlm_scores_other_smoothings(tmp_path, smoothing):
    corpus = [" ".join(f"w{(i * j + 3) % 17}" for j in range(i % 9)) for i in range(400)]
    tests = [" ".join(f"w{(i * 5 + j) % 19}" for j in range(i % 7)) for i in range(60)]
    check_parity(train(corpus, 3, smoothing), tests, tmp_path)


@pytest.mark.slow
def test_kenlm_scores_every_brown_valid_sentence_order5(tmp_path):
    """The issue's acceptance check: order-5 modified KN on brown/train, every brown/valid sentence."""
    model = train(iter_lines([str(shared_path("corpora/brown/train.txt"))]), 5)
    valid = list(iter_lines([str(shared_path("corpora/brown/valid.txt"))]))
    check_parity(model, valid, tmp_path)
