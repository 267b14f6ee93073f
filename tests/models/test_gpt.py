"""The GPT model: shapes, loss, cache, padding, tying, save/load and whole-text evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlnlp.models.gpt import GPT, GPTConfig, evaluate_windows, gpt_config_dict, load_gpt
from tests.conftest import requires_cuda


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()


def test_untrained_loss_is_near_log_vocab(model):
    x = torch.randint(0, 13, (4, 16))
    logits, loss = model(x, x)
    assert logits.shape == (4, 16, 13)
    assert loss.item() == pytest.approx(math.log(13), abs=0.2)
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 13), x.reshape(-1)))


def test_causality_future_tokens_do_not_change_the_past(model):
    x = torch.randint(0, 13, (1, 10))
    y = x.clone()
    y[0, 6:] = (y[0, 6:] + 1) % 13
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_incremental_decode_with_cache_equals_full_forward(model):
    x = torch.randint(0, 13, (2, 12))
    with torch.no_grad():
        full, _ = model(x)
        cache = model.new_cache(12)
        parts = [model(x[:, :5], cache=cache)[0]] + [model(x[:, i:i + 1], cache=cache)[0] for i in range(5, 12)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    assert len(cache) == 12


def test_block_size_is_enforced(model):
    with pytest.raises(ValueError, match="block size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_tied_output_layer_and_init(model):
    assert model.lm_head.weight is model.wte.weight
    assert "lm_head.weight" not in model.state_dict_for_save()
    proj = model.h[0].attn.proj.weight
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(4), rel=0.3)
    untied = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=1, n_embd=8, tie_weights=False))
    assert untied.lm_head.weight is not untied.wte.weight


def test_sinusoidal_positions_have_no_position_parameters():
    m = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=8, position="sinusoidal"))
    assert not any(name.startswith("wpe") for name, _ in m.named_parameters())
    m(torch.zeros(1, 8, dtype=torch.long))


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.arange(9).remainder(7).repeat(4, 1)  # a cyclic sequence: perfectly predictable
    opt = torch.optim.AdamW(m.parameters(), lr=3e-2)
    for _ in range(30):
        _, loss = m(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_save_and_load_round_trip(model, tmp_path):
    from dlnlp.io.modeldir import write_model_dir

    write_model_dir(tmp_path / "m", gpt_config_dict(model.config), model.state_dict_for_save())
    again, config = load_gpt(tmp_path / "m")
    x = torch.randint(0, 13, (1, 9))
    assert torch.equal(again(x)[0], model(x)[0])
    assert again.lm_head.weight is again.wte.weight
    assert config["kind"] == "gpt"


def test_evaluate_windows_counts_every_token_once(model):
    ids = torch.randint(0, 13, (50,))
    loss, count = evaluate_windows(model, ids, block_size=16, batch_size=2)
    assert count == 49
    manual, n = 0.0, 0
    for s in range(0, 49, 16):
        w = ids[s:s + 17]
        logits, _ = model(w[None, :-1])
        manual += F.cross_entropy(logits[0], w[1:], reduction="sum").item()
        n += len(w) - 1
    assert loss == pytest.approx(manual / n, abs=1e-5)



def test_features_are_every_layer_and_the_logits_read_the_last_bit_for_bit(model):
    """hidden_states[0] = h_0, [l] = block l's output, [-1] = LN_f(h_L) (HF GPT-2's order); forward's
    logits equal the LM head of last_hidden_state exactly, as computed before features() existed."""
    x = torch.randint(0, 13, (2, 11))
    with torch.no_grad():
        h = model.drop(model.wte(x) + model.wpe(torch.arange(11)))
        expected = [h]
        for block in model.h:
            h = block(h, causal=True)
            expected.append(h)
        expected[-1] = model.ln_f(h)
        feats = model.features(x)
        logits, _ = model(x)
        last, _ = model(x, last_only=True)
    assert len(feats.hidden_states) == model.config.n_layer + 1
    for got, want in zip(feats.hidden_states, expected, strict=True):
        assert torch.equal(got, want)
    assert feats.last_hidden_state is feats.hidden_states[-1] and feats.state is None
    assert torch.equal(logits, model.lm_head(model.ln_f(h)))  # the pre-features forward, exactly
    assert torch.equal(logits, model.lm_head(feats.last_hidden_state))
    assert torch.equal(last, model.lm_head(model.ln_f(h[:, -1:])))


def test_features_layer_selection(model):
    x = torch.randint(0, 13, (1, 6))
    with torch.no_grad():
        every = model.features(x).hidden_states
        none = model.features(x, layers=None)
        picked = model.features(x, layers=[-1, 0, 1]).hidden_states
    assert none.hidden_states == () and torch.equal(none.last_hidden_state, every[-1])
    assert len(picked) == 3
    assert all(torch.equal(a, b) for a, b in zip(picked, [every[2], every[0], every[1]], strict=True))
    for bad in ([3], [-4], "top"):
        with pytest.raises(ValueError, match="layer"):
            model.features(x, layers=bad)


def test_features_with_a_cache_continue_the_full_sequence(model):
    x = torch.randint(0, 13, (2, 9))
    with torch.no_grad():
        full = model.features(x, layers=[1])
        cache = model.new_cache(9)
        model.features(x[:, :5], cache=cache, layers=None)
        tail = model.features(x[:, 5:], cache=cache, layers=[1])
    assert torch.allclose(tail.hidden_states[0], full.hidden_states[0][:, 5:], atol=1e-5)
    assert torch.allclose(tail.last_hidden_state, full.last_hidden_state[:, 5:], atol=1e-5)


@requires_cuda
def test_cuda_forward_and_cached_decode_match_cpu(model):
    from dlnlp.decoding import DecodeConfig, GPTNextToken, generate

    x = torch.randint(0, 13, (2, 12))
    cuda = GPT(model.config).cuda().eval()
    cuda.load_state_dict(model.state_dict())
    assert torch.allclose(cuda(x.cuda())[0].cpu(), model(x)[0], atol=1e-4)
    config = DecodeConfig(strategy="beam", num_beams=3, max_new_tokens=5)
    prompts = [[1, 2, 3], [4]]
    on_gpu = generate(GPTNextToken(cuda), prompts, config)
    on_cpu = generate(GPTNextToken(model), prompts, config)
    assert [h[0].tokens for h in on_gpu] == [h[0].tokens for h in on_cpu]
