"""Position encodings: learned absolute embeddings (GPT-2, BERT) and fixed sinusoids (Vaswani et al.).

Both take integer positions (``[T]`` or ``[B, T]``) and return vectors to add to the token
embeddings, so left-padded batches can pass per-row positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LearnedPositionalEmbedding(nn.Embedding):
    """One trained vector per absolute position ``0 .. max_positions - 1`` (GPT-2's ``wpe``)."""

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__(max_positions, dim)
        self.max_positions = max_positions

    def forward(self, positions: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(positions)


def sinusoidal_table(max_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``PE[pos, 2i] = sin(pos / base^(2i/dim))``, ``PE[pos, 2i+1] = cos(pos / base^(2i/dim))``.

    The formula of Vaswani et al. (2017), section 3.5; an odd ``dim`` drops the last cosine.
    """
    position = torch.arange(max_positions, dtype=torch.float64).unsqueeze(1)
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(max_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : dim // 2]
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sin/cos position vectors (no parameters; a non-persistent buffer, not saved with weights)."""

    def __init__(self, max_positions: int, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.register_buffer("table", sinusoidal_table(max_positions, dim, base), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


def make_position_encoding(kind: str, max_positions: int, dim: int) -> nn.Module:
    """``learned`` or ``sinusoidal``."""
    if kind == "learned":
        return LearnedPositionalEmbedding(max_positions, dim)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(max_positions, dim)
    raise ValueError(f"position encoding {kind!r}: expected learned or sinusoidal")
