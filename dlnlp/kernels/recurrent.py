"""Stacked recurrent layers (tanh RNN, GRU, LSTM) shared by the recurrent models (RNN LMs, ELMo).

A thin layer over ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` so the fused kernels (cuDNN on CUDA, the
one-call ATen implementation on CPU) do the work, with ``batch_first`` tensors ``[B, T, D]``:

* tanh RNN (Elman 1990): ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``
* GRU (Cho et al. 2014): update/reset gates ``z, r``; ``h_t = (1 - z) * n + z * h_{t-1}``
* LSTM (Hochreiter & Schmidhuber 1997, with forget gate, Gers et al. 2000): cell ``c_t = f * c_{t-1}
  + i * g``, ``h_t = o * tanh(c_t)``; ``forget_bias`` optionally starts the forget-gate bias at a
  positive value (Jozefowicz et al. 2015 use 1) instead of PyTorch's uniform initialization.

Dropout between stacked layers is the non-recurrent dropout of Zaremba et al. (2014): applied to
the output of each layer but the last, never on the recurrent connections.

The state is ``h`` (``[layers, B, H]``) for RNN/GRU and ``(h, c)`` for LSTM; ``None`` means zeros.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = ("rnn", "gru", "lstm")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


class RecurrentStack(nn.Module):
    """``layers`` stacked recurrent layers of ``cell`` type: ``forward(x, state) -> (outputs, state)``."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, forget_bias: float | None = None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.cell = cell
        self.hidden_size = hidden_size
        self.layers = layers
        kwargs = {"num_layers": layers, "batch_first": True, "dropout": dropout if layers > 1 else 0.0,
                  "bidirectional": bidirectional}
        if cell == "rnn":
            self.rnn = nn.RNN(input_size, hidden_size, nonlinearity="tanh", **kwargs)
        elif cell == "gru":
            self.rnn = nn.GRU(input_size, hidden_size, **kwargs)
        else:
            self.rnn = nn.LSTM(input_size, hidden_size, **kwargs)
        if cell == "lstm" and forget_bias is not None:
            with torch.no_grad():
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        # gates are stacked (input, forget, cell, output): bias_ih + bias_hh = b for f
                        param[hidden_size:2 * hidden_size].fill_(forget_bias)
                    elif name.startswith("bias_hh"):
                        param[hidden_size:2 * hidden_size].zero_()

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        return self.rnn(x, state)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> State:
        directions = 2 if self.rnn.bidirectional else 1
        h = torch.zeros(self.layers * directions, batch_size, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h


def detach_state(state: State) -> State:
    """The state's values without its autograd history (truncated BPTT window boundary)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
