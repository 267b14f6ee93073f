"""Running a fine-tuned model: frozen features computed once, predictions streamed in input order.

:func:`compute_features` runs the backbone once over a data set (no gradients, eval mode, length-
sorted batches) and keeps what the head reads, so ``--strategy features`` trains the head on those
vectors alone. :func:`predict_examples` and :func:`predict_sentences` read inputs in chunks, sort
each chunk by length into batches (padded per batch) and yield the results in input order, so
memory stays flat on any input size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from dlnlp.io.labeled import Example, Sentence
from dlnlp.kernels.device import autocast
from dlnlp.transfer.data import Encoded, collate, encode_examples, encode_sentences, inference_batches
from dlnlp.transfer.model import FineTuned

CHUNK_BATCHES = 8  # batches of input read and sorted by length together when predicting


def _model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items() if k != "labels"}


@torch.no_grad()
def compute_features(model: FineTuned, data: Encoded, batch_size: int = 64,
                     dtype: torch.dtype | None = None) -> list[torch.Tensor] | torch.Tensor:
    """What the head reads for every example, computed once with the backbone frozen: a float32 CPU
    tensor ``[N, k, D]`` (one vector per chosen layer), or for ``tag`` a list of ``[words, k, D]``."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    segments = model.backbone.segments
    out: list[Any] = [None] * len(data)
    try:
        for index in inference_batches(data.lengths(), batch_size):
            rows = [data.rows[i] for i in index]
            batch = _model_inputs(collate(rows, None, model.backbone.pad_id, segments), device)
            with autocast(device, dtype):
                x = model.layer_inputs(**batch).float().cpu()
            for j, i in enumerate(index):
                out[i] = x[j, : len(rows[j].starts)].clone() if model.config.task == "tag" else x[j]
    finally:
        model.train(was)
    return out if model.config.task == "tag" else torch.stack(out)


def cached_batch(features: list[torch.Tensor] | torch.Tensor, labels: Sequence[Any] | None,
                 index: np.ndarray, task: str) -> dict[str, torch.Tensor]:
    """A batch of cached features (``features`` key) with its labels (tag: words padded, labels -100)."""
    if task != "tag":
        batch = {"features": features[torch.as_tensor(index)]}
        if labels is not None:
            dtype = torch.float32 if task == "regress" else torch.long
            batch["labels"] = torch.tensor([labels[i] for i in index], dtype=dtype)
        return batch
    words = max(max(features[i].shape[0] for i in index), 1)
    first = features[index[0]]
    x = torch.zeros((len(index), words, *first.shape[1:]), dtype=first.dtype)
    y = torch.full((len(index), words), -100, dtype=torch.long)
    for j, i in enumerate(index):
        n = features[i].shape[0]
        x[j, :n] = features[i]
        if labels is not None:
            y[j, :n] = torch.as_tensor(labels[i][:n])
    batch = {"features": x}
    if labels is not None:
        batch["labels"] = y
    return batch


@torch.no_grad()
def logits_in_order(model: FineTuned, data: Encoded, batch_size: int = 64,
                    dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """The logits of every example of ``data`` in input order (float32, CPU; ``[words, C]`` per tag
    sentence, the words past the length limit left out)."""
    model.eval()
    device = next(model.parameters()).device
    out: list[Any] = [None] * len(data)
    for index in inference_batches(data.lengths(), batch_size):
        rows = [data.rows[i] for i in index]
        batch = _model_inputs(collate(rows, None, model.backbone.pad_id, model.backbone.segments), device)
        with autocast(device, dtype):
            logits = model(**batch).float().cpu()
        for j, i in enumerate(index):
            out[i] = logits[j, : len(rows[j].starts)] if model.config.task == "tag" else logits[j]
    return out


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_examples(model: FineTuned, examples: Iterable[Example], *, batch_size: int = 64,
                     max_len: int | None = None, dtype: torch.dtype | None = None
                     ) -> Iterator[tuple[Example, torch.Tensor]]:
    """Each example with its probabilities over ``model.labels`` (``[C]``; the predicted value ``[1]``
    for regress), in input order, read and run ``batch_size * CHUNK_BATCHES`` at a time."""
    task = model.config.task
    for chunk in _chunks(examples, batch_size * CHUNK_BATCHES):
        data = encode_examples(model.backbone, chunk, task, None, max_len)
        for example, logits in zip(chunk, logits_in_order(model, data, batch_size, dtype), strict=True):
            yield example, logits if task == "regress" else torch.softmax(logits, -1)


def predict_sentences(model: FineTuned, sentences: Iterable[Sentence], *, batch_size: int = 64,
                      max_len: int | None = None, dtype: torch.dtype | None = None
                      ) -> Iterator[tuple[Sentence, list[str]]]:
    """Each sentence with one predicted tag per word, in input order. Words past the length limit
    (not seen by the model) get ``O`` when it is a tag, else the first tag."""
    labels = model.labels
    fallback = "O" if "O" in labels else labels[0]
    for chunk in _chunks(sentences, batch_size * CHUNK_BATCHES):
        data = encode_sentences(model.backbone, chunk, None, max_len)
        for sentence, logits in zip(chunk, logits_in_order(model, data, batch_size, dtype), strict=True):
            tags = [labels[i] for i in logits.argmax(-1).tolist()]
            yield sentence, tags + [fallback] * (len(sentence.tokens) - len(tags))
