"""Sampling the next token from a batch of logits: temperature, top-k and top-p (nucleus) filtering.

The one sampling routine every generator in dlnlp uses (RNN and GPT language models, the decoding
engine). For logits ``z`` of shape ``[batch, vocab]``:

* temperature ``T``: ``p = softmax(z / T)``; ``T = 0`` means greedy decoding (argmax, no randomness).
* top-k (Fan et al. 2018): keep the ``k`` largest logits, set the rest to ``-inf``.
* top-p / nucleus (Holtzman et al. 2020): keep the smallest set of tokens, taken in order of
  decreasing probability, whose cumulative probability reaches ``p``; the most probable token is
  always kept.

Filters are applied in the order temperature, top-k, top-p (as HF transformers' logits warpers do),
then one token per row is drawn with ``torch.multinomial`` from an explicit ``torch.Generator``, so
the same generator seed gives the same tokens.
"""

from __future__ import annotations

import torch

__all__ = ["filter_logits", "sample_logits", "check_sampling_args"]


def check_sampling_args(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise ValueError for a negative temperature, a top-k below 1 or a top-p outside (0, 1]."""
    if temperature < 0 or temperature != temperature:
        raise ValueError(f"--temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Temperature-scaled logits with tokens outside the top-k / nucleus set to ``-inf``.

    ``logits`` is ``[batch, vocab]`` (or ``[vocab]``); returns a new float32 tensor of the same shape.
    ``temperature`` must be > 0 here (greedy decoding does not need filtering).
    """
    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("filter_logits needs temperature > 0; temperature 0 is greedy (use sample_logits)")
    scores = logits.float() / temperature
    if top_k is not None and top_k < scores.size(-1):
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
