"""Labeled examples as model input, and batches that carry little padding.

:func:`encode_examples` and :func:`encode_sentences` turn :mod:`dlnlp.io.labeled` examples into ids
(through the backbone, which knows how its model reads text) and label ids. :class:`LengthBuckets`
is the trainer's batch source: each epoch the examples are shuffled, cut into chunks of
``CHUNK_BATCHES`` batches, each chunk sorted by length and cut into batches, and the batches
shuffled (HF's ``LengthGroupedSampler`` does the same with its "megabatches" of 50); a batch is
padded to its own longest example only. Attention cost and padding both fall with it, which on a
CPU is most of a fine-tuning step's time for short texts. :func:`inference_batches` sorts whole
chunks by length for prediction and returns each batch's positions so outputs keep input order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError
from dlnlp.io.labeled import Example, LabelMap, Sentence
from dlnlp.transfer.backbone import Backbone, EncodedWords
from dlnlp.transfer.model import IGNORE_INDEX

CHUNK_BATCHES = 50  # batches sorted by length together (HF's megabatch multiplier)


@dataclass
class Encoded:
    """Examples as ids: ``rows`` (EncodedText or EncodedWords), ``labels`` (an id, a float for regress,
    a list of tag ids per word, or None for unlabeled input), and where each example came from."""

    rows: list[Any]
    labels: list[Any] | None
    where: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        return [len(r.ids) for r in self.rows]


def encode_examples(backbone: Backbone, examples: Sequence[Example], task: str, label_map: LabelMap | None,
                    max_len: int | None) -> Encoded:
    """Classification / pair / regression examples as ids; labels through ``label_map`` (floats for
    ``regress``; none when ``label_map`` is None and the examples have no labels)."""
    pairs = None
    if task == "pair":
        pairs = [e.text_pair for e in examples]
        missing = next((e for e in examples if e.text_pair is None), None)
        if missing is not None:
            raise InputError(f"{missing.where}: no second text (give --text-pair-field for --task pair)")
    rows = backbone.encode([e.text for e in examples], pairs, max_len)
    labels = None
    if examples and examples[0].label is not None:
        if task == "regress":
            labels = []
            for e in examples:
                try:
                    labels.append(float(e.label))
                except ValueError:
                    raise InputError(f"{e.where}: label {e.label!r} is not a number (--task regress)") from None
        elif label_map is not None:
            labels = [label_map.id(e.label, e.where) for e in examples]
    return Encoded(rows, labels, [e.where for e in examples])


def encode_sentences(backbone: Backbone, sentences: Sequence[Sentence], label_map: LabelMap | None,
                     max_len: int | None) -> Encoded:
    """Pre-tokenized sentences as ids with each word's first sub-token; tags through ``label_map``."""
    rows = backbone.encode_words([s.tokens for s in sentences], max_len)
    labels = None
    if sentences and sentences[0].tags is not None and label_map is not None:
        labels = [[label_map.id(t, s.where) for t in s.tags] for s in sentences]
    return Encoded(rows, labels, [s.where for s in sentences])


def collate(rows: Sequence[Any], labels: Sequence[Any] | None, pad_id: int, segments: bool) -> dict[str, torch.Tensor]:
    """A right-padded batch: ``input_ids``, ``attention_mask`` (1 = real), ``token_type_ids`` (models with
    segments), ``word_index`` and per-word ``labels`` padded with -100 (tag), or ``labels``."""
    width = max(len(r.ids) for r in rows)
    n = len(rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64) if segments else None
    for i, r in enumerate(rows):
        ids[i, : len(r.ids)] = r.ids
        mask[i, : len(r.ids)] = 1
        if types is not None and getattr(r, "types", None):
            types[i, : len(r.types)] = r.types
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    if rows and isinstance(rows[0], EncodedWords):
        words = max(max(r.words for r in rows), 1)
        index = np.zeros((n, words), dtype=np.int64)
        for i, r in enumerate(rows):
            index[i, : len(r.starts)] = r.starts
        batch["word_index"] = torch.from_numpy(index)
        if labels is not None:
            tags = np.full((n, words), IGNORE_INDEX, dtype=np.int64)
            for i, (r, row_labels) in enumerate(zip(rows, labels, strict=True)):
                tags[i, : len(r.starts)] = row_labels[: len(r.starts)]  # words cut by the length limit: no loss
            batch["labels"] = torch.from_numpy(tags)
    elif labels is not None:
        dtype = torch.float32 if labels and isinstance(labels[0], float) else torch.long
        batch["labels"] = torch.tensor(list(labels), dtype=dtype)
    return batch


def bucketed_order(lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None,
                   chunk_batches: int = CHUNK_BATCHES) -> list[np.ndarray]:
    """Batches of indices: shuffled (``rng``) or in order, sorted by length within chunks of
    ``chunk_batches`` batches (longest first), the batches shuffled again (``rng``)."""
    n = len(lengths)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    lengths = np.asarray(lengths)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, n, chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class LengthBuckets:
    """The trainer's batch source over ``count`` examples (see the module docstring).

    ``make_batch(indices)`` builds a batch; the order of epoch ``e`` depends on ``seed`` and ``e`` only,
    so a resumed run (``state_dict``: epoch and position) sees the batches it would have seen.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, make_batch: Callable[[np.ndarray], Any], *,
                 seed: int = 0, shuffle: bool = True, chunk_batches: int = CHUNK_BATCHES) -> None:
        if not len(lengths):
            raise InputError("no training examples")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.make_batch = make_batch
        self.seed = seed
        self.shuffle = shuffle
        self.chunk_batches = chunk_batches
        self.epoch = 0
        self.position = 0
        self.batches_per_epoch = math.ceil(len(self.lengths) / batch_size)
        self._plan: list[np.ndarray] | None = None

    def _order(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        return bucketed_order(self.lengths, self.batch_size, rng, self.chunk_batches)

    def next_batch(self) -> tuple[Any, bool]:
        if self._plan is None:
            self._plan = self._order(self.epoch)
        if self.position >= len(self._plan):
            self.epoch += 1
            self.position = 0
            self._plan = self._order(self.epoch)
        indices = self._plan[self.position]
        self.position += 1
        return self.make_batch(indices), False

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.position / self.batches_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan = None

    def __iter__(self) -> Iterator[Any]:
        """One pass in length order, unshuffled (evaluation)."""
        for indices in bucketed_order(self.lengths, self.batch_size, None, 1 << 30):
            yield self.make_batch(indices)


def inference_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices in batches of similar length, longest first, for prediction (outputs are put back in order)."""
    return bucketed_order(lengths, batch_size, None, chunk_batches=1 << 30)
