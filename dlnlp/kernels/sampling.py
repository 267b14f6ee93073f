"""Sampling the next token from a batch of logits: temperature, top-k and top-p (nucleus) filtering.

The one sampling routine every generator in dlnlp uses (RNN and GPT language models, the decoding
engine). For logits ``z`` of shape ``[batch, vocab]``:

* temperature ``T``: ``p = softmax(z / T)``; ``T = 0`` means greedy decoding (argmax, no randomness).
* top-k (Fan et al. 2018): keep the ``k`` largest logits, set the rest to ``-inf``; ``k`` None or 0
  means no limit.
* top-p / nucleus (Holtzman et al. 2020): keep the smallest set of tokens, taken in order of
  decreasing probability, whose cumulative probability reaches ``p``; the most probable token is
  always kept.

Filters are applied in the order temperature, top-k, top-p (as HF transformers' logits warpers do),
then one token per row is drawn with ``torch.multinomial`` from an explicit ``torch.Generator``, so
the same generator seed gives the same tokens. :func:`filter_scores_numpy` applies the same filters
to NumPy scores (the n-gram sampler, which does not load torch); :func:`check_sampling_args` is the
one validation of the three options for every sampler.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where used: the n-gram sampler checks its options without it
    import numpy as np
    import torch

__all__ = ["filter_logits", "filter_scores_numpy", "sample_logits", "check_sampling_args"]


def check_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError for a negative or infinite temperature (0 is greedy), a negative top-k (0 is
    no limit) or a top-p outside (0, 1]."""
    if not 0 <= temperature < math.inf:  # nan fails too
        raise ValueError(f"--temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"--top-k must be >= 0 (0: no limit), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature-scaled logits with tokens outside the top-k / nucleus set to ``-inf``.

    ``logits`` is ``[batch, vocab]`` (or ``[vocab]``); returns a new float32 tensor of the same shape.
    ``temperature`` must be > 0 here (greedy decoding does not need filtering).
    """
    import torch

    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("filter_logits needs temperature > 0; temperature 0 is greedy (use sample_logits)")
    scores = logits.float() / temperature
    if top_k and top_k < scores.size(-1):
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # Probability mass strictly before each token: a token is kept while the mass before it is
        # below p, so the token that crosses p is kept and the first token always is.
        before = torch.cumsum(probs, dim=-1) - probs
        remove_sorted = before >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (``[batch, vocab]``); returns a ``[batch]`` long tensor.

    ``temperature == 0`` returns the argmax (greedy; top-k/top-p do not change it). Otherwise the
    filtered distribution is sampled with ``generator`` (a CPU generator works for CUDA logits: the
    probabilities are moved to the generator's device for the draw, then the ids moved back).
    """
    import torch

    squeeze = logits.dim() == 1
    if squeeze:
        logits = logits.unsqueeze(0)
    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        ids = torch.argmax(logits, dim=-1)
    else:
        probs = torch.softmax(filter_logits(logits, temperature, top_k, top_p), dim=-1)
        target = generator.device if generator is not None else probs.device
        ids = torch.multinomial(probs.to(target), 1, generator=generator).squeeze(-1).to(logits.device)
    return ids[0] if squeeze else ids


def filter_scores_numpy(scores: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None) -> np.ndarray:
    """:func:`filter_logits` for a 1-d NumPy array of logits (same order, same ties kept)."""
    import numpy as np

    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("filter_scores_numpy needs temperature > 0; temperature 0 is greedy (argmax)")
    scores = np.asarray(scores, dtype=np.float64) / temperature
    if top_k and top_k < scores.size:
        kth = np.partition(scores, -top_k)[-top_k]
        scores = np.where(scores >= kth, scores, -np.inf)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-scores, kind="stable")
        shifted = scores[order] - scores[order[0]]
        probs = np.exp(shifted)
        probs /= probs.sum()
        before = np.cumsum(probs) - probs  # mass strictly before each token, as filter_logits
        remove = np.zeros(scores.size, dtype=bool)
        remove[order] = before >= top_p
        scores = np.where(remove, -np.inf, scores)
    return scores
