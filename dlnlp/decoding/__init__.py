"""Decoding: greedy, sampling and beam search over one next-token interface.

    from dlnlp.decoding import DecodeConfig, GPTNextToken, generate
    lm = GPTNextToken(model)
    [[best]] = generate(lm, [prompt_ids], DecodeConfig(strategy="beam", num_beams=4, eos_id=eos))
    best.tokens, best.logprob, best.score

Any model joins by implementing :class:`NextTokenModel` (``start``/``step``/``reorder``); the
adapters in :mod:`dlnlp.decoding.interface` cover GPT, recurrent LMs and plain functions.
"""

from dlnlp.decoding.interface import (
    FullContextNextToken,
    GPTNextToken,
    NextTokenModel,
    RecurrentNextToken,
    left_pad,
)
from dlnlp.decoding.search import (
    LENGTH_NORMS,
    STRATEGIES,
    DecodeConfig,
    Hypothesis,
    beam_search,
    generate,
    sample_or_greedy,
    sequence_score,
)

__all__ = [
    "LENGTH_NORMS",
    "STRATEGIES",
    "DecodeConfig",
    "FullContextNextToken",
    "GPTNextToken",
    "Hypothesis",
    "NextTokenModel",
    "RecurrentNextToken",
    "beam_search",
    "generate",
    "left_pad",
    "sample_or_greedy",
    "sequence_score",
]
