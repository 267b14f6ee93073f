"""Co-occurrence counting: hand-checked sentences, Stanford cooccur's conventions, spill-and-merge."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from dlnlp.kernels.cooccur import CooccurrenceCounter, encode_lines


def reference_counts(lines, window, symmetric=True, weighting=True, cross_lines=False):
    """A literal transcription of cooccur.c's loop (history buffer, reset at each line)."""
    table = defaultdict(float)
    history: list[int] = []
    for line in lines:
        if not cross_lines:
            history = []
        for w2 in line:
            for d in range(1, min(window, len(history)) + 1):
                w1 = history[-d]
                value = 1.0 / d if weighting else 1.0
                table[(w1, w2)] += value
                if symmetric:
                    table[(w2, w1)] += value
            history.append(w2)
    return dict(table)


def as_dict(matrix):
    return {(int(r), int(c)): float(v) for r, c, v in zip(matrix.rows, matrix.cols, matrix.values, strict=True)}


def count(lines, vocab_size, **kwargs):
    counter = CooccurrenceCounter(vocab_size, **kwargs)
    counter.add_lines(lines)
    return counter.finish()


def test_hand_checked_sentence_symmetric():
    # "a b c" with window 2: neighbours at distance 1 add 1, at distance 2 add 1/2, in both directions.
    m = count([[0, 1, 2]], 3, window=2)
    assert as_dict(m) == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 1.0, (2, 1): 1.0, (0, 2): 0.5, (2, 0): 0.5}
    assert m.to_dense().sum() == pytest.approx(5.0)


def test_left_only_context_counts_context_row_word_column():
    # cooccur -symmetric 0: X[w1, w2] where w1 is the context to the left of w2.
    m = count([[0, 1, 2]], 3, window=2, symmetric=False)
    assert as_dict(m) == {(0, 1): 1.0, (1, 2): 1.0, (0, 2): 0.5}


def test_window_and_unweighted_counts():
    m = count([[0, 1, 2, 3]], 4, window=1, distance_weighting=False)
    assert as_dict(m) == {(0, 1): 1, (1, 0): 1, (1, 2): 1, (2, 1): 1, (2, 3): 1, (3, 2): 1}


def test_self_cooccurrence_counts_both_directions():
    # "a a": w1 = w2 = a adds 1 to X[a, a], and the symmetric update adds 1 more (as cooccur.c).
    m = count([[0, 0]], 1, window=5)
    assert as_dict(m) == {(0, 0): 2.0}


def test_windows_stop_at_line_ends_unless_cross_lines():
    lines = [[0, 1], [2, 3]]
    inside = count(lines, 4, window=3)
    assert (1, 2) not in as_dict(inside)
    crossing = as_dict(count(lines, 4, window=3, cross_lines=True))
    assert crossing[(1, 2)] == 1.0 and crossing[(0, 3)] == pytest.approx(1 / 3)


def test_unknown_words_take_no_position():
    # cooccur.c skips out-of-vocabulary tokens before they enter the window: "a x b" makes a, b adjacent.
    ids, ends = encode_lines(["a rare b", "", "  b   a  "], {"a": 0, "b": 1})
    assert ids.tolist() == [0, 1, 1, 0]
    assert ends.tolist() == [2, 2, 4]
    counter = CooccurrenceCounter(2, window=1)
    counter.add_ids(ids, ends)
    assert as_dict(counter.finish()) == {(0, 1): 2.0, (1, 0): 2.0}


def random_corpus(seed, n_lines=300, vocab=60):
    rng = np.random.default_rng(seed)
    # Zipf-like ids so the dense block (small ids) and the sparse table both get pairs.
    return [list(np.minimum(rng.zipf(1.3, size=rng.integers(0, 25)) - 1, vocab - 1)) for _ in range(n_lines)]


@pytest.mark.parametrize("dense_size", [0, 7, 60])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("cross_lines", [False, True])
def test_matches_reference_loop(dense_size, symmetric, cross_lines):
    lines = random_corpus(1)
    expected = reference_counts(lines, 4, symmetric=symmetric, cross_lines=cross_lines)
    got = as_dict(count(lines, 60, window=4, symmetric=symmetric, cross_lines=cross_lines, dense_size=dense_size))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12)


def test_spill_and_merge_equals_in_memory(tmp_path):
    lines = random_corpus(2, n_lines=3000, vocab=400)
    in_memory = count(lines, 400, window=5)
    assert in_memory.shards_written == 0
    # A 1 MiB budget forces small chunks and a small table, so sorted shards go to disk.
    counter = CooccurrenceCounter(400, window=5, memory_bytes=1 << 20, tmp_dir=tmp_path, dense_size=20)
    counter.add_lines(lines)
    spilled = counter.finish()
    assert spilled.shards_written > 1
    assert spilled.nnz == in_memory.nnz
    np.testing.assert_array_equal(np.asarray(spilled.rows), in_memory.rows)
    np.testing.assert_array_equal(np.asarray(spilled.cols), in_memory.cols)
    np.testing.assert_allclose(np.asarray(spilled.values), in_memory.values, rtol=1e-12)
    spilled.close()
    assert not any(tmp_path.iterdir())  # shards and merged files removed


def test_long_line_cut_into_chunks_keeps_its_windows():
    # One line far longer than a chunk (a text8-like corpus): the cut must not lose pairs.
    rng = np.random.default_rng(3)
    line = list(rng.integers(0, 50, size=20000))
    counter = CooccurrenceCounter(50, window=6, memory_bytes=1 << 20, dense_size=10)
    counter.add_lines([line])
    got = as_dict(counter.finish())
    expected = reference_counts([line], 6)
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v) for k, v in expected.items())


def test_sorted_output_and_bad_ids():
    m = count(random_corpus(4), 60, window=3)
    keys = m.rows.astype(np.int64) * 60 + m.cols
    assert np.all(np.diff(keys) > 0)
    with pytest.raises(ValueError):
        CooccurrenceCounter(5).add_lines([[0, 5]])
    with pytest.raises(ValueError):
        CooccurrenceCounter(5, window=0)
