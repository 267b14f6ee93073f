"""The vector recipes called from Python with plain arguments: count, fit, write a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlnlp.errors import DlnlpError
from dlnlp.io.vectors import load_vectors
from dlnlp.models.glove import GloVeConfig
from dlnlp.models.ppmi_svd import PPMIConfig
from dlnlp.models.word2vec import Word2VecConfig
from dlnlp.recipes.glove import train_glove
from dlnlp.recipes.ppmi import train_ppmi_svd
from dlnlp.recipes.vectors import Counting, count_cooccurrences
from dlnlp.recipes.word2vec import train_word2vec

WORDS = ["cat", "dog", "cow", "bread", "cheese", "soup"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) for _ in range(120)]
    path = tmp_path_factory.mktemp("recipes") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_glove_recipe_writes_a_model_directory(corpus, tmp_path):
    out = tmp_path / "glove"
    result = train_glove([str(corpus)], out, GloVeConfig(dim=6, epochs=3), Counting(window=3, min_count=1),
                         device="cpu", workers=1, quiet=True)
    kv = load_vectors(out)
    assert sorted(kv.words) == sorted(WORDS) and kv.dim == 6
    assert result["vocab_size"] == 6 and result["epochs_completed"] == 3 and result["format"] == "dir"
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["window"], config["min_count"]) == ("glove", 3, 1)


def test_word2vec_recipe_writes_a_vectors_file(corpus, tmp_path):
    out = tmp_path / "w2v.txt"
    config = Word2VecConfig(dim=5, epochs=1, min_count=1, window=2, workers=1)
    result = train_word2vec([str(corpus)], out, config, device="cpu", quiet=True)
    kv = load_vectors(out)
    assert sorted(kv.words) == sorted(WORDS) and kv.dim == 5
    assert result["format"] == "word2vec-text" and result["trained_tokens"] == 120 * 8


def test_ppmi_recipe_writes_a_model_directory(corpus, tmp_path):
    out = tmp_path / "ppmi"
    result = train_ppmi_svd([str(corpus)], out, PPMIConfig(dim=3), Counting(window=2, min_count=1), quiet=True)
    kv = load_vectors(out)
    assert len(kv) == 6 and kv.dim == 3 and np.isfinite(kv.vectors).all()
    assert result["vocab_size"] == 6 and len(result["top_singular_values"]) == 3


def test_recipe_refuses_an_existing_output_before_counting(corpus, tmp_path):
    out = tmp_path / "taken.txt"
    out.write_text("keep me")
    with pytest.raises(DlnlpError, match="exists"):
        train_ppmi_svd([str(tmp_path / "missing.txt")], out, PPMIConfig(dim=2), quiet=True)
    assert out.read_text() == "keep me"


def test_shared_counting_spills_to_the_temp_dir_and_counts_the_same(tmp_path):
    # 400 words overflow the dense block of a 1 MiB budget, so sorted shards go to the temp dir.
    rng = np.random.default_rng(1)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(" ".join(f"w{i}" for i in rng.integers(0, 400, 10)) for _ in range(3000)) + "\n")
    spill = tmp_path / "spill"
    spill.mkdir()
    results = []
    for counting in (Counting(window=5, min_count=1), Counting(window=5, min_count=1, memory_bytes=1 << 20,
                                                                temp_dir=spill)):
        vocab, matrix, stats = count_cooccurrences([str(big)], counting, quiet=True)
        results.append((vocab.words, matrix.to_dense(), stats["shards"]))
        matrix.close()
    (words, dense, shards), (words2, dense2, shards2) = results
    assert shards == 0 < shards2
    assert words == words2
    np.testing.assert_allclose(dense, dense2, rtol=1e-9)
    assert not any(spill.iterdir())  # the shards are gone


def test_counting_budget_below_the_counters_floor_is_an_option_error(corpus, tmp_path):
    with pytest.raises(DlnlpError, match="--memory must be at least 1M, got 1,024 bytes"):
        train_ppmi_svd([str(corpus)], tmp_path / "v.txt", PPMIConfig(dim=2), Counting(memory_bytes=1024))


def test_shared_counting_refuses_a_corpus_without_cooccurrences(tmp_path):
    lonely = tmp_path / "lonely.txt"
    lonely.write_text("a\nb\nc\n")
    with pytest.raises(DlnlpError, match="no co-occurrences"):
        count_cooccurrences([str(lonely)], Counting(min_count=1), quiet=True)
