"""A bidirectional LSTM sentence encoder: the small, fast student of Tang et al. (2019), "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks".

    e_t   = Dropout(E[x_t])                          word embedding (optionally word2vec / GloVe vectors)
    h_t^f = LSTM_f(e_1..e_t)                         left to right
    h_t^b = LSTM_b(e_n..e_t)                         right to left, over the real tokens only
    h_t   = [h_t^f ; h_t^b]                          2 * hidden per position

A task head max-pools ``h_t`` over the real positions (``--pool max``) and classifies it; that
pooling and the head live in :mod:`dlnlp.transfer.model`, so a BiLSTM is a backbone like BERT. It
reads text as BERT does (``[CLS] A [SEP]`` with an attention mask; ``reads_segments``), through a
word-level tokenizer, so :mod:`dlnlp.transfer` feeds it with no special case. The backward direction
reads each row's real tokens reversed (:func:`dlnlp.kernels.recurrent.reverse_padded`), so right
padding never reaches a real position's state, and the fused cuDNN stack runs both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlnlp.errors import OptionError
from dlnlp.kernels.recurrent import RecurrentStack, reverse_padded
from dlnlp.kernels.transformer import dropout_layer
from dlnlp.models.features import Features, Layers, layer_indices
from dlnlp.models.registry import Family, register
from dlnlp.models.weights import TiedWeights, load_torch_model, saved_text_codec
from dlnlp.settings import DictConfig

KIND = "bilstm"
FORMAT_VERSION = 1


@dataclass
class BiLSTMConfig(DictConfig):
    """Hyperparameters; saved under ``"model"`` in config.json (Tang et al.: embed 300, hidden 150)."""

    vocab_size: int
    embed: int = 300
    hidden: int = 150         # per direction
    layers: int = 1
    dropout: float = 0.1
    pad_id: int = 0
    max_len: int = 512

    def validate(self) -> BiLSTMConfig:
        for name in ("vocab_size", "embed", "hidden", "layers", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"bilstm {name} must be >= 1, got {value}")
        if not 0 <= self.dropout < 1:
            raise OptionError(f"bilstm dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise OptionError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
        return self


class BiLSTM(TiedWeights, nn.Module):
    """``features(ids, types, mask, layers)`` -> hidden states: ``[0]`` the embeddings, ``[1]`` the BiLSTM."""

    reads_segments = True  # [CLS] A [SEP] with an attention mask, as transfer code feeds BERT

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__()
        c = config.validate()
        self.config = c
        self.embedding = nn.Embedding(c.vocab_size, c.embed, padding_idx=c.pad_id)
        self.drop = dropout_layer(c.dropout)
        self.forward_rnn = RecurrentStack("lstm", c.embed, c.hidden, c.layers, c.dropout)
        self.backward_rnn = RecurrentStack("lstm", c.embed, c.hidden, c.layers, c.dropout)
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[c.pad_id].zero_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def features(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, layers: Layers = "all") -> Features:
        """``input_ids`` ``[B, T]`` (right-padded; ``attention_mask`` 1 = real) -> ``[B, T, 2 * hidden]``.
        ``token_type_ids`` are accepted and ignored (one text per example)."""
        x = self.drop(self.embedding(input_ids))
        lengths = attention_mask.long().sum(1) if attention_mask is not None else None
        ahead, _ = self.forward_rnn(x)
        behind, _ = self.backward_rnn(reverse_padded(x, lengths))
        h = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
        keep = layer_indices(layers, 2)
        states = (x, h)
        return Features(h, tuple(states[i] for i in keep))

    def load_vectors(self, words: list[str], vectors: Any) -> int:
        """Set the embedding row of each vocabulary word found in ``vectors`` (a
        :class:`~dlnlp.io.vectors.KeyedVectors`; looked up as written, then lowercased); returns how
        many rows were set. The other rows keep their random start."""
        if vectors.dim != self.config.embed:
            raise OptionError(f"the vectors have {vectors.dim} dimensions, the BiLSTM's embeddings "
                              f"{self.config.embed} (give embed={vectors.dim})")
        found = 0
        with torch.no_grad():
            for i, word in enumerate(words):
                key = word if word in vectors else word.lower()
                if i != self.config.pad_id and key in vectors:
                    self.embedding.weight[i] = torch.from_numpy(vectors[key].copy())
                    found += 1
        return found


def save_bilstm(model: BiLSTM, directory: str | Path, *, force: bool = False, files: dict[str, Any] | None = None,
                **extra: Any) -> Path:
    from dlnlp.io.modeldir import make_config, write_model_dir

    config = make_config(KIND, FORMAT_VERSION, model=model.config.to_dict(), **extra)
    return write_model_dir(directory, config, model.state_dict(), files, force=force)


def load_bilstm(directory: str | Path, device: str | torch.device = "cpu") -> tuple[BiLSTM, dict[str, Any]]:
    return load_torch_model(directory, KIND, (FORMAT_VERSION,), lambda d: BiLSTM(BiLSTMConfig.from_dict(d)), device)


register(Family(KIND, load_bilstm, (FORMAT_VERSION,), BiLSTMConfig, BiLSTM, save_bilstm, saved_text_codec,
                description="bidirectional LSTM sentence encoder (a distillation student)"))
