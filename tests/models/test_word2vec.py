"""word2vec: Huffman tree, vocabulary, determinism, and that training learns co-occurrence structure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlnlp.errors import DlnlpError
from dlnlp.kernels import w2v_native
from dlnlp.models.vocab import Vocabulary, count_and_encode
from dlnlp.models.word2vec import Word2Vec, Word2VecConfig, build_huffman_tree
from tests.conftest import requires_cuda

needs_native = pytest.mark.skipif(w2v_native.load_library() is None, reason="no C compiler for the native kernel")


# -- Huffman tree ----------------------------------------------------------------------------
def _codes(tree, n):
    return ["".join(map(str, tree.path(w)[1])) for w in range(n)]


def _optimal_cost(counts):
    """Brute force: the least sum(count * length) over complete prefix codes (Kraft sum = 1)."""
    n = len(counts)
    best = None
    for lengths in itertools.product(range(1, n), repeat=n):
        if sum(2.0 ** -k for k in lengths) == 1.0:
            cost = sum(c * k for c, k in zip(counts, lengths, strict=True))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("counts", [[5, 4, 3, 2, 1], [1, 1, 1, 1], [10, 1, 1], [8, 5, 5, 3, 2, 1], [2, 1]])
def test_huffman_codes_are_prefix_free_and_optimal(counts):
    tree = build_huffman_tree(np.array(counts))
    codes = _codes(tree, len(counts))
    for a, b in itertools.permutations(codes, 2):
        assert not b.startswith(a), (a, b)
    cost = sum(c * len(code) for c, code in zip(counts, codes, strict=True))
    assert cost == _optimal_cost(counts)


def test_huffman_paths_start_at_the_root_and_index_inner_nodes():
    counts = np.array([50, 30, 20, 10, 5, 3, 2, 1])
    tree = build_huffman_tree(counts)
    v = len(counts)
    for word in range(v):
        points, codes = tree.path(word)
        assert points[0] == v - 2  # the root is the last inner node
        assert all(0 <= p <= v - 2 for p in points)
        assert len(points) == len(codes) == tree.lengths[word]
    # more frequent words never have longer codes
    assert all(tree.lengths[i] <= tree.lengths[i + 1] for i in range(v - 1))
    # each inner node is the parent of exactly two subtrees: V - 1 distinct nodes are used
    assert len(set(tree.points.tolist())) == v - 1


def test_huffman_needs_two_words():
    with pytest.raises(DlnlpError):
        build_huffman_tree(np.array([3]))


# -- vocabulary ------------------------------------------------------------------------------
def test_vocabulary_min_count_max_vocab_and_ties_by_first_occurrence():
    lines = [["b", "a", "c", "a"], ["c", "d", "b", "e"], ["a"]]
    vocab = Vocabulary.build(lines, min_count=2)
    assert vocab.words == ["a", "b", "c"]  # a:3, then b and c (2 each) in first-occurrence order
    assert vocab.counts.tolist() == [3, 2, 2]
    assert vocab.total_tokens == 9
    assert Vocabulary.build(lines, min_count=1, max_vocab=2).words == ["a", "b"]


def test_vocabulary_save_load_round_trip(tmp_path):
    vocab = Vocabulary(["the", "ünïcode", "a"], [5, 3, 2])
    vocab.save(tmp_path)
    loaded = Vocabulary.load(tmp_path)
    assert loaded.words == vocab.words and loaded.counts.tolist() == [5, 3, 2]


def test_count_and_encode_drops_rare_words_and_keeps_sentence_ends():
    lines = [["a", "b", "zz"], ["yy"], ["b", "a", "a"]]
    vocab, ids, ends = count_and_encode(lines, min_count=2)
    assert vocab.words == ["a", "b"]
    assert ids.tolist() == [0, 1, 1, 0, 0]
    assert ends.tolist() == [2, 2, 5]


# -- training --------------------------------------------------------------------------------
def _topic_corpus(seed=0, lines=1500):
    """Two disjoint topics: words of one topic only ever co-occur with words of the same topic."""
    rng = np.random.default_rng(seed)
    topics = [[f"a{i}" for i in range(12)], [f"b{i}" for i in range(12)]]
    return [list(rng.choice(topics[i % 2], size=10)) for i in range(lines)], topics


def _separation(model, topics):
    unit = model.syn0 / np.linalg.norm(model.syn0, axis=1, keepdims=True)
    index = model.vocab.index
    a = unit[[index[w] for w in topics[0]]]
    b = unit[[index[w] for w in topics[1]]]
    within = (np.mean(a @ a.T) + np.mean(b @ b.T)) / 2
    across = np.mean(a @ b.T)
    return within - across


def _train(arch, loss, kernel="auto", workers=1, seed=1, epochs=3, lines=1500, device="cpu", lr=0.025, min_lr=None):
    corpus, topics = _topic_corpus(lines=lines)
    vocab, ids, ends = count_and_encode(corpus, min_count=1)
    rates = {} if min_lr is None else {"min_lr": min_lr}
    config = Word2VecConfig(arch=arch, loss=loss, dim=16, window=3, epochs=epochs, sample=0, workers=workers,
                            seed=seed, batch_size=256, lr=lr, **rates)
    model = Word2Vec(vocab, config)
    model.train(ids, ends, device=device, kernel=kernel)
    return model, topics


@needs_native
@pytest.mark.parametrize("arch,loss", [("skipgram", "ns"), ("skipgram", "hs"), ("cbow", "ns"), ("cbow", "hs")])
def test_native_training_separates_topics(arch, loss):
    model, topics = _train(arch, loss, kernel="native")
    assert model.stats["backend"] == "native"
    assert _separation(model, topics) > 0.3


@pytest.mark.parametrize("arch,loss", [("skipgram", "ns"), ("skipgram", "hs"), ("cbow", "ns")])
def test_torch_training_separates_topics(arch, loss):
    model, topics = _train(arch, loss, kernel="torch", epochs=5)
    assert model.stats["backend"] == "cpu"
    assert np.isfinite(model.syn0).all()
    assert _separation(model, topics) > 0.3


@requires_cuda
@pytest.mark.parametrize("arch,loss", [("skipgram", "ns"), ("skipgram", "hs"), ("cbow", "ns")])
def test_cuda_training_separates_topics(arch, loss):
    model, topics = _train(arch, loss, epochs=5, device="cuda")
    assert model.stats["backend"].startswith("cuda")
    assert np.isfinite(model.syn0).all()
    assert _separation(model, topics) > 0.3


@needs_native
def test_same_seed_one_worker_gives_the_same_vectors():
    first, _ = _train("skipgram", "ns", kernel="native", seed=4, epochs=1, lines=300)
    second, _ = _train("skipgram", "ns", kernel="native", seed=4, epochs=1, lines=300)
    other, _ = _train("skipgram", "ns", kernel="native", seed=5, epochs=1, lines=300)
    assert np.array_equal(first.syn0, second.syn0)
    assert not np.array_equal(first.syn0, other.syn0)


def test_same_seed_gives_the_same_vectors_on_the_torch_path():
    first, _ = _train("cbow", "ns", kernel="torch", seed=2, epochs=1, lines=200)
    second, _ = _train("cbow", "ns", kernel="torch", seed=2, epochs=1, lines=200)
    assert np.array_equal(first.syn0, second.syn0)


@needs_native
def test_learning_rate_decay_reaches_the_end_and_all_words_are_counted():
    model, _ = _train("cbow", "ns", kernel="native", workers=2, epochs=2, lines=400)
    assert model.stats["words_trained"] == 2 * 400 * 10


@needs_native
@pytest.mark.parametrize("kernel", ["native", "torch"])
def test_the_learning_rate_decays(kernel):
    # With one worker and one seed the only difference between the runs is the rate schedule: a
    # kernel whose rate never leaves --lr trains the same vectors as a constant rate.
    decayed, _ = _train("skipgram", "ns", kernel=kernel, epochs=2, lines=2000, lr=0.01)
    constant, _ = _train("skipgram", "ns", kernel=kernel, epochs=2, lines=2000, lr=0.01, min_lr=0.01)
    assert not np.array_equal(decayed.syn0, constant.syn0)
    assert np.isfinite(decayed.syn0).all()


def test_save_load_round_trip_and_vectors_reader(tmp_path):
    from dlnlp.io.vectors import load_vectors

    model, _ = _train("skipgram", "ns", kernel="torch", epochs=1, lines=100)
    model.save(tmp_path / "run", which="average")
    loaded = Word2Vec.load(tmp_path / "run")
    assert loaded.vocab.words == model.vocab.words
    assert np.array_equal(loaded.syn0, model.syn0) and np.array_equal(loaded.syn1neg, model.syn1neg)
    kv = load_vectors(tmp_path / "run")
    assert np.allclose(kv.vectors, (model.syn0 + model.syn1neg) / 2)
    with pytest.raises(DlnlpError):
        model.save(tmp_path / "run")  # exists, no force


def test_config_validation():
    with pytest.raises(DlnlpError):
        Word2VecConfig(arch="glove").validate()
    with pytest.raises(DlnlpError):
        Word2VecConfig(window=0).validate()
    with pytest.raises(DlnlpError):
        Word2VecConfig(min_lr=1.0, lr=0.1).validate()


# -- overflow and divergence (issue #19, item 2) ---------------------------------------------------
DIVERGE = """
import sys
import numpy as np
from dlnlp.models.vocab import count_and_encode
from dlnlp.models.word2vec import VectorsDiverged, Word2Vec, Word2VecConfig
rng = np.random.default_rng(0)
lines = [list(rng.choice([f"w{i}" for i in range(20)], size=12)) for _ in range(300)]
vocab, ids, ends = count_and_encode(lines, min_count=1)
arch, loss, kernel, workers = sys.argv[1:5]
model = Word2Vec(vocab, Word2VecConfig(arch=arch, loss=loss, dim=8, window=3, epochs=2, sample=0,
                                       workers=int(workers), batch_size=64))
model.config.lr = model.config.min_lr = 1e6  # past validation: only the loop's own guards remain
if sys.argv[5] == "nan":
    model.syn0[3, 0] = np.nan
try:
    model.train(ids, ends, device="cpu", kernel=kernel)
except VectorsDiverged as exc:
    print("diverged:", exc)
else:
    print("finite:", bool(np.isfinite(model.syn0).all()))
"""


def _diverge(*args):
    import subprocess
    import sys

    # A child process: an out-of-bounds read in the C loop must fail this test, not end the session.
    return subprocess.run([sys.executable, "-c", DIVERGE, *args], capture_output=True, text=True, timeout=120)


@needs_native
@pytest.mark.parametrize("arch,loss,workers,start", [
    ("skipgram", "ns", "1", "ok"), ("cbow", "ns", "1", "ok"), ("cbow", "both", "2", "ok"),
    ("skipgram", "both", "1", "nan"), ("skipgram", "hs", "1", "nan"), ("cbow", "hs", "2", "nan"),
])
def test_native_loop_stays_in_bounds_and_reports_divergence(arch, loss, workers, start):
    result = _diverge(arch, loss, "native", workers, start)
    assert result.returncode == 0, result.stderr[-2000:]  # was -11: exp_table[(int)NaN]
    assert result.stdout.startswith("diverged:") and "try a lower --lr" in result.stdout


@needs_native
def test_hierarchical_softmax_saturates_instead_of_diverging():
    # HS skips nodes with |h.v| >= 6 (as word2vec.c), so even a huge rate stays finite: no false alarm.
    result = _diverge("skipgram", "hs", "native", "1", "ok")
    assert result.returncode == 0 and result.stdout.strip() == "finite: True", result.stderr[-2000:]


@pytest.mark.parametrize("arch,loss", [("skipgram", "ns"), ("cbow", "hs")])
def test_torch_path_reports_divergence(arch, loss):
    corpus, _ = _topic_corpus(lines=200)
    vocab, ids, ends = count_and_encode(corpus, min_count=1)
    model = Word2Vec(vocab, Word2VecConfig(arch=arch, loss=loss, dim=8, window=3, epochs=1, sample=0, workers=1,
                                           batch_size=64))
    model.config.lr = model.config.min_lr = 1e6
    with pytest.raises(DlnlpError, match="diverged.*nan or inf.*try a lower --lr"):
        model.train(ids, ends, device="cpu", kernel="torch")
    with pytest.raises(DlnlpError, match="nan or inf"):
        model.vectors()  # and nothing can be written from them


@pytest.mark.parametrize("changes,message", [
    ({"lr": 1.0}, "--lr must be > 0 and < 1, got 1"), ({"lr": 1e6}, "--lr must be > 0 and < 1"),
    ({"lr": float("nan")}, "--lr"), ({"lr": float("inf")}, "--lr"), ({"min_lr": float("nan")}, "--min-lr"),
    ({"negative": 1_000_000}, "--negative must be between 1 and 1000, got 1000000"), ({"negative": 0}, "--negative"),
    ({"window": 2**31}, "--window"), ({"dim": 0}, "--dim"), ({"dim": 2**40}, "--dim"), ({"epochs": 0}, "--epochs"),
    ({"epochs": 2**32}, "--epochs"), ({"sample": float("nan")}, "--sample"), ({"sample": 2.0}, "--sample"),
    ({"sample": -1.0}, "--sample"), ({"workers": -1}, "--workers"), ({"workers": 10**6}, "--workers"),
    ({"batch_size": -1}, "--batch-size"), ({"seed": -1}, "--seed"), ({"max_vocab": 0}, "--max-vocab"),
    ({"min_count": 0}, "--min-count"),
])
def test_options_out_of_range_are_rejected(changes, message):
    with pytest.raises(DlnlpError, match=message.replace("[", r"\[")):
        Word2VecConfig(**changes).validate()
