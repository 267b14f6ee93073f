"""Recurrent language models (tanh RNN, GRU, LSTM) and the feed-forward neural n-gram LM.

``RNNLM`` (char-rnn / Zaremba et al. 2014 "Recurrent Neural Network Regularization")::

    e_t = Dropout(E[x_t])                                  # embedding dropout
    h_t = RecurrentStack(e_t, h_{t-1})                     # stacked RNN/GRU/LSTM, dropout between layers
    p(x_{t+1} | x_<=t) = softmax(W Dropout(h_t) + b)       # output dropout, then the decoder

With ``tie_weights`` the decoder reuses the embedding matrix (Press & Wolf 2017; Inan et al. 2017),
``W = E``; when ``hidden != embed`` a linear projection maps ``h_t`` to the embedding size first.

``FFNNLM`` (Bengio et al. 2003, "A Neural Probabilistic Language Model") predicts from the previous
``context`` tokens only::

    x = [C(w_{t-n+1}); ...; C(w_t)]                      # concatenated embeddings, n = context
    y = b + U tanh(d + H x)  (+ W x with direct connections)
    p(w_{t+1} | history) = softmax(y)

Both are *stateful* for the trainer: an RNN carries ``h`` (and ``c``) across BPTT windows; the
n-gram model carries the last ``context - 1`` token ids, so it reads the same streams and its
first predictions of a window see the end of the previous one. ``forward(idx, targets, state)``
returns ``(loss, state)`` with targets (mean cross-entropy in nats per token) and
``(logits, state)`` without. ``features(idx, state, layers)`` returns every layer's hidden states
(:mod:`dlnlp.models.features`); ``forward`` computes the logits from its ``last_hidden_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import _VF, nn

from dlnlp.errors import UsageError
from dlnlp.kernels.memory import MAX_WIDTH
from dlnlp.kernels.recurrent import CELLS, RecurrentStack
from dlnlp.kernels.transformer import dropout_layer
from dlnlp.models.features import Features, Layers, layer_indices
from dlnlp.models.registry import Family, register
from dlnlp.settings import DictConfig

KIND = "rnn_lm"
ALL_CELLS = (*CELLS, "ffnn")


@dataclass
class RNNLMConfig(DictConfig):
    vocab_size: int
    cell: str = "lstm"              # rnn | gru | lstm | ffnn
    embed: int = 64
    hidden: int = 256
    layers: int = 2                 # recurrent layers (ffnn: hidden layers are always 1)
    dropout: float = 0.0            # between layers and on the decoder input
    embed_dropout: float | None = None  # on the embeddings (None: same as dropout)
    tie_weights: bool = False
    forget_bias: float | None = None  # lstm: initial forget-gate bias (None: PyTorch's init)
    context: int = 5                # ffnn: tokens of history (the n of an n-gram model minus one)
    direct: bool = False            # ffnn: Bengio's direct input-to-output connections W x

    def validate(self) -> None:
        if self.cell not in ALL_CELLS:
            raise UsageError(f"--cell must be one of {', '.join(ALL_CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "embed", "hidden", "layers", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("embed", "hidden"):
            if getattr(self, name) > MAX_WIDTH:
                raise ValueError(f"--{name} {getattr(self, name)} is above the widest supported, {MAX_WIDTH:,}")
        if self.forget_bias is not None and self.cell != "lstm":
            raise ValueError(f"--forget-bias applies to --cell lstm only, not {self.cell}")
        for name in ("dropout", "embed_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")




class _LMBase(nn.Module):
    stateful = True

    def loss_or_logits(self, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


class RNNLM(_LMBase):
    """Embedding, stacked RNN/GRU/LSTM, decoder; see the module docstring."""

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        config.validate()
        self.config = config
        embed_dropout = config.dropout if config.embed_dropout is None else config.embed_dropout
        self.embedding = nn.Embedding(config.vocab_size, config.embed)
        self.embed_drop = dropout_layer(embed_dropout)
        self.rnn = RecurrentStack(config.cell, config.embed, config.hidden, config.layers, config.dropout,
                                  forget_bias=config.forget_bias)
        self.out_drop = dropout_layer(config.dropout)
        out_size = config.hidden
        self.proj = None
        if config.tie_weights and config.hidden != config.embed:
            self.proj = nn.Linear(config.hidden, config.embed, bias=False)
            out_size = config.embed
        self.decoder = nn.Linear(out_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def features(self, idx: torch.Tensor, state: Any = None, layers: Layers = "all") -> Features:
        """``idx`` ``[B, T]`` -> :class:`~dlnlp.models.features.Features` and the state after the window.

        ``hidden_states[0]`` is the embedding output ``e_t`` (after embedding dropout),
        ``hidden_states[l]`` the output ``h_t`` of recurrent layer ``l`` (before the dropout between
        layers); ``last_hidden_state`` is the top layer's, which the decoder reads (after output
        dropout and the tied projection). Asking for no middle layer runs the fused kernel as
        :meth:`forward` does; otherwise :func:`layer_outputs` runs its layers one at a time.
        """
        top = self.config.layers
        keep = layer_indices(layers, top + 1)
        x = self.embed_drop(self.embedding(idx))
        if all(i in (0, top) for i in keep):  # the LM's own path (layers=None) included
            h, state = self.rnn(x, state)
            if not keep:
                return Features(h, (), state)
            outputs = {0: x, top: h}
        else:
            per_layer, state = layer_outputs(self.rnn.rnn, x, state)
            outputs = dict(enumerate([x, *per_layer]))
            h = per_layer[-1]
        return Features(h, tuple(outputs[i] for i in keep), state)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: Any = None
                ) -> tuple[torch.Tensor, Any]:
        h, _, state = self.features(idx, state, layers=None)
        h = self.out_drop(h)
        if self.proj is not None:
            h = self.proj(h)
        return self.loss_or_logits(self.decoder(h), targets), state


class FFNNLM(_LMBase):
    """Bengio et al. (2003) neural n-gram LM over the previous ``context`` tokens."""

    def __init__(self, config: RNNLMConfig):
        super().__init__()
        config.validate()
        self.config = config
        n, d = config.context, config.embed
        embed_dropout = config.dropout if config.embed_dropout is None else config.embed_dropout
        self.embedding = nn.Embedding(config.vocab_size, d)
        self.embed_drop = dropout_layer(embed_dropout)
        self.hidden = nn.Linear(n * d, config.hidden)           # H, d
        self.out_drop = dropout_layer(config.dropout)
        out_size = config.hidden
        self.proj = None
        if config.tie_weights and config.hidden != d:
            self.proj = nn.Linear(config.hidden, d, bias=False)
            out_size = d
        self.decoder = nn.Linear(out_size, config.vocab_size)   # U, b
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight
        self.direct = nn.Linear(n * d, config.vocab_size, bias=False) if config.direct else None  # W

    def features(self, idx: torch.Tensor, state: Any = None, layers: Layers = "all") -> Features:
        """``idx`` ``[B, T]`` -> :class:`~dlnlp.models.features.Features` and the last ``context - 1`` ids.

        ``hidden_states[0]`` is ``x``, the concatenated embeddings of the ``context`` tokens
        (``[B, T, context * embed]``, after embedding dropout); ``hidden_states[1]`` and
        ``last_hidden_state`` are ``tanh(d + H x)`` (before output dropout).
        """
        n = self.config.context
        keep = layer_indices(layers, 2)
        if state is None:  # the start of a stream: pad the history with id 0
            state = idx.new_zeros(idx.size(0), n - 1)
        padded = torch.cat([state, idx], dim=1)                      # [B, n-1+T]
        emb = self.embed_drop(self.embedding(padded))                # [B, n-1+T, d]
        # window t holds tokens t .. t+n-1 of padded, oldest first: [B, T, d, n] -> [B, T, n*d]
        x = emb.unfold(1, n, 1).transpose(-1, -2).flatten(-2)
        h = torch.tanh(self.hidden(x))
        outputs = (x, h)
        return Features(h, tuple(outputs[i] for i in keep), padded[:, padded.size(1) - (n - 1):])

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state: Any = None
                ) -> tuple[torch.Tensor, Any]:
        # the direct connections W x read the concatenated embeddings, hidden state 0
        h, hidden, state = self.features(idx, state, layers=(0,) if self.direct is not None else None)
        h = self.out_drop(h)
        if self.proj is not None:
            h = self.proj(h)
        logits = self.decoder(h)
        if self.direct is not None:
            logits = logits + self.direct(hidden[0])
        return self.loss_or_logits(logits, targets), state


def layer_outputs(rnn: nn.RNNBase, x: torch.Tensor, state: Any = None) -> tuple[list[torch.Tensor], Any]:
    """Every layer's outputs of a fused multi-layer ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (``batch_first``).

    The fused kernel returns only the top layer; this runs the same weights (``weight_ih_l{k}`` ...)
    one layer at a time through the same ATen op with ``num_layers=1``, applying the module's
    dropout between layers in training mode as the fused kernel does (with other random masks).
    Returns ``([h^1, ..., h^L], state)``, the state shaped as the fused module's.
    """
    if rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.batch_first:
        raise ValueError("layer_outputs supports unidirectional batch_first RNNs without proj_size")
    lstm = isinstance(rnn, nn.LSTM)
    if lstm:
        op = _VF.lstm
    elif isinstance(rnn, nn.GRU):
        op = _VF.gru
    else:
        op = _VF.rnn_tanh if rnn.nonlinearity == "tanh" else _VF.rnn_relu
    n = rnn.num_layers
    if state is None:
        zeros = x.new_zeros(n, x.size(0), rnn.hidden_size)
        state = (zeros, zeros) if lstm else zeros
    outputs, finals = [], []
    for k in range(n):
        names = [f"weight_ih_l{k}", f"weight_hh_l{k}"] + ([f"bias_ih_l{k}", f"bias_hh_l{k}"] if rnn.bias else [])
        weights = [getattr(rnn, name) for name in names]
        hx = (state[0][k:k + 1], state[1][k:k + 1]) if lstm else state[k:k + 1]
        y, *final = op(x, hx, weights, rnn.bias, 1, 0.0, rnn.training, False, True)
        outputs.append(y)
        finals.append(final)
        x = F.dropout(y, rnn.dropout, rnn.training) if k < n - 1 and rnn.dropout > 0 else y
    if lstm:
        return outputs, (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals]))
    return outputs, torch.cat([f[0] for f in finals])


def build_model(config: RNNLMConfig) -> RNNLM | FFNNLM:
    """The model for ``config.cell``."""
    config.validate()
    return FFNNLM(config) if config.cell == "ffnn" else RNNLM(config)


# -- model directories ----------------------------------------------------------------------------


def load_rnn_lm(directory: Any, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, config.json) of an ``rnn_lm`` model directory."""
    from pathlib import Path

    from dlnlp.errors import ModelDirError
    from dlnlp.io.modeldir import WEIGHTS_NAME, load_weights, read_config
    from dlnlp.models.weights import check_weights, model_from_config

    config = read_config(directory, KIND)
    config_path = Path(directory) / "config.json"
    model = model_from_config(config_path, config, lambda d: build_model(RNNLMConfig.from_dict(d)))
    if not (Path(directory) / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{directory}: no {WEIGHTS_NAME} yet (training saves it at the first validation)")
    state = load_weights(directory, device="cpu")
    check_weights(model, state, Path(directory) / WEIGHTS_NAME)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, config


def _rnn_codec(directory: Any, config: dict[str, Any], model: nn.Module) -> Any:
    from dlnlp.tokenization.text_codec import load_codec

    return load_codec(directory, config, model.config.vocab_size)


# every cell (rnn, gru, lstm, ffnn) is one kind: config.json's model.cell picks the class
register(Family(KIND, load_rnn_lm, (1,), RNNLMConfig, build_model, codec=_rnn_codec,
                next_token="dlnlp.decoding.interface:rnn_lm_next_token",
                description="recurrent and feed-forward neural LMs"))
