"""Transformer block (pre/post-LN), position encodings and weight tying."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlnlp.kernels.attention import LayerKV
from dlnlp.kernels.position import SinusoidalPositionalEncoding, make_position_encoding, sinusoidal_table
from dlnlp.kernels.transformer import TransformerBlock, tie_weights


def test_sinusoidal_formula_by_hand():
    table = sinusoidal_table(50, 6)
    pos, d = 7, 6
    for i in range(3):
        angle = pos / 10000 ** (2 * i / d)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    enc = SinusoidalPositionalEncoding(50, 6)
    assert torch.equal(enc(torch.tensor([[0, 7]]))[0, 1], table[7])
    assert list(enc.state_dict()) == []  # fixed, not saved


def test_odd_dimension_and_unknown_kind():
    assert sinusoidal_table(4, 5).shape == (4, 5)
    with pytest.raises(ValueError):
        make_position_encoding("rotary", 4, 8)


def _manual_block(block: TransformerBlock, x: torch.Tensor) -> torch.Tensor:
    def attn(h):
        return block.attn(h, causal=True)

    if block.norm_first:
        x = x + attn(block.ln_1(x))
        return x + block.mlp(block.ln_2(x))
    x = block.ln_1(x + attn(x))
    return block.ln_2(x + block.mlp(x))


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_equations(norm_first):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, norm_first=norm_first).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(block(x, causal=True), _manual_block(block, x), atol=1e-6)
    if not norm_first:  # post-LN: output normalised
        out = block(x, causal=True)
        assert out.mean(-1).abs().max() < 1e-5


def test_mlp_uses_requested_gelu():
    torch.manual_seed(0)
    x = torch.randn(3, 16)
    exact = TransformerBlock(16, 2, activation="gelu").mlp
    tanh = TransformerBlock(16, 2, activation="gelu_tanh").mlp
    tanh.load_state_dict(exact.state_dict())
    h = exact.fc(x)
    assert torch.allclose(exact(x), exact.proj(torch.nn.functional.gelu(h)), atol=1e-6)
    assert torch.allclose(tanh(x), tanh.proj(torch.nn.functional.gelu(h, approximate="tanh")), atol=1e-6)


def test_block_cache_matches_full():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        full = block(x, causal=True)
        cache = LayerKV()
        parts = [block(x[:, :4], causal=True, cache=cache)] + [block(x[:, i:i + 1], causal=True, cache=cache)
                                                               for i in (4, 5)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_cross_attention_block_uses_memory():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cross_attention=True).eval()
    x = torch.randn(1, 3, 16)
    a = block(x, causal=True, memory=torch.randn(1, 4, 16))
    b = block(x, causal=True, memory=torch.randn(1, 4, 16))
    assert not torch.allclose(a, b)


def test_tie_weights_shares_one_parameter():
    emb, out = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    tie_weights(out, emb)
    assert out.weight is emb.weight
    out(torch.randn(2, 4)).sum().backward()
    assert emb.weight.grad is not None
    with pytest.raises(ValueError):
        tie_weights(nn.Linear(5, 10), emb)
