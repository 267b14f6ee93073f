"""The shared sampling routine: greedy, temperature, top-k, top-p, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

from dlnlp.kernels.sampling import filter_logits, sample_logits


def test_temperature_zero_is_argmax_per_row():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert sample_logits(logits, temperature=0).tolist() == [1, 0]
    # top-k / top-p never change the greedy choice
    assert sample_logits(logits, temperature=0, top_k=2, top_p=0.5).tolist() == [1, 0]


def test_top_k_keeps_exactly_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=3))[0].tolist()
    assert kept == [False, True, True, True, False]
    gen = torch.Generator().manual_seed(0)
    draws = {int(sample_logits(logits, top_k=1, generator=gen)) for _ in range(20)}
    assert draws == {1}


def test_top_p_hand_checked_nucleus():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    logits = probs.log()
    # sorted: 0.5, 0.3, 0.15, 0.05; mass before each: 0, 0.5, 0.8, 0.95
    assert torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist() == [False, True, False, True]
    assert torch.isfinite(filter_logits(logits, top_p=0.81))[0].tolist() == [False, True, True, True]
    assert torch.isfinite(filter_logits(logits, top_p=0.3))[0].tolist() == [False, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_temperature_scales_logits():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.allclose(filter_logits(logits, temperature=0.5), logits * 2)


def test_same_generator_seed_same_tokens_and_rows_differ():
    logits = torch.zeros(4, 50)
    a = [sample_logits(logits, generator=torch.Generator().manual_seed(7)).tolist() for _ in range(2)]
    b = sample_logits(logits, generator=torch.Generator().manual_seed(8)).tolist()
    assert a[0] == a[1]
    assert a[0] != b


def test_samples_follow_the_softmax_distribution():
    logits = torch.tensor([0.0, math.log(3.0)])  # p = 0.25, 0.75
    gen = torch.Generator().manual_seed(1)
    draws = sample_logits(logits.expand(4000, 2), generator=gen)
    share = draws.float().mean().item()
    assert abs(share - 0.75) < 0.03  # ~4.5 standard errors


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        sample_logits(torch.zeros(1, 3), **kwargs)


def test_parity_with_transformers_warpers():
    logits_process = pytest.importorskip("transformers.generation.logits_process")
    torch.manual_seed(0)
    logits = torch.randn(3, 40) * 3
    hf = logits_process.TopKLogitsWarper(top_k=7)(None, logits.clone())
    assert torch.equal(torch.isfinite(hf), torch.isfinite(filter_logits(logits, top_k=7)))
    hf = logits_process.TopPLogitsWarper(top_p=0.6)(None, logits.clone())
    assert torch.equal(torch.isfinite(hf), torch.isfinite(filter_logits(logits, top_p=0.6)))


def test_top_k_zero_is_no_limit_and_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.5]])
    assert torch.equal(filter_logits(logits, top_k=0), filter_logits(logits, top_k=None))
    a = sample_logits(logits.expand(50, 4), top_k=0, generator=torch.Generator().manual_seed(1))
    b = sample_logits(logits.expand(50, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert sample_logits(logits, temperature=0, generator=torch.Generator()).tolist() == [1]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_k": 0}, {"top_p": 0.6}, {"temperature": 0.5, "top_k": 3,
                                                                                     "top_p": 0.9}])
def test_numpy_filter_keeps_the_same_tokens_as_the_torch_one(kwargs):
    import numpy as np

    from dlnlp.kernels.sampling import filter_scores_numpy

    logits = torch.tensor([0.3, 2.0, -1.0, 0.5, 1.7, 1.7])
    ours = filter_scores_numpy(logits.numpy(), **kwargs)
    theirs = filter_logits(logits, **kwargs).numpy()
    assert np.array_equal(np.isfinite(ours), np.isfinite(theirs))
    assert np.allclose(ours[np.isfinite(ours)], theirs[np.isfinite(theirs)])
