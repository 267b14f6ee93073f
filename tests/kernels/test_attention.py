"""Attention against a naive softmax(QK^T/sqrt(d))V, with causal and padding masks and the KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from dlnlp.kernels.attention import KVCache, LayerKV, MultiHeadAttention, build_attention_mask


def naive_attention(mha: MultiHeadAttention, x, *, causal=False, keep=None, memory=None):
    """Per-head loops and an explicit softmax: the textbook formula, no SDPA."""
    b, t, d = x.shape
    h, dh = mha.num_heads, mha.head_dim
    if mha.cross_attention:
        q = mha.q(x)
        k, v = mha.kv(memory).split(d, dim=2)
    else:
        q, k, v = mha.qkv(x).split(d, dim=2)
    s = k.shape[1]
    out = torch.zeros(b, t, d)
    for bi in range(b):
        for hi in range(h):
            sl = slice(hi * dh, (hi + 1) * dh)
            scores = q[bi, :, sl] @ k[bi, :, sl].T / math.sqrt(dh)
            for i in range(t):
                for j in range(s):
                    if (causal and j > i) or (keep is not None and not keep[bi, j]):
                        scores[i, j] = float("-inf")
            out[bi, :, sl] = torch.softmax(scores, dim=-1) @ v[bi, :, sl]
    return mha.proj(out)


@pytest.fixture
def mha():
    torch.manual_seed(0)
    return MultiHeadAttention(16, 4).eval()


def test_bidirectional_matches_naive(mha):
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(mha(x), naive_attention(mha, x), atol=1e-5)


def test_causal_matches_naive(mha):
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        assert torch.allclose(mha(x, causal=True), naive_attention(mha, x, causal=True), atol=1e-5)


def test_padding_mask_matches_naive(mha):
    x = torch.randn(2, 6, 16)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[0, 4:] = False  # right padding (BERT-style)
    with torch.no_grad():
        got = mha(x, key_padding_mask=keep)
        want = naive_attention(mha, x, keep=keep)
    assert torch.allclose(got[keep], want[keep], atol=1e-5)
    assert torch.isfinite(got).all()


def test_causal_with_left_padding_is_finite_and_matches(mha):
    x = torch.randn(2, 6, 16)
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, :3] = False  # left padding: the first queries of row 1 have no real key before them
    with torch.no_grad():
        got = mha(x, causal=True, key_padding_mask=keep)
        want = naive_attention(mha, x, causal=True, keep=keep)
    assert torch.isfinite(got).all()
    assert torch.allclose(got[keep], want[keep], atol=1e-5)


def test_padding_does_not_change_real_positions(mha):
    x = torch.randn(1, 4, 16)
    padded = torch.cat([torch.randn(1, 3, 16), x], dim=1)
    keep = torch.tensor([[False] * 3 + [True] * 4])
    with torch.no_grad():
        alone = mha(x, causal=True)
        inside = mha(padded, causal=True, key_padding_mask=keep)[:, 3:]
    assert torch.allclose(alone, inside, atol=1e-5)


def test_cache_one_token_at_a_time_equals_full(mha):
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        full = mha(x, causal=True)
        cache = LayerKV()
        steps = [mha(x[:, :3], causal=True, cache=cache)]  # a prompt, then one token per step
        steps += [mha(x[:, i:i + 1], causal=True, cache=cache) for i in range(3, 7)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert cache.length == 7


def test_cache_chunks_use_bottom_right_causal_alignment(mha):
    x = torch.randn(1, 8, 16)
    with torch.no_grad():
        full = mha(x, causal=True)
        cache = LayerKV()
        first = mha(x[:, :5], causal=True, cache=cache, cache_capacity=2)  # forces the buffer to grow
        second = mha(x[:, 5:], causal=True, cache=cache)
    assert torch.allclose(torch.cat([first, second], dim=1), full, atol=1e-5)


def test_cache_reorder_follows_rows(mha):
    x = torch.randn(2, 5, 16)
    nxt = torch.randn(3, 1, 16)
    index = torch.tensor([1, 1, 0])
    with torch.no_grad():
        cache = LayerKV()
        mha(x, causal=True, cache=cache)
        cache.reorder(index)
        got = mha(nxt, causal=True, cache=cache)
        want = mha(torch.cat([x[index], nxt], dim=1), causal=True)[:, -1:]
    assert torch.allclose(got, want, atol=1e-5)
    kv = KVCache(2)
    assert len(kv) == 0


def test_cross_attention_matches_naive():
    torch.manual_seed(1)
    cross = MultiHeadAttention(16, 2, cross_attention=True).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    keep = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    with torch.no_grad():
        got = cross(x, memory=memory, key_padding_mask=keep)
        want = naive_attention(cross, x, keep=keep, memory=memory)
    assert torch.allclose(got, want, atol=1e-5)


def test_build_mask_shapes_and_alignment():
    mask = build_attention_mask(2, 5, causal=True)
    assert mask.shape == (1, 1, 2, 5)
    assert mask[0, 0].tolist() == [[True, True, True, True, False], [True] * 5]
    assert build_attention_mask(3, 3, causal=False) is None


def test_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(1, 6, 16)
    mha.train()
    a, b = mha(x), mha(x)
    assert not torch.allclose(a, b)
    mha.eval()
    assert torch.allclose(mha(x), mha(x))


def test_reorder_keep_prefix_copies_only_later_positions(mha):
    prompt = torch.randn(1, 4, 16).expand(3, 4, 16)  # three beams of one prompt
    steps = torch.randn(3, 2, 16)
    index = torch.tensor([2, 0, 0])
    with torch.no_grad():
        cache = KVCache(1, capacity=8)
        mha(prompt, causal=True, cache=cache.layers[0])
        mha(steps, causal=True, cache=cache.layers[0])
        before = cache.storage.clone()
        cache.reorder(index, keep_prefix=4)
        assert torch.equal(cache.storage[:, :, :, :4], before[:, :, :, :4])
        assert torch.equal(cache.storage[:, :, :, 4:6], before[:, index, :, 4:6])
        nxt = torch.randn(3, 1, 16)
        got = mha(nxt, causal=True, cache=cache.layers[0])
        want = mha(torch.cat([prompt, steps[index], nxt], dim=1), causal=True)[:, -1:]
    assert torch.allclose(got, want, atol=1e-5)
