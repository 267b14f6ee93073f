"""Greedy, sampling and beam search: exactness on an enumerable model, cache vs no cache, constraints."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from dlnlp.decoding import (
    DecodeConfig,
    FullContextNextToken,
    GPTNextToken,
    RecurrentNextToken,
    generate,
    sequence_score,
)
from dlnlp.models.gpt import GPT, GPTConfig

EOS = 2


def table_lm(vocab: int = 3, seed: int = 0) -> FullContextNextToken:
    """A model whose next-token logits are an arbitrary fixed function of the whole prefix."""

    def fn(ids: torch.Tensor) -> torch.Tensor:
        key = hash((seed, tuple(ids[0].tolist()))) % (2**31)
        return torch.randn(1, vocab, generator=torch.Generator().manual_seed(key)) * 2

    return FullContextNextToken(fn, vocab)


def enumerate_all(lm: FullContextNextToken, prompt: list[int], max_new: int, alpha: float, norm: str):
    """Every complete hypothesis (ended at EOS, or at max_new tokens) with its exact score."""
    out = []
    for n in range(1, max_new + 1):
        for seq in itertools.product(range(lm.vocab_size), repeat=n):
            if EOS in seq[:-1] or (n < max_new and seq[-1] != EOS):
                continue
            lp, ctx = 0.0, list(prompt)
            for t in seq:
                lp += torch.log_softmax(lm.fn(torch.tensor([ctx])).reshape(-1), -1)[t].item()
                ctx.append(t)
            out.append((sequence_score(lp, n, alpha, norm), list(seq), lp))
    return sorted(out, key=lambda r: -r[0])


@pytest.mark.parametrize(("alpha", "norm"), [(1.0, "power"), (0.0, "power"), (0.7, "gnmt")])
def test_beam_with_large_k_finds_the_exact_best(alpha, norm):
    lm = table_lm()
    exact = enumerate_all(lm, [0, 1], 5, alpha, norm)
    config = DecodeConfig(strategy="beam", num_beams=64, num_return=5, max_new_tokens=5, eos_id=EOS,
                          length_penalty=alpha, length_norm=norm)
    [hyps] = generate(lm, [[0, 1]], config)
    assert hyps[0].tokens == exact[0][1]
    assert hyps[0].score == pytest.approx(exact[0][0], abs=1e-5)
    assert [h.tokens for h in hyps] == [e[1] for e in exact[:5]]
    assert [h.logprob for h in hyps] == pytest.approx([e[2] for e in exact[:5]], abs=1e-5)


def test_scores_by_hand():
    assert sequence_score(-6.0, 3, 1.0) == -2.0  # average per token
    assert sequence_score(-6.0, 3, 0.0) == -6.0
    assert sequence_score(-6.0, 3, 1.0, "gnmt") == pytest.approx(-6.0 / (8 / 6))


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(20)  # peaked distributions
    return model


def uncached(model: GPT, window: int | None = None) -> FullContextNextToken:
    def fn(ids):
        ids = ids[:, -window:] if window else ids
        return model(ids)[0][:, -1]

    return FullContextNextToken(fn, model.config.vocab_size)


PROMPTS = [[1, 4, 5], [7], [3, 3, 9, 1, 0, 6]]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_cached_decode_equals_uncached(gpt, strategy):
    config = DecodeConfig(strategy=strategy, num_beams=3, num_return=3 if strategy == "beam" else 1,
                          max_new_tokens=6, eos_id=EOS)
    cached = generate(GPTNextToken(gpt), PROMPTS, config)
    plain = generate(uncached(gpt), PROMPTS, config)
    for a, b in zip(cached, plain, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)


def test_decoding_past_the_block_size_slides_the_window(gpt):
    config = DecodeConfig(strategy="beam", num_beams=2, max_new_tokens=34, eos_id=None)
    prompt = list(range(1, 10))
    [[cached]] = generate(GPTNextToken(gpt), [prompt], config)
    [[plain]] = generate(uncached(gpt, window=32), [prompt], config)
    assert len(cached.tokens) == 34 and cached.tokens == plain.tokens


def test_beam_k1_equals_greedy(gpt):
    lm = GPTNextToken(gpt)
    greedy = generate(lm, PROMPTS, DecodeConfig(strategy="greedy", max_new_tokens=12, eos_id=EOS))
    beam = generate(lm, PROMPTS, DecodeConfig(strategy="beam", num_beams=1, max_new_tokens=12, eos_id=EOS))
    for [g], [b] in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens and g.score == pytest.approx(b.score, abs=1e-5)


def test_batch_equals_one_prompt_at_a_time(gpt):
    lm = GPTNextToken(gpt)
    config = DecodeConfig(strategy="beam", num_beams=3, num_return=2, max_new_tokens=8, eos_id=EOS)
    batch = generate(lm, PROMPTS, config)
    for prompt, hyps in zip(PROMPTS, batch, strict=True):
        [alone] = generate(lm, [prompt], config)
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]


def test_no_repeat_ngram_and_min_new_tokens(gpt):
    lm = GPTNextToken(gpt)
    for strategy in ("greedy", "beam"):
        config = DecodeConfig(strategy=strategy, num_beams=3, max_new_tokens=25, min_new_tokens=6, eos_id=EOS,
                              no_repeat_ngram=2)
        for prompt, [h] in zip(PROMPTS, generate(lm, PROMPTS, config), strict=True):
            seq = prompt + h.tokens
            bigrams = list(zip(seq, seq[1:], strict=False))
            assert len(bigrams) == len(set(bigrams))
            assert EOS not in h.tokens[:6]


def test_min_new_tokens_forbids_early_eos():
    lm = FullContextNextToken(lambda ids: torch.tensor([[0.0, 0.0, 5.0]]), 3)  # EOS almost certain
    [[h]] = generate(lm, [[0]], DecodeConfig(strategy="greedy", max_new_tokens=9, min_new_tokens=4, eos_id=EOS))
    assert h.tokens[-1] == EOS and len(h.tokens) == 5 and h.finished


def test_sampling_is_seeded_and_streams(gpt):
    lm = GPTNextToken(gpt)
    config = DecodeConfig(strategy="sample", max_new_tokens=15, temperature=1.5, top_k=5, top_p=0.9)
    streamed: list[tuple[int, int]] = []
    a = generate(lm, PROMPTS, config, generator=torch.Generator().manual_seed(7), on_token=lambda i, t: streamed.append((i, t)))
    b = generate(lm, PROMPTS, config, generator=torch.Generator().manual_seed(7))
    assert [h[0].tokens for h in a] == [h[0].tokens for h in b]
    for i, [h] in enumerate(a):
        assert [t for j, t in streamed if j == i] == h.tokens
    greedy = generate(lm, PROMPTS, DecodeConfig(strategy="greedy", max_new_tokens=15))
    top1 = generate(lm, PROMPTS, DecodeConfig(strategy="sample", max_new_tokens=15, top_k=1),
                    generator=torch.Generator().manual_seed(1))
    assert [h[0].tokens for h in greedy] == [h[0].tokens for h in top1]


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1])
    lm = FullContextNextToken(lambda ids: probs.log().view(1, -1), 3)
    config = DecodeConfig(strategy="sample", max_new_tokens=1)
    [[h]] = generate(lm, [[0]], config, generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(3)
    g = torch.Generator().manual_seed(0)
    for [hyp] in generate(lm, [[0]] * 3000, config, generator=g):
        counts[hyp.tokens[0]] += 1
    assert torch.allclose(counts / 3000, probs, atol=0.03)
    assert h.logprob == pytest.approx(math.log(probs[h.tokens[0]].item()), abs=1e-5)


class TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(7, 8), nn.LSTM(8, 8, batch_first=True), nn.Linear(8, 7)

    def forward(self, ids, hidden=None):
        y, hidden = self.rnn(self.emb(ids), hidden)
        return self.out(y) * 5, hidden


def test_recurrent_adapter_matches_full_recompute():
    torch.manual_seed(0)
    rnn = TinyLSTM().eval()
    config = DecodeConfig(strategy="beam", num_beams=3, max_new_tokens=8, eos_id=EOS)
    prompts = [[1, 3], [4, 5, 6, 1]]
    a = generate(RecurrentNextToken(rnn, 7), prompts, config)
    b = generate(FullContextNextToken(lambda ids: rnn(ids)[0][:, -1], 7), prompts, config)
    assert [h[0].tokens for h in a] == [h[0].tokens for h in b]


def test_invalid_settings():
    lm = table_lm()
    with pytest.raises(ValueError, match="--num-return"):
        generate(lm, [[0]], DecodeConfig(strategy="beam", num_beams=2, num_return=3))
    with pytest.raises(ValueError, match="empty"):
        generate(lm, [[]], DecodeConfig())
    with pytest.raises(ValueError, match="strategy"):
        generate(lm, [[0]], DecodeConfig(strategy="nucleus"))


@pytest.mark.parametrize("cell", ["lstm", "gru", "ffnn"])
def test_rnn_lm_adapter_matches_full_recompute(cell):
    from dlnlp.decoding.interface import rnn_lm_next_token
    from dlnlp.models.rnn_lm import RNNLMConfig, build_model

    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=9, cell=cell, embed=8, hidden=8, layers=2, context=3)).eval()
    config = DecodeConfig(strategy="beam", num_beams=3, num_return=2, max_new_tokens=6, eos_id=EOS)
    prompts = [[1, 3], [4, 5, 6, 1]]
    a = generate(rnn_lm_next_token(model), prompts, config)
    b = generate(FullContextNextToken(lambda ids: model(ids)[0][:, -1], 9), prompts, config)
    for x, y in zip(a, b, strict=True):
        assert [h.tokens for h in x] == [h.tokens for h in y]
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)


def test_num_return_samples_per_prompt(gpt):
    config = DecodeConfig(strategy="sample", num_return=3, max_new_tokens=6)
    out = generate(GPTNextToken(gpt), PROMPTS, config, generator=torch.Generator().manual_seed(0))
    assert [len(h) for h in out] == [3, 3, 3]


def test_beams_beyond_the_continuations_or_the_cap_are_refused():
    from dlnlp.decoding.search import MAX_BEAMS
    from dlnlp.errors import DlnlpError

    lm = table_lm()  # 3 tokens: 3 ** 2 = 9 continuations of two tokens
    generate(lm, [[0]], DecodeConfig(strategy="beam", num_beams=9, max_new_tokens=2))
    with pytest.raises(DlnlpError, match=r"--num-beams 10 exceeds the 3 \*\* 2 possible continuations"):
        generate(lm, [[0]], DecodeConfig(strategy="beam", num_beams=10, max_new_tokens=2))
    with pytest.raises(DlnlpError, match=f"--num-beams {MAX_BEAMS + 1} is above"):
        generate(lm, [[0]], DecodeConfig(strategy="beam", num_beams=MAX_BEAMS + 1, max_new_tokens=50))


def test_gpt_decoding_state_counts_the_kv_cache_of_every_row(gpt, monkeypatch):
    import dlnlp.kernels.memory as memory
    from dlnlp.errors import DlnlpError

    lm = GPTNextToken(gpt)
    c = gpt.config
    capacity = min(3 + 10, c.block_size)
    assert lm.row_bytes(3, 10) == 2 * 2 * c.n_layer * c.n_embd * capacity * 4 + 13 * 9
    budget = 1000 * lm.row_bytes(3, 10)
    monkeypatch.setattr(memory, "available", lambda device="cpu": (budget, "available host memory"))
    generate(lm, [[1, 2, 3]], DecodeConfig(strategy="beam", num_beams=2, max_new_tokens=10))
    with pytest.raises(DlnlpError, match=r"decoding needs about .*model state of 2,000 rows.*lower --num-beams"):
        generate(lm, [[1, 2, 3]] * 2, DecodeConfig(strategy="beam", num_beams=1000, max_new_tokens=10))
