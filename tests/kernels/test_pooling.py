"""Pooling over positions (mean, first, last real token) and ELMo's scalar mix of layers."""

from __future__ import annotations

import math

import pytest
import torch

from dlnlp.kernels.pooling import ScalarMix, first_token_pool, last_token_pool, mean_pool, pool


@pytest.fixture
def padded():
    """Row 0 right-padded (3 real of 5), row 1 left-padded (2 real), row 2 full; padding holds NaN."""
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
    hidden[~mask.bool()] = float("nan")
    return hidden, mask


def test_mean_pool_averages_the_real_positions_only(padded):
    hidden, mask = padded
    got = mean_pool(hidden, mask)
    assert torch.allclose(got[0], hidden[0, :3].mean(0))
    assert torch.allclose(got[1], hidden[1, 3:].mean(0))
    assert torch.allclose(got[2], hidden[2].mean(0))
    assert torch.equal(mean_pool(hidden, mask.bool()), got)  # 0/1 or bool masks alike
    assert torch.allclose(mean_pool(hidden[2:]), hidden[2:].mean(1))  # no mask: every position


def test_first_and_last_token_with_left_and_right_padding(padded):
    hidden, mask = padded
    assert torch.equal(first_token_pool(hidden, mask), torch.stack([hidden[0, 0], hidden[1, 3], hidden[2, 0]]))
    assert torch.equal(last_token_pool(hidden, mask), torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 4]]))
    assert torch.equal(pool(hidden, mask, "last"), last_token_pool(hidden, mask))
    assert torch.equal(last_token_pool(hidden[2:]), hidden[2:, -1])


def test_pool_refuses_unknown_names_empty_rows_and_mismatched_masks(padded):
    hidden, mask = padded
    with pytest.raises(ValueError, match="mean, first, last, max"):
        pool(hidden, mask, "median")
    empty = mask.clone()
    empty[1] = 0
    with pytest.raises(ValueError, match="no real token"):
        mean_pool(hidden, empty)
    with pytest.raises(ValueError, match="does not match"):
        last_token_pool(hidden, mask[:, :4])


def test_scalar_mix_starts_as_the_mean_of_layers_times_gamma():
    torch.manual_seed(0)
    layers = [torch.randn(2, 3, 4) for _ in range(3)]
    mix = ScalarMix(3)
    assert torch.allclose(mix(layers), torch.stack(layers).mean(0))
    with torch.no_grad():
        mix.gamma.fill_(2.5)
    assert torch.allclose(mix(layers), 2.5 * torch.stack(layers).mean(0))
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.0, 30.0, 0.0]))  # softmax puts (almost) all weight on layer 1
    assert torch.allclose(mix(layers), 2.5 * layers[1], atol=1e-5)


def test_scalar_mix_learns_its_weights_and_checks_the_layer_count():
    mix = ScalarMix(2)
    layers = [torch.zeros(1, 2), torch.ones(1, 2)]
    mix(layers).sum().backward()
    assert mix.weights.grad[1] > 0 > mix.weights.grad[0] and mix.gamma.grad.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 layers got 3"):
        mix(layers + layers[:1])


def test_max_pool_by_hand_ignores_padding():
    from dlnlp.kernels.pooling import max_pool, pool

    hidden = torch.tensor([[[1.0, -5.0], [3.0, -1.0], [100.0, 100.0]],
                           [[-2.0, 4.0], [float("nan"), 9.0], [0.5, 0.5]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert max_pool(hidden, mask).tolist() == [[3.0, -1.0], [0.5, 4.0]]
    assert pool(hidden[:1, :2], None, "max").tolist() == [[3.0, -1.0]]


def test_scalar_mix_by_hand_with_layer_norm_over_the_real_positions():
    h0 = torch.tensor([[[1.0, 3.0], [5.0, 7.0], [100.0, -100.0]]])  # [1, 3, 2]; position 2 is padding
    h1 = torch.tensor([[[2.0, 2.0], [2.0, 6.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    mix = ScalarMix(2, layer_norm=True)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 1/4, 3/4
        mix.gamma.fill_(2.0)
    # layer 0's real values 1, 3, 5, 7: mean 4, variance 5; layer 1's 2, 2, 2, 6: mean 3, variance 3
    n0 = (h0 - 4.0) / math.sqrt(5.0)
    n1 = (h1 - 3.0) / math.sqrt(3.0)
    expected = 2.0 * (0.25 * n0 + 0.75 * n1)
    got = mix([h0, h1], mask)
    assert torch.allclose(got[:, :2], expected[:, :2], atol=1e-6)
    assert torch.allclose(mix.mix_weights(), torch.tensor([0.25, 0.75]))
