"""The fused and the layerwise recurrent stacks: equal outputs from equal weights, every layer's output,
LSTM projection, residuals, direction (causality), checkpointable state, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlnlp.errors import OptionError
from dlnlp.kernels.recurrent import LayerwiseStack, RecurrentStack, reverse_padded
from dlnlp.training.checkpoint import flatten_state, unflatten_state
from dlnlp.training.trainer import detach_state

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

FUSED = {"rnn": lambda i, h, L, **kw: nn.RNN(i, h, L, batch_first=True, **kw),
         "gru": lambda i, h, L, **kw: nn.GRU(i, h, L, batch_first=True, **kw),
         "lstm": lambda i, h, L, **kw: nn.LSTM(i, h, L, batch_first=True, **kw)}


def copy_fused(fused: nn.RNNBase, stack: LayerwiseStack) -> None:
    """Layer l of the fused module (``weight_ih_l{l}``, ...) into the stack's l-th single-layer module."""
    with torch.no_grad():
        for layer, rnn in enumerate(stack.rnns):
            for name, param in rnn.named_parameters():
                param.copy_(getattr(fused, name.replace("_l0", f"_l{layer}")))


def fused_state(cell: str, state):
    """The layerwise tuple of per-layer states as the fused module's ``[layers, B, H]`` state."""
    if cell == "lstm":
        return torch.cat([h for h, _ in state]), torch.cat([c for _, c in state])
    return torch.cat(state)


@pytest.mark.parametrize(("cell", "proj"), [("rnn", 0), ("gru", 0), ("lstm", 0), ("lstm", 3)])
def test_layerwise_stack_equals_the_fused_module_with_the_same_weights(cell, proj):
    torch.manual_seed(0)
    kw = {"proj_size": proj} if proj else {}
    fused = FUSED[cell](4, 6, 3, **kw)
    stack = LayerwiseStack(cell, 4, 6, 3, proj_size=proj)
    copy_fused(fused, stack)
    x = torch.randn(2, 7, 4)
    state = tuple((0.5 * torch.randn(1, 2, proj or 6), 0.5 * torch.randn(1, 2, 6)) if cell == "lstm"
                  else 0.5 * torch.randn(1, 2, 6) for _ in range(3))
    want, want_state = fused(x, fused_state(cell, state))
    top, outputs, new_state = stack(x, state)
    assert torch.allclose(top, want, atol=1e-6)
    assert torch.equal(top, outputs[-1])
    got = fused_state(cell, new_state)
    for a, b in zip(got if cell == "lstm" else (got,), want_state if cell == "lstm" else (want_state,), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # and from a zero state
    assert torch.allclose(stack(x)[0], fused(x)[0], atol=1e-6)


def test_every_layers_output_is_returned_with_its_shape():
    torch.manual_seed(0)
    stack = LayerwiseStack("lstm", 5, 8, 3, proj_size=4)
    top, outputs, state = stack(torch.randn(2, 6, 5))
    assert top.shape == (2, 6, 4) and stack.out_size == 4
    assert [y.shape for y in outputs] == [(2, 6, 4)] * 3
    assert [(h.shape, c.shape) for h, c in state] == [((1, 2, 4), (1, 2, 8))] * 3
    # each layer's output is the next layer's input: rerunning the top layer alone on the one below
    y, _ = stack.rnns[2](outputs[1])
    assert torch.allclose(y, outputs[2], atol=1e-6)
    assert not torch.allclose(outputs[0], outputs[1])
    # init_state matches the shapes the stack returns, and equals starting from None
    zero = stack.init_state(2)
    assert [(h.shape, c.shape) for h, c in zero] == [((1, 2, 4), (1, 2, 8))] * 3
    x = torch.randn(2, 6, 5)
    assert torch.equal(stack(x, zero)[0], stack(x)[0])
    gru = LayerwiseStack("gru", 5, 8, 2)
    assert [h.shape for h in gru(x)[2]] == [(1, 2, 8)] * 2 == [h.shape for h in gru.init_state(2)]


def test_residual_adds_each_layers_input_above_the_first():
    torch.manual_seed(0)
    plain = LayerwiseStack("lstm", 5, 8, 3, proj_size=4)
    res = LayerwiseStack("lstm", 5, 8, 3, proj_size=4, residual=True)
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 5)
    _, p, _ = plain(x)
    top, r, _ = res(x)
    assert torch.allclose(r[0], p[0])                                    # the first layer: none (5 != 4)
    assert torch.allclose(r[1], res.rnns[1](r[0])[0] + r[0], atol=1e-6)  # y_1 = f_1(y_0) + y_0
    assert torch.allclose(top, res.rnns[2](r[1])[0] + r[1], atol=1e-6)
    assert not torch.allclose(r[1], p[1])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    stack = LayerwiseStack("lstm", 3, 6, 2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    stack.eval()
    a, b = stack(x)[0], stack(x)[0]
    assert torch.equal(a, b)
    fused = nn.LSTM(3, 6, 2, batch_first=True)
    copy_fused(fused, stack)
    assert torch.allclose(stack(x)[0], fused(x)[0], atol=1e-6)
    stack.train()
    _, outs, _ = stack(x)
    assert torch.allclose(outs[0], stack.eval()(x)[1][0], atol=1e-6)  # the first layer sees no dropout
    stack.train()
    assert not torch.allclose(stack(x)[0], stack(x)[0])


def test_forward_stack_is_causal_and_reverse_stack_reads_right_to_left():
    torch.manual_seed(0)
    fwd = LayerwiseStack("lstm", 3, 6, 3, proj_size=4, residual=True)
    bwd = LayerwiseStack("lstm", 3, 6, 3, proj_size=4, residual=True, reverse=True)
    bwd.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 8, 3)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 3, 3)         # change the future of t = 4
    for a, b in zip(fwd(x)[1], fwd(x2)[1], strict=True):  # every layer, not just the top
        assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])
    x3 = x.clone()
    x3[:, :3] = torch.randn(2, 3, 3)         # change the past of t = 3
    for a, b in zip(bwd(x)[1], bwd(x3)[1], strict=True):
        assert torch.equal(a[:, 3:], b[:, 3:]) and not torch.allclose(a[:, :3], b[:, :3])
    # reversed reading is the forward reading of the flipped sequence, flipped back
    assert torch.allclose(bwd(x)[0], fwd(x.flip(1))[0].flip(1), atol=1e-6)


def test_reverse_with_lengths_keeps_padding_out_of_each_row():
    torch.manual_seed(0)
    bwd = LayerwiseStack("gru", 3, 5, 2, reverse=True)
    x = torch.randn(2, 6, 3)
    x[1, 4:] = 0.0                           # row 1 is 4 steps long, then padding
    lengths = torch.tensor([6, 4])
    top, _, _ = bwd(x, lengths=lengths)
    alone, _, _ = bwd(x[1:, :4])
    assert torch.allclose(top[1, :4], alone[0], atol=1e-6)
    assert torch.allclose(top[0], bwd(x[:1])[0][0], atol=1e-6)
    assert torch.equal(reverse_padded(reverse_padded(x, lengths), lengths), x)
    assert torch.equal(reverse_padded(x, lengths)[1, :4], x[1, :4].flip(0))


def test_carried_state_equals_reading_the_whole_sequence():
    torch.manual_seed(0)
    stack = LayerwiseStack("lstm", 3, 6, 2, proj_size=2, residual=True).eval()
    x = torch.randn(2, 9, 3)
    whole, _, _ = stack(x)
    first, _, state = stack(x[:, :4])
    second, _, _ = stack(x[:, 4:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_state_round_trips_through_the_checkpoint_and_detach(cell):
    torch.manual_seed(0)
    stack = LayerwiseStack(cell, 3, 6, 3, proj_size=4 if cell == "lstm" else 0)
    x = torch.randn(2, 5, 3)
    _, _, state = stack(x)
    structure, tensors = flatten_state(state)
    back = unflatten_state(structure, tensors, torch.device("cpu"))
    assert isinstance(back, tuple) and len(back) == 3
    assert all(torch.equal(a, b) for a, b in zip(flatten_state(back)[1].values(), tensors.values(), strict=True))
    assert torch.equal(stack(x, back)[0], stack(x, state)[0])
    detached = detach_state(state)
    assert type(detached) is tuple and all(not t.requires_grad for t in flatten_state(detached)[1].values())


def test_gradient_reaches_every_layer_and_the_input():
    torch.manual_seed(0)
    stack = LayerwiseStack("lstm", 3, 6, 3, proj_size=4, residual=True, dropout=0.1, forget_bias=1.0)
    x = torch.randn(2, 5, 3, requires_grad=True)
    top, outputs, _ = stack(x)
    top.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in stack.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forget_bias_and_option_errors():
    stack = LayerwiseStack("lstm", 3, 4, 2, forget_bias=1.0)
    for rnn in stack.rnns:
        b = rnn.bias_ih_l0 + rnn.bias_hh_l0
        assert torch.allclose(b[4:8], torch.ones(4)) and not torch.allclose(b[:4], torch.ones(4))
    with pytest.raises(OptionError, match="cell"):
        LayerwiseStack("tcn", 3, 4)
    with pytest.raises(OptionError, match="proj_size"):
        LayerwiseStack("gru", 3, 4, proj_size=2)
    with pytest.raises(OptionError, match="proj_size"):
        LayerwiseStack("lstm", 3, 4, proj_size=4)
    with pytest.raises(OptionError, match="layers"):
        LayerwiseStack("lstm", 3, 4, 0)
    with pytest.raises(ValueError, match="state holds 1 layers"):
        LayerwiseStack("rnn", 3, 4, 2)(torch.randn(1, 2, 3), (torch.zeros(1, 1, 4),))


def test_fused_stack_is_unidirectional_and_keeps_its_parameter_names():
    stack = RecurrentStack("lstm", 3, 4, layers=2)
    assert not stack.rnn.bidirectional
    assert sorted(n for n, _ in stack.named_parameters())[:2] == ["rnn.bias_hh_l0", "rnn.bias_hh_l1"]
    h, c = stack.init_state(5)
    assert h.shape == c.shape == (2, 5, 4)
    with pytest.raises(TypeError):
        RecurrentStack("lstm", 3, 4, bidirectional=True)
