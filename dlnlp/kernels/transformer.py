"""The transformer block shared by GPT, BERT and the transfer-learning models.

Pre-LN (GPT-2, ``norm_first=True``)::

    x = x + Dropout(Attention(LN(x)))
    x = x + Dropout(MLP(LN(x)))

Post-LN (the original Transformer and BERT, ``norm_first=False``)::

    x = LN(x + Dropout(Attention(x)))
    x = LN(x + Dropout(MLP(x)))

MLP(x) = W2 GELU(W1 x + b1) + b2 with a hidden size of 4 x dim by default. GPT-2 uses the tanh
approximation of GELU (``gelu_tanh``, HF's ``gelu_new``); BERT uses the exact erf form (``gelu``).
An optional cross-attention sub-layer (between the two) makes it a decoder block of an
encoder-decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.kernels.attention import LayerKV, MultiHeadAttention

ACTIVATIONS = ("gelu_tanh", "gelu", "relu")


def dropout_layer(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity`` for p = 0 (no call overhead in the hot loop)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def activation_fn(name: str):
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")


class MLP(nn.Module):
    """Position-wise feed-forward network ``proj(act(fc(x)))`` with dropout on its output."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0, bias: bool = True,
                 activation: str = "gelu_tanh") -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden, bias=bias)
        self.proj = nn.Linear(hidden, dim, bias=bias)
        self.act = activation_fn(activation)
        self.dropout = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))


class TransformerBlock(nn.Module):
    """One pre- or post-LayerNorm transformer layer (see the module docstring for the equations)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_dim: int | None = None,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
        bias: bool = True,
        norm_first: bool = True,
        activation: str = "gelu_tanh",
        layer_norm_eps: float = 1e-5,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.ln_1 = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout, bias=bias)
        self.cross = None
        if cross_attention:
            self.ln_cross = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias)
            self.cross = MultiHeadAttention(dim, num_heads, dropout=attn_dropout, bias=bias, cross_attention=True)
        self.ln_2 = nn.LayerNorm(dim, eps=layer_norm_eps, bias=bias)
        self.mlp = MLP(dim, mlp_dim or 4 * dim, dropout=dropout, bias=bias, activation=activation)
        self.dropout = dropout_layer(dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
        cache_capacity: int = 0,
        attn_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_padding_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``prefix``: this layer's prefix keys and values (see :mod:`dlnlp.kernels.attention`)."""
        if self.norm_first:
            x = x + self.dropout(self.attn(self.ln_1(x), causal=causal, key_padding_mask=key_padding_mask,
                                           cache=cache, cache_capacity=cache_capacity, attn_mask=attn_mask,
                                           prefix=prefix))
            if self.cross is not None:
                x = x + self.dropout(self.cross(self.ln_cross(x), memory=memory, key_padding_mask=memory_padding_mask))
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.dropout(self.attn(x, causal=causal, key_padding_mask=key_padding_mask, cache=cache,
                                                 cache_capacity=cache_capacity, attn_mask=attn_mask, prefix=prefix)))
        if self.cross is not None:
            x = self.ln_cross(x + self.dropout(self.cross(x, memory=memory, key_padding_mask=memory_padding_mask)))
        return self.ln_2(x + self.mlp(x))


def tie_weights(output: nn.Linear, embedding: nn.Embedding) -> None:
    """Share the output projection with the input embedding (Press & Wolf, 2017): one matrix, one gradient."""
    if output.weight.shape != embedding.weight.shape:
        raise ValueError(f"cannot tie {tuple(output.weight.shape)} to {tuple(embedding.weight.shape)}")
    output.weight = embedding.weight
