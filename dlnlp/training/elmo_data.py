"""ELMo's training data: a stream of word types, its closed output vocabulary and its two readings.

The corpus is read once and spooled to ``DIR/data/`` as one ``uint32`` stream of *word types* (every
distinct whitespace-separated word, in first-seen order; type 0 is ``</s>``):
``</s> w w w </s> w w </s> ...`` (each line ends with ``</s>``, and one starts the text, so that every
line is preceded by one too). Beside it:

* ``type_chars.npy`` ``[types, max_chars]``: each type's character ids (:func:`dlnlp.models.elmo.encode_word`);
  the biLM reads every word by its characters, in or out of the output vocabulary;
* ``type_out.npy`` ``[types]``: each type's id in the output vocabulary, ``<unk>`` (0) for the words
  of the training part seen fewer than ``min_count`` times or beyond the ``max_vocab`` most frequent
  (the rule of :class:`dlnlp.models.vocab.Vocabulary` and of ``dlnlp ngram train --min-count``),
  ``</s>`` 1, the others by decreasing count from 2 (the order the adaptive softmax needs).

The vocabulary itself is ``vocab.txt`` beside the weights. Validation is ``--val FILE`` or the last
``val_fraction`` of the lines (cut at a line end; the ``</s>`` there belongs to both parts).

:class:`ElmoStreams` reads the stream as :class:`~dlnlp.training.data.StreamBatches` does, twice: the
forward LM's ``B`` streams left to right and the backward LM's ``B`` streams of the reversed text, so
that each direction's state carries from window to window (across lines) in its own reading order.
Each batch encodes the distinct words of both windows once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, OptionError
from dlnlp.io.corpus import CorpusOptions, describe_inputs, iter_line_blocks
from dlnlp.models.elmo import BOUNDARY, BOUNDARY_ID, UNK, UNK_ID, encode_words, split_words
from dlnlp.models.vocab import Vocabulary
from dlnlp.training.data import DATA_DIR, META_NAME, StreamBatches, TokenWriter, open_tokens

TYPE_CHARS = "type_chars.npy"
TYPE_OUT = "type_out.npy"


class ElmoVocabFile:
    """The output vocabulary as the run flow stores it (``save(directory)`` writes ``vocab.txt``)."""

    level = "word"
    eos_id = BOUNDARY_ID

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.vocab_size = len(vocab)

    def save(self, directory: str | Path) -> None:
        self.vocab.save(Path(directory))


@dataclass
class ElmoData:
    """Spooled type streams, the type tables and (when just spooled) the vocabulary file."""

    train: np.ndarray
    val: np.ndarray | None
    vocab_size: int
    type_out: np.ndarray  # int64 [types]
    type_chars: np.ndarray  # int16 [types, max_chars]
    meta: dict[str, Any]
    codec: Any = None


def prepare_elmo_data(
    inputs: Sequence[str] | None,
    out_dir: str | Path,
    *,
    level: str = "word",
    tokenizer: Any = None,
    val: str | Path | None = None,
    val_fraction: float = 0.1,
    options: CorpusOptions | None = None,
    vocab_size: int | None = None,
    eos_id: int | None = None,
    min_count: int = 3,
    max_vocab: int | None = None,
    max_chars: int = 50,
) -> ElmoData:
    """Spool ``inputs`` (and ``val``) to ``out_dir/data`` as word types and build the vocabulary.

    The arguments of :func:`~dlnlp.training.data.prepare_lm_data` are accepted for the run flow; words
    are whitespace-separated, so a tokenizer, ids and ``vocab_size``/``eos_id`` are refused.
    """
    if tokenizer is not None or vocab_size is not None or eos_id is not None:
        raise OptionError(
            "elmo reads whitespace-separated words; --tokenizer, --ids, --vocab-size and --eos-id "
            "do not apply (use --min-count and --max-vocab for the vocabulary)"
        )
    if min_count < 1:
        raise OptionError(f"--min-count must be >= 1, got {min_count}")
    if max_vocab is not None and max_vocab < 1:
        raise OptionError(f"--max-vocab must be >= 1, got {max_vocab}")
    if not 0 <= val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    options = options or CorpusOptions()
    data_dir = Path(out_dir) / DATA_DIR
    if data_dir.exists():
        raise InputError(f"{data_dir}: already exists; spool into a new run directory")
    data_dir.mkdir(parents=True)
    types: dict[str, int] = {BOUNDARY: 0}
    sources: list[Sequence[str] | None] = [inputs] + ([[str(val)]] if val is not None else [])
    counts = []
    for i, source in enumerate(sources):
        with TokenWriter(data_dir / f"tokens{i}.bin", np.uint32) as writer:
            writer.write([0])
            for block in iter_line_blocks(source, options):
                ids: list[int] = []
                for line in block:
                    ids.extend(types.setdefault(w, len(types)) for w in split_words(line))
                    ids.append(0)
                writer.write(ids)
        counts.append(writer.count)
    train_name, train_count = "tokens0.bin", counts[0]
    if train_count < 3:
        raise InputError(f"{describe_inputs(inputs)}: the training text has no line to learn from")
    if val is not None:
        split = {"train": [train_name, 0, train_count], "val": ["tokens1.bin", 0, counts[1]]}
    elif val_fraction > 0:
        stream = open_tokens(data_dir / train_name, np.uint32)
        ends = np.flatnonzero(stream == 0)
        want = int(train_count * (1 - val_fraction))
        cut = int(ends[np.abs(ends - want).argmin()])
        if cut in (0, train_count - 1):
            raise InputError(
                f"{describe_inputs(inputs)}: too few lines to hold out {val_fraction:.0%} for "
                "validation (give more text, --val FILE or --val-fraction 0)"
            )
        split = {"train": [train_name, 0, cut + 1], "val": [train_name, cut, train_count]}
        del stream
    else:
        split = {"train": [train_name, 0, train_count], "val": None}
    if split["val"] is not None and split["val"][2] - split["val"][1] < 2:
        raise InputError(f"{val or 'the held-out part'}: the validation text has no line")
    # The vocabulary counts the training part only.
    train = open_tokens(data_dir / train_name, np.uint32, split["train"][1], split["train"][2])
    type_counts = np.bincount(train, minlength=len(types))
    words = list(types)
    vocab = Vocabulary.from_counts(
        {w: int(c) for w, c in zip(words[1:], type_counts[1:].tolist(), strict=True) if c > 0},
        min_count=min_count,
        max_vocab=max_vocab,
    )
    if len(vocab) == 0:
        raise InputError(f"{describe_inputs(inputs)}: no word is seen --min-count {min_count} times")
    type_out = np.full(len(types), UNK_ID, dtype=np.int64)
    type_out[0] = BOUNDARY_ID
    for rank, word in enumerate(vocab.words):
        type_out[types[word]] = rank + 2
    unknown = int(type_counts[1:][type_out[1:] == UNK_ID].sum())
    out_vocab = Vocabulary(
        [UNK, BOUNDARY, *vocab.words], [unknown, int(type_counts[0]), *vocab.counts.tolist()]
    )
    np.save(data_dir / TYPE_OUT, type_out)
    np.save(data_dir / TYPE_CHARS, encode_words(words, max_chars).astype(np.int16))
    meta = {
        "dtype": "uint32",
        "vocab_size": len(out_vocab),
        "level": "word",
        "split": split,
        "types": len(types),
        "max_chars": max_chars,
        "min_count": min_count,
        "max_vocab": max_vocab,
        "source": describe_inputs(inputs),
        "val_source": str(val) if val is not None else None,
        "val_fraction": val_fraction if val is None else None,
        "train_tokens": int(len(train) - 1),
        "train_unknown": unknown,
    }
    (data_dir / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    data = load_elmo_data(out_dir)
    data.codec = ElmoVocabFile(out_vocab)
    return data


def load_elmo_data(out_dir: str | Path) -> ElmoData:
    """Re-open the spooled streams and type tables of ``out_dir/data`` (used by --resume)."""
    from dlnlp.training.data import load_lm_data

    lm = load_lm_data(out_dir)  # the stream files and their split, checked
    data_dir = Path(out_dir) / DATA_DIR
    try:
        type_out = np.load(data_dir / TYPE_OUT)
        type_chars = np.load(data_dir / TYPE_CHARS)
    except (OSError, ValueError) as exc:
        raise InputError(f"{data_dir}: the word-type tables are missing or damaged ({exc})") from None
    if type_out.ndim != 1 or type_chars.ndim != 2 or len(type_out) != len(type_chars):
        raise InputError(f"{data_dir}: the word-type tables do not match")
    return ElmoData(lm.train, lm.val, lm.vocab_size, type_out.astype(np.int64), type_chars, lm.meta)


class ElmoStreams:
    """Forward and backward BPTT streams over a type stream (the trainer's batch-source protocol).

    A batch is a dict: ``chars [U, C]`` the character ids of the distinct words of the step,
    ``input_ids``/``bwd_ids [B, T]`` indices into them of the forward and backward windows (both in
    text order), ``targets`` the next word of each forward position, ``bwd_targets`` the previous
    word of each backward position (output-vocabulary ids).
    """

    stateful = True

    def __init__(
        self,
        tokens: np.ndarray,
        type_out: np.ndarray,
        type_chars: np.ndarray,
        batch_size: int,
        seq_len: int,
        *,
        clamp: bool = False,
    ):
        # the backward direction reads the stream reversed: a copy in memory (a token stream on disk is
        # read forward only)
        reverse = (tokens.read() if hasattr(tokens, "read") else np.asarray(tokens))[::-1]
        self.forward = StreamBatches(tokens, batch_size, seq_len, clamp=clamp)
        self.backward = StreamBatches(np.ascontiguousarray(reverse), batch_size, seq_len, clamp=clamp)
        self.type_out = torch.from_numpy(np.asarray(type_out, dtype=np.int64))
        self.type_chars = np.asarray(type_chars)
        self.batch_size = self.forward.batch_size
        self.seq_len = seq_len
        self.batches_per_epoch = self.forward.batches_per_epoch

    def _batch(
        self, fwd: tuple[torch.Tensor, torch.Tensor], bwd: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        fx, fy = fwd
        bx, by = (t.flip(1) for t in bwd)  # the reversed stream's window, back in text order
        uniq, inverse = torch.unique(torch.cat([fx.reshape(-1), bx.reshape(-1)]), return_inverse=True)
        chars = self.type_chars[uniq.numpy()]
        width = int((chars != 0).sum(1).max())
        n = fx.numel()
        return {
            "input_ids": inverse[:n].view_as(fx),
            "targets": self.type_out[fy],
            "chars": torch.from_numpy(chars[:, :width].astype(np.int64)),
            "bwd_ids": inverse[n:].view_as(bx),
            "bwd_targets": self.type_out[by],
        }

    def next_batch(self) -> tuple[dict[str, torch.Tensor], bool]:
        fwd, reset = self.forward.next_batch()
        bwd, _ = self.backward.next_batch()
        return self._batch(fwd, bwd), reset

    def iter_eval(self) -> Iterator[tuple[dict[str, torch.Tensor], bool]]:
        for (fwd, reset), (bwd, _) in zip(self.forward.iter_eval(), self.backward.iter_eval(), strict=True):
            yield self._batch(fwd, bwd), reset

    @property
    def epochs_done(self) -> float:
        return self.forward.epochs_done

    @property
    def tokens_per_epoch(self) -> int:
        return self.forward.tokens_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return self.forward.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.forward.load_state_dict(state)
        self.backward.load_state_dict(state)
