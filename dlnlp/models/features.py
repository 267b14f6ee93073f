"""What a model's ``features()`` returns: every layer's hidden states apart from its LM head.

Each language model (GPT, the RNN LMs; BERT and ELMo later) has
``features(idx, ..., layers="all") -> Features``, and its ``forward`` computes the logits from the
same ``last_hidden_state``, so transfer code reads exactly what the LM head reads. The hidden
states follow HF's ``output_hidden_states``: ``hidden_states[0]`` is the embedding output and
``hidden_states[l]`` the output of layer ``l`` (``1..L``), so a model of ``L`` layers has ``L + 1``.
:mod:`dlnlp.kernels.pooling` pools them over positions and mixes them over layers.

``layers`` picks which of them to return: ``"all"``, ``None`` (none, only ``last_hidden_state``:
the LM's own path, which collects nothing) or a sequence of indices into the ``L + 1`` (negative
ones count from the top), returned in the order asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

Layers = str | Sequence[int] | None


class Features(NamedTuple):
    """A model's hidden states: ``last_hidden_state`` ``[B, T, D]`` is what the LM head reads;
    ``hidden_states`` the layers asked for (``()`` with ``layers=None``); ``state`` the recurrent
    state to carry into the next window (``None`` for a transformer)."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] = ()
    state: Any = None


def layer_indices(layers: Layers, count: int) -> tuple[int, ...]:
    """``layers`` as indices in ``0 .. count - 1`` (``count`` = layers + 1, the embedding output first)."""
    if layers is None:
        return ()
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all', None or a sequence of layer indices, got {layers!r}")
        return tuple(range(count))
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count:
            raise ValueError(f"layer index {i!r} is out of range: the model has hidden states 0..{count - 1} "
                             f"(0 = embeddings, {count - 1} = top layer)")
        out.append(i % count)
    return tuple(out)
