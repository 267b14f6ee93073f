"""RNN/GRU/LSTM and Bengio feed-forward language models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlnlp.models.rnn_lm import FFNNLM, RNNLM, RNNLMConfig, build_model, layer_outputs
from tests.conftest import requires_cuda


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "ffnn"])
def test_carried_state_equals_reading_the_whole_sequence(cell):
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=13, cell=cell, embed=6, hidden=10, layers=2, context=3)).eval()
    idx = torch.randint(0, 13, (2, 12))
    whole, _ = model(idx)
    first, state = model(idx[:, :5])
    second, _ = model(idx[:, 5:], state=state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)


def test_loss_is_mean_cross_entropy_of_the_logits():
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=9, cell="gru", embed=4, hidden=5, layers=1)).eval()
    idx, targets = torch.randint(0, 9, (3, 7)), torch.randint(0, 9, (3, 7))
    logits, _ = model(idx)
    loss, _ = model(idx, targets)
    assert loss.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 9), targets.reshape(-1)).item(), rel=1e-5)


def test_ffnn_sees_only_the_last_context_tokens():
    torch.manual_seed(0)
    model = FFNNLM(RNNLMConfig(vocab_size=10, cell="ffnn", embed=4, hidden=8, context=3, direct=True)).eval()
    idx = torch.randint(1, 10, (1, 10))
    changed = idx.clone()
    changed[0, 4] = (changed[0, 4] + 1) % 10
    a, _ = model(idx)
    b, _ = model(changed)
    same = torch.isclose(a, b).all(-1)[0].tolist()
    # position t predicts from tokens t-2..t: only positions 4, 5, 6 can change
    assert same == [True] * 4 + [False] * 3 + [True] * 3


def test_tied_weights_share_one_matrix_with_a_projection_when_sizes_differ():
    model = RNNLM(RNNLMConfig(vocab_size=20, embed=8, hidden=12, layers=1, tie_weights=True))
    assert model.decoder.weight is model.embedding.weight
    assert model.proj is not None and model.proj.weight.shape == (8, 12)
    untied = RNNLM(RNNLMConfig(vocab_size=20, embed=8, hidden=12, layers=1))
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in untied.parameters())


def test_lstm_forget_gate_bias_option():
    from dlnlp.kernels.recurrent import RecurrentStack

    stack = RecurrentStack("lstm", 3, 4, layers=2, forget_bias=1.0)
    for layer in range(2):
        b = getattr(stack.rnn, f"bias_ih_l{layer}") + getattr(stack.rnn, f"bias_hh_l{layer}")
        assert torch.allclose(b[4:8], torch.ones(4))
    # The language model passes its config through; the bias survives a save/load of the config.
    config = RNNLMConfig(vocab_size=7, embed=3, hidden=4, forget_bias=1.0)
    model = build_model(RNNLMConfig.from_dict(config.to_dict()))
    b = model.rnn.rnn.bias_ih_l1 + model.rnn.rnn.bias_hh_l1
    assert torch.allclose(b[4:8], torch.ones(4)) and not torch.allclose(b[:4], torch.ones(4))


def test_greedy_generation_follows_the_argmax_chain_and_seeded_sampling_repeats():
    from dlnlp.decoding import DecodeConfig, generate
    from dlnlp.decoding.interface import rnn_lm_next_token

    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=7, cell="lstm", embed=4, hidden=6, layers=1)).eval()
    lm = rnn_lm_next_token(model)
    out = generate(lm, [[1, 2]], DecodeConfig(strategy="greedy", max_new_tokens=6))[0][0].tokens
    seq = [1, 2]
    for _ in range(6):
        logits, _ = model(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert out == seq[2:]
    sampling = DecodeConfig(strategy="sample", max_new_tokens=20)
    a = generate(lm, [[1]], sampling, generator=torch.Generator().manual_seed(4))[0][0].tokens
    b = generate(lm, [[1]], sampling, generator=torch.Generator().manual_seed(4))[0][0].tokens
    c = generate(lm, [[1]], sampling, generator=torch.Generator().manual_seed(5))[0][0].tokens
    assert a == b and len(a) == 20 and a != c


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="--cell"):
        build_model(RNNLMConfig(vocab_size=5, cell="transformer"))
    with pytest.raises(ValueError, match="--dropout"):
        build_model(RNNLMConfig(vocab_size=5, dropout=1.0))
    with pytest.raises(ValueError, match="--forget-bias applies to --cell lstm"):
        build_model(RNNLMConfig(vocab_size=5, cell="gru", forget_bias=1.0))


def _single_layer(fused: torch.nn.RNNBase, k: int) -> torch.nn.RNNBase:
    """A one-layer module of the same cell holding layer ``k`` of ``fused``: an independent reference."""
    cls = type(fused)
    layer = cls(fused.hidden_size if k else fused.input_size, fused.hidden_size, batch_first=True)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(layer, f"{name}_l0").data.copy_(getattr(fused, f"{name}_l{k}"))
    return layer.eval()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_features_give_every_layer_and_the_fused_top_exactly(cell):
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=13, cell=cell, embed=6, hidden=10, layers=3, tie_weights=True)).eval()
    idx = torch.randint(0, 13, (2, 9))
    with torch.no_grad():
        _, state = model(idx[:, :4])
        logits, after = model(idx[:, 4:], state=state)
        feats = model.features(idx[:, 4:], state)
        fused = model.features(idx[:, 4:], state, layers=None)
    hs = feats.hidden_states
    assert len(hs) == 4 and fused.hidden_states == ()
    # the layer-by-layer top equals the fused kernel's exactly, and so does the state
    assert torch.equal(feats.last_hidden_state, fused.last_hidden_state) and hs[-1] is feats.last_hidden_state
    states = (feats.state, after, fused.state)
    if cell != "lstm":
        states = tuple((s,) for s in states)
    for a, b, c in zip(*states, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    # the logits are the decoder of the top layer, as before features() existed
    assert torch.equal(logits, model.decoder(model.proj(feats.last_hidden_state)))
    assert torch.equal(hs[0], model.embedding(idx[:, 4:]))
    # each middle layer is that layer's own weights applied to the one below, from its carried state
    with torch.no_grad():
        for k in range(3):
            hx = (state[0][k:k + 1], state[1][k:k + 1]) if cell == "lstm" else state[k:k + 1]
            assert torch.allclose(_single_layer(model.rnn.rnn, k)(hs[k], hx)[0], hs[k + 1], atol=1e-6)
    assert [t.shape for t in model.features(idx, layers=[2, 0]).hidden_states] == [(2, 9, 10), (2, 9, 6)]


def test_layer_outputs_applies_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(4, 5, num_layers=2, dropout=0.5, batch_first=True)
    x = torch.randn(3, 6, 4, requires_grad=True)
    outputs, _ = layer_outputs(rnn.eval(), x)
    assert torch.equal(outputs[-1], rnn(x)[0])
    torch.manual_seed(1)
    train_outputs, _ = layer_outputs(rnn.train(), x)
    assert torch.equal(train_outputs[0], outputs[0])  # the first layer sees no dropout
    assert not torch.allclose(train_outputs[1], outputs[1])
    train_outputs[0].sum().backward()
    assert rnn.weight_ih_l0.grad is not None and rnn.weight_ih_l1.grad is None
    with pytest.raises(ValueError, match="unidirectional"):
        layer_outputs(torch.nn.GRU(4, 5, bidirectional=True, batch_first=True), x)


def test_ffnn_features_are_the_context_embeddings_and_the_hidden_layer():
    torch.manual_seed(0)
    model = FFNNLM(RNNLMConfig(vocab_size=10, cell="ffnn", embed=4, hidden=8, context=3, direct=True)).eval()
    idx = torch.randint(1, 10, (2, 7))
    with torch.no_grad():
        feats = model.features(idx)
        logits, state = model(idx)
    x, h = feats.hidden_states
    assert x.shape == (2, 7, 12) and h is feats.last_hidden_state and torch.equal(feats.state, state)
    # position 2 reads tokens 0, 1, 2 oldest first; the first positions read the zero padding
    assert torch.equal(x[:, 2], model.embedding(idx[:, :3]).flatten(1))
    assert torch.equal(x[:, 0, :8], model.embedding(torch.zeros(2, 2, dtype=torch.long)).flatten(1))
    assert torch.equal(h, torch.tanh(model.hidden(x)))
    assert torch.equal(logits, model.decoder(h) + model.direct(x))


@requires_cuda
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_cuda_layer_by_layer_top_matches_the_fused_cudnn_kernel(cell):
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=13, cell=cell, embed=6, hidden=10, layers=3)).cuda().eval()
    idx = torch.randint(0, 13, (2, 9), device="cuda")
    with torch.no_grad():
        feats = model.features(idx)
        fused = model.features(idx, layers=None)
    assert torch.allclose(feats.last_hidden_state, fused.last_hidden_state, atol=1e-5)
