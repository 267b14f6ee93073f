"""Stacked recurrent layers (tanh RNN, GRU, LSTM) shared by the recurrent models (RNN LMs, ELMo).

Two stacks over ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM``, so the fused kernels (cuDNN on CUDA, the
one-call ATen implementation on CPU) do the work, with ``batch_first`` tensors ``[B, T, D]``:

* :class:`RecurrentStack`: one fused multi-layer module returning the top layer only; the RNN LMs'
  path (one cuDNN call for the whole stack). It reads left to right only, so a language model
  built on it never sees the future.
* :class:`LayerwiseStack`: one single-layer module per layer (cuDNN still runs each layer), for the
  models that need more than the top: every layer's output (ELMo's scalar mix), an LSTM projection
  per layer (``proj_size``, Sak et al. 2014 "LSTM-based RNN architectures for large vocabulary
  speech recognition": ``h_t = W_hr (o * tanh(c_t))``), residual connections between layers
  (ELMo, Peters et al. 2018, adds one between the first and second layer), and a reading direction
  (``reverse=True`` for a backward LM). A bidirectional model is two stacks, one per direction,
  never one fused bidirectional layer: each direction's LM then sees only its own past.

The cells:

* tanh RNN (Elman 1990): ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``
* GRU (Cho et al. 2014): update/reset gates ``z, r``; ``h_t = (1 - z) * n + z * h_{t-1}``
* LSTM (Hochreiter & Schmidhuber 1997, with forget gate, Gers et al. 2000): cell ``c_t = f * c_{t-1}
  + i * g``, ``h_t = o * tanh(c_t)``; ``forget_bias`` optionally starts the forget-gate bias at a
  positive value (Jozefowicz et al. 2015 use 1) instead of PyTorch's uniform initialization.

Dropout between stacked layers is the non-recurrent dropout of Zaremba et al. (2014): applied to
the output of each layer but the last, never on the recurrent connections.

The fused stack's state is ``h`` (``[layers, B, H]``) for RNN/GRU and ``(h, c)`` for LSTM; the
layerwise stack's is a tuple with one such state per layer (``[1, B, H]`` each; with ``proj_size``
an LSTM's ``h`` is ``[1, B, proj_size]``); ``None`` means zeros. Both are tensors in nested tuples,
which the trainer detaches and checkpoints as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import OptionError

CELLS = ("rnn", "gru", "lstm")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class RecurrentStack(nn.Module):
    """``layers`` stacked recurrent layers of ``cell`` type: ``forward(x, state) -> (outputs, state)``."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0,
                 forget_bias: float | None = None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.layers = layers
        kwargs = {"num_layers": layers, "batch_first": True, "dropout": dropout if layers > 1 else 0.0}
        if cell == "rnn":
            self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", **kwargs)
        elif cell == "gru":
            self.rnn = nn.GRU(input_size, hidden_size, **kwargs)
        else:
            self.rnn = nn.LSTM(input_size, hidden_size, **kwargs)
        if cell == "lstm" and forget_bias is not None:
            _set_forget_bias(self.rnn, hidden_size, forget_bias)

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        return self.rnn(x, state)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> State:
        h = torch.zeros(self.layers, batch_size, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h


def _set_forget_bias(rnn: nn.LSTM, hidden_size: int, value: float) -> None:
    """Start every layer's forget-gate bias ``b_if + b_hf`` at ``value`` (Jozefowicz et al. 2015)."""
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_ih"):
                # gates are stacked (input, forget, cell, output): bias_ih + bias_hh = b for f
                param[hidden_size:2 * hidden_size].fill_(value)
            elif name.startswith("bias_hh"):
                param[hidden_size:2 * hidden_size].zero_()


def _make_layer(cell: str, input_size: int, hidden_size: int, proj_size: int) -> nn.RNNBase:
    if cell == "rnn":
        return nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, batch_first=True)
    return nn.LSTM(input_size, hidden_size, batch_first=True, proj_size=proj_size)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``x [B, T, ...]`` with each row's first ``lengths[b]`` steps reversed, its padding left in place.

    Without ``lengths`` the whole time axis is flipped. The map is its own inverse.
    """
    if lengths is None:
        return x.flip(1)
    T = x.size(1)
    t = torch.arange(T, device=x.device).unsqueeze(0)          # [1, T]
    n = lengths.to(x.device).unsqueeze(1)                      # [B, 1]
    index = torch.where(t < n, n - 1 - t, t)                   # [B, T]
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


LayerwiseState = tuple[State, ...] | None


class LayerwiseStack(nn.Module):
    """``layers`` single-layer recurrent modules stacked by hand.

    ``forward(x, state, lengths) -> (top [B, T, out], outputs, state)`` where ``outputs`` lists every
    layer's output ``[B, T, out]`` (bottom first, before dropout) and ``state`` holds one state per
    layer. Layer ``l`` reads ``x_l = Dropout(y_{l-1})`` (``x_0 = x``; dropout between layers as in the
    fused stack, Zaremba et al. 2014) and writes ``y_l = f_l(x_l)``, or ``y_l = f_l(x_l) + x_l`` with
    ``residual`` for ``l >= 1``: every layer above the first has input width = output width
    (``out = proj_size or hidden_size``); the first layer's input is the embedding, so it never has one.
    With no projection, residual or dropout it computes exactly what the fused ``nn.LSTM`` /
    ``nn.GRU`` / ``nn.RNN`` with ``num_layers=layers`` computes from the same weights.

    ``reverse=True`` reads right to left (a backward LM): output at ``t`` depends on ``x_t..x_{n-1}``.
    ``lengths [B]`` (optional, needed only then) keeps each row's padding out of its reversed reading.
    The returned state is the one after the last column read, padding included: carry it across
    windows only for unpadded streams read left to right.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, layers: int = 1, *, proj_size: int = 0,
                 residual: bool = False, dropout: float = 0.0, reverse: bool = False,
                 forget_bias: float | None = None):
        super().__init__()
        if cell not in CELLS:
            raise OptionError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if layers < 1:
            raise OptionError(f"layers must be at least 1, got {layers}")
        if proj_size and cell != "lstm":
            raise OptionError(f"proj_size is an LSTM option, not for cell {cell!r}")
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            # nn.LSTM's own rule: the projection must shrink the hidden state
            raise OptionError(f"proj_size must be between 1 and hidden_size - 1 ({hidden_size - 1}), got {proj_size}")
        if forget_bias is not None and cell != "lstm":
            raise OptionError(f"forget_bias is an LSTM option, not for cell {cell!r}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.out_size = proj_size or hidden_size
        self.layers = layers
        self.residual = residual
        self.dropout = dropout
        self.reverse = reverse
        self.rnns = nn.ModuleList(
            _make_layer(cell, input_size if i == 0 else self.out_size, hidden_size, proj_size) for i in range(layers))
        if forget_bias is not None:
            for rnn in self.rnns:
                _set_forget_bias(rnn, hidden_size, forget_bias)

    def forward(self, x: torch.Tensor, state: LayerwiseState = None, lengths: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], LayerwiseState]:
        if state is not None and len(state) != self.layers:
            raise ValueError(f"state holds {len(state)} layers, the stack has {self.layers}")
        if self.reverse:
            x = reverse_padded(x, lengths)
        outputs: list[torch.Tensor] = []
        states = []
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                x = F.dropout(outputs[-1], self.dropout, self.training)
            y, s = rnn(x, None if state is None else state[i])
            if self.residual and i > 0:
                y = y + x
            outputs.append(y)
            states.append(s)
        if self.reverse:
            # back to the input's time order; the state is still the one after the last step read
            outputs = [reverse_padded(y, lengths) for y in outputs]
        return outputs[-1], outputs, tuple(states)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> LayerwiseState:
        h = torch.zeros(1, batch_size, self.out_size, device=device, dtype=dtype)
        if self.cell != "lstm":
            return tuple(h.clone() for _ in range(self.layers))
        c = torch.zeros(1, batch_size, self.hidden_size, device=device, dtype=dtype)
        return tuple((h.clone(), c.clone()) for _ in range(self.layers))
