"""RNN/GRU/LSTM and Bengio feed-forward language models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlnlp.models.rnn_lm import FFNNLM, RNNLM, RNNLMConfig, build_model


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
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=7, cell="lstm", embed=4, hidden=6, layers=1)).eval()
    out = list(model.generate([1, 2], 6, temperature=0))
    seq = [1, 2]
    for _ in range(6):
        logits, _ = model(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert out == seq[2:]
    a = list(model.generate([1], 20, generator=torch.Generator().manual_seed(4)))
    b = list(model.generate([1], 20, generator=torch.Generator().manual_seed(4)))
    assert a == b


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="--cell"):
        build_model(RNNLMConfig(vocab_size=5, cell="transformer"))
    with pytest.raises(ValueError, match="--dropout"):
        build_model(RNNLMConfig(vocab_size=5, dropout=1.0))
    with pytest.raises(ValueError, match="--forget-bias applies to --cell lstm"):
        build_model(RNNLMConfig(vocab_size=5, cell="gru", forget_bias=1.0))
