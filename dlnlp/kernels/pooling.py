"""Pooling of hidden states for transfer code: over positions (one vector per sequence) and over
layers (ELMo's scalar mix).

Positions: ``mask`` ``[B, T]`` marks the real tokens (True or 1, as HF's ``attention_mask``; None =
all real), so left- and right-padded batches pool the same:

* ``mean``: the average over the real positions (Sentence-BERT's mean pooling);
* ``first``: the first real position (BERT's ``[CLS]``);
* ``last``: the last real position (GPT's summary token: the only one that has seen the whole text);
* ``max``: the element-wise maximum over the real positions (InferSent's max pooling).

Layers (Peters et al. 2018, eq. 1): ``ELMo_k = gamma * sum_j s_j h_{k,j}`` with ``s = softmax(w)``,
``w`` and ``gamma`` learned with the task.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

POOLINGS = ("mean", "first", "last", "max")


def _mask(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` as a bool ``[B, T]`` with at least one real token per row (all True when None)."""
    if mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    if mask.shape != hidden.shape[:2]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match hidden states {tuple(hidden.shape)}")
    mask = mask.bool()
    if not bool(mask.any(1).all()):
        raise ValueError("a sequence has no real token to pool (its mask is all False)")
    return mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, D]`` -> ``[B, D]``: the mean of the real positions; padding contributes nothing."""
    m = _mask(hidden, mask).unsqueeze(-1)
    # where, not a product: a NaN or inf in a padded position stays out of the sum
    total = torch.where(m, hidden, torch.zeros((), dtype=hidden.dtype, device=hidden.device)).sum(1)
    return total / m.sum(1).to(hidden.dtype)


def first_token_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, D]`` -> ``[B, D]``: the first real position of each row."""
    first = _mask(hidden, mask).int().argmax(1)  # argmax returns the first maximum
    return hidden[torch.arange(hidden.size(0), device=hidden.device), first]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, D]`` -> ``[B, D]``: the last real position of each row (right or left padding)."""
    m = _mask(hidden, mask)
    last = m.size(1) - 1 - m.flip(1).int().argmax(1)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, D]`` -> ``[B, D]``: the element-wise maximum of the real positions (padding never wins)."""
    m = _mask(hidden, mask).unsqueeze(-1)
    return torch.where(m, hidden, torch.full((), float("-inf"), dtype=hidden.dtype, device=hidden.device)).amax(1)


def pool(hidden: torch.Tensor, mask: torch.Tensor | None = None, how: str = "mean") -> torch.Tensor:
    """``[B, T, D]`` -> ``[B, D]`` by ``how``, one of :data:`POOLINGS`."""
    if how == "mean":
        return mean_pool(hidden, mask)
    if how == "first":
        return first_token_pool(hidden, mask)
    if how == "last":
        return last_token_pool(hidden, mask)
    if how == "max":
        return max_pool(hidden, mask)
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {how!r}")


class ScalarMix(nn.Module):
    """ELMo's task-specific layer mix (Peters et al. 2018, eq. 1): ``gamma * sum_j softmax(w)_j h_j``.

    ``w`` starts at zeros (equal weights) and ``gamma`` at one, as in AllenNLP's ``ScalarMix``. With
    ``layer_norm`` each layer is first normalized to zero mean and unit variance over all its values
    at real positions (``mask`` ``[B, T]``; all when None), the paper's "apply layer normalization to
    each biLM layer before weighting" (section 3.2), as AllenNLP's ``do_layer_norm``.
    """

    def __init__(self, num_layers: int, layer_norm: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def mix_weights(self) -> torch.Tensor:
        """The normalized weights ``softmax(w)`` (which layers the task chose)."""
        return torch.softmax(self.weights, dim=0)

    def forward(self, hidden_states: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        if len(hidden_states) != self.weights.numel():
            raise ValueError(f"ScalarMix of {self.weights.numel()} layers got {len(hidden_states)} hidden states")
        s = self.mix_weights()
        if self.layer_norm:
            m = _mask(hidden_states[0], mask).unsqueeze(-1).to(hidden_states[0].dtype)
            count = m.sum() * hidden_states[0].size(-1)
            normed = []
            for h in hidden_states:
                mean = (h * m).sum() / count
                var = (((h - mean) * m) ** 2).sum() / count
                normed.append((h - mean) / torch.sqrt(var + 1e-12))
            hidden_states = normed
        return self.gamma * sum(s[j] * h for j, h in enumerate(hidden_states))
