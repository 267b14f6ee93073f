"""The batched word2vec kernels: fused gradients vs autograd, sparse updates, samplers' distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlnlp.kernels import embedding_losses as K
from dlnlp.kernels import w2v_native
from dlnlp.models.word2vec import build_huffman_tree, keep_probabilities, noise_weights, subsample_thresholds

needs_native = pytest.mark.skipif(w2v_native.load_library() is None, reason="no C compiler for the native kernel")


def _chi_square(observed: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    keep = expected > 0
    stat = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    return stat, int(keep.sum()) - 1


def _chi_square_ok(observed: np.ndarray, expected: np.ndarray) -> bool:
    from scipy import stats

    stat, dof = _chi_square(observed, expected)
    return stats.chi2.sf(stat, dof) > 1e-3


def test_fused_logistic_gradients_match_autograd():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    rows = torch.randn(6, 4, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    labels = torch.tensor([[1.0, 0, 0, 0]] * 3 + [[1.0, 0, 1, 0]] * 3, dtype=torch.float64)
    mask = torch.ones(6, 4, dtype=torch.float64)
    mask[2, 3] = 0.0
    mask[5, 1:] = 0.0
    reference = K.binary_logistic_loss(h, rows, labels, mask)
    reference.backward()
    loss, grad_h, grad_rows = K.binary_logistic_grad(h.detach(), rows.detach(), labels, mask)
    assert torch.allclose(loss, reference.detach())
    assert torch.allclose(grad_h, h.grad)
    assert torch.allclose(grad_rows, rows.grad)
    assert torch.all(grad_rows[5, 1:] == 0)  # masked targets get no gradient


def test_sgd_step_sums_repeated_rows_and_touches_only_them():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(10, 5, dtype=torch.float64, generator=gen)
    before = out.clone()
    h = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    index = torch.tensor([[2, 7], [2, 4], [7, 7]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    mask = torch.ones(3, 2, dtype=torch.float64)
    lr = 0.1
    _, grad_h = K.sgd_step_logistic(out, h, index, labels, mask, lr)
    # Dense reference: the same loss differentiated with autograd w.r.t. the whole matrix.
    dense = before.clone().requires_grad_(True)
    hh = h.clone().requires_grad_(True)
    K.binary_logistic_loss(hh, dense[index], labels, mask).backward()
    assert torch.allclose(out, before - lr * dense.grad)
    assert torch.allclose(grad_h, hh.grad)
    untouched = [i for i in range(10) if i not in (2, 4, 7)]
    assert torch.equal(out[untouched], before[untouched])


def test_damped_duplicates_scale_by_inverse_sqrt_count():
    out = torch.zeros(4, 2, dtype=torch.float64)
    h = torch.ones(4, 2, dtype=torch.float64)
    index = torch.tensor([[0], [0], [0], [0]])
    labels = torch.ones(4, 1, dtype=torch.float64)
    mask = torch.ones(4, 1, dtype=torch.float64)
    K.sgd_step_logistic(out, h, index, labels, mask, 1.0, damp_duplicates=True)
    # each example's g = 1 - sigmoid(0) = 0.5; 4 of them summed and divided by sqrt(4)
    assert torch.allclose(out[0], torch.full((2,), 4 * 0.5 / 2, dtype=torch.float64))


def test_negative_sampling_targets_mask_the_positive():
    positive = torch.tensor([3, 5])
    negatives = torch.tensor([[1, 3, 2], [5, 5, 0]])
    index, labels, mask = K.negative_sampling_targets(positive, negatives)
    assert index.tolist() == [[3, 1, 3, 2], [5, 5, 5, 0]]
    assert labels.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 0, 1], [1, 0, 0, 1]]


def test_hierarchical_softmax_targets_follow_the_huffman_paths():
    tree = build_huffman_tree(np.array([9, 7, 4, 2, 1, 1]))
    points, codes = tree.padded()
    lengths = torch.from_numpy(tree.lengths.astype(np.int64))
    words = torch.tensor([0, 3, 5])
    index, labels, mask = K.hierarchical_softmax_targets(words, torch.from_numpy(points), torch.from_numpy(codes),
                                                         lengths)
    for row, word in enumerate(words.tolist()):
        path, code = tree.path(word)
        n = len(path)
        assert index[row, :n].tolist() == path
        assert labels[row, :n].tolist() == [1.0 - c for c in code]
        assert mask[row].tolist() == [1.0] * n + [0.0] * (points.shape[1] - n)


def test_gather_context_mean():
    weight = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    context = torch.tensor([[1, 2, 3], [4, 0, 0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    h, count = K.gather_context_mean(weight, context, mask)
    assert h[0].tolist() == [3.0, 4.0]  # mean of rows 1 and 2
    assert h[1].tolist() == [0.0, 0.0] and count.tolist() == [2, 0]


def test_torch_alias_sampler_follows_the_distribution():
    weights = torch.tensor([50.0, 20.0, 10.0, 10.0, 5.0, 4.0, 1.0])
    sampler = K.AliasSampler.from_weights(weights)
    draws = sampler.sample((200_000,), torch.Generator().manual_seed(3))
    observed = np.bincount(draws.numpy(), minlength=len(weights)).astype(float)
    expected = (weights / weights.sum()).numpy() * len(draws)
    assert _chi_square_ok(observed, expected)


@needs_native
def test_native_negative_sampler_follows_unigram_to_the_075():
    counts = np.array([1000, 400, 150, 80, 30, 9, 5, 1])
    alias = w2v_native.build_alias(noise_weights(counts))
    draws = 400_000
    observed = w2v_native.count_negative_draws(alias, draws, seed=7).astype(float)
    expected = counts**0.75 / (counts**0.75).sum() * draws
    assert _chi_square_ok(observed, expected)
    # ... and not the raw unigram distribution
    assert not _chi_square_ok(observed, counts / counts.sum() * draws)


@needs_native
def test_native_subsampling_keeps_words_with_mikolov_probability():
    counts = np.array([60_000, 20_000, 5_000, 1_000, 200])
    corpus = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    sample = 1e-2
    prob = keep_probabilities(counts, sample)
    # t = 1e-2 * 86,200 = 862: the rarest word is always kept, "the" rarely.
    assert prob[4] == 1.0 and prob[0] == pytest.approx((np.sqrt(60_000 / 862) + 1) * 862 / 60_000)
    kept = w2v_native.count_kept(corpus, subsample_thresholds(counts, sample), len(counts), seed=5)
    for word in range(len(counts)):
        p = prob[word]
        sd = np.sqrt(counts[word] * p * (1 - p)) + 1e-9
        assert abs(kept[word] - counts[word] * p) <= 5 * sd, (word, kept[word], counts[word] * p)
    assert kept[4] == counts[4]


def test_keep_probability_formula():
    counts = np.array([100.0, 400.0, 25.0])
    prob = keep_probabilities(counts, 100 / 525)  # threshold t = 100
    assert prob[0] == 1.0  # f = t: (1 + 1) * 1 capped at 1
    assert prob[1] == pytest.approx((2 + 1) * 100 / 400)
    assert prob[2] == 1.0
    assert np.all(keep_probabilities(counts, 0) == 1.0)
