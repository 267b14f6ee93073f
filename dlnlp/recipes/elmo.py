"""The recipes behind ``dlnlp elmo``: train (and resume) a biLM, evaluate it, write its contextual vectors,
find a word's nearest neighbours in context.

Training goes through :mod:`dlnlp.recipes.lm`'s run flow (the locked staging directory, config.json,
the summary) with ELMo's word-type spool (:mod:`dlnlp.training.elmo_data`) in place of a token
stream, on the shared trainer: each direction's LSTM state carries from window to window across
lines, the forward one left to right, the backward one right to left.

Evaluation scores the text the way ``dlnlp ngram eval`` does, so the perplexities compare one to one:
each line is its words and ``</s>``, out-of-vocabulary words are scored as ``<unk>``; the forward
LM predicts each word and ``</s>``, the backward LM each word and the boundary before the line.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import DlnlpError, InputError, OptionError, checked
from dlnlp.io.corpus import CorpusOptions, iter_lines
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.kernels.memory import FLOAT, Need, check_training, state_factor
from dlnlp.models.elmo import (
    BOUNDARY,
    BOUNDARY_ID,
    KIND,
    UNK_ID,
    BiLM,
    ElmoConfig,
    ElmoEncoder,
    build_model,
    encode_words,
    split_words,
)
from dlnlp.models.registry import load_model
from dlnlp.progress import log
from dlnlp.recipes.lm import new_lm_run, parameter_count, resumed_lm_run, run_summary
from dlnlp.training.config import TrainConfig
from dlnlp.training.elmo_data import ElmoData, ElmoStreams, load_elmo_data, prepare_elmo_data
from dlnlp.training.trainer import Trainer

LAYER_CHOICES = ("all", "top", "mean", "mix")


# -- training -------------------------------------------------------------------------------------------


def start_elmo_training(
    inputs: Sequence[str] | None,
    out: str | Path,
    model_config: ElmoConfig,
    train_config: TrainConfig,
    *,
    seq_len: int = 20,
    batch_size: int = 64,
    min_count: int = 3,
    max_vocab: int | None = None,
    val: str | Path | None = None,
    val_fraction: float = 0.1,
    options: CorpusOptions | None = None,
    force: bool = False,
    keep_data: bool = False,
) -> dict[str, Any]:
    """Spool the corpus into ``out/data``, write config.json and ``vocab.txt``, train; returns the summary."""
    checked(train_config)
    for name, value in (("--seq-len", seq_len), ("--batch-size", batch_size)):
        if value < 1:
            raise OptionError(f"{name} must be >= 1, got {value}")
    model_config.vocab_size = max(model_config.vocab_size, 3)
    model_config.cutoffs = None if model_config.cutoffs is None else list(model_config.cutoffs)
    cutoffs = model_config.cutoffs
    model_config.cutoffs = None  # checked against the vocabulary once it is known
    checked(model_config)
    model_config.cutoffs = cutoffs
    check_elmo_memory(model_config, train_config)

    def make_run_config(run: Any) -> dict[str, Any]:
        from dlnlp.io.modeldir import make_config

        model_config.vocab_size = run.data.vocab_size
        checked(model_config)
        check_elmo_memory(model_config, train_config, batch_size, seq_len)
        return make_config(
            KIND,
            1,
            model=model_config.to_dict(),
            level="word",
            eos_id=BOUNDARY_ID,
            seq_len=seq_len,
            batch_size=batch_size,
            train=train_config.to_dict(),
            data=run.data.meta,
        )

    prepare = functools.partial(
        prepare_elmo_data, min_count=min_count, max_vocab=max_vocab, max_chars=model_config.max_chars
    )
    with new_lm_run(
        inputs,
        out,
        make_run_config,
        val=val,
        val_fraction=val_fraction,
        options=options,
        force=force,
        prepare=prepare,
        keep_data=keep_data,
    ) as run:
        seed_everything(train_config.seed)
        return _fit(model_config, train_config, run.data, run.output, seq_len, batch_size, resume=False)


def resume_elmo_training(
    out: str | Path,
    stops: dict[str, Any],
    *,
    quiet: bool = False,
    device: str = "auto",
    compile: bool = False,
    keep_data: bool = False,
) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override.
    A run that removed its spooled corpus spools it again with the vocabulary settings it started with."""
    from dlnlp.io.modeldir import read_config

    saved = read_config(out, KIND)
    prepare = functools.partial(
        prepare_elmo_data,
        min_count=int(saved["data"]["min_count"]),
        max_vocab=saved["data"]["max_vocab"],
        max_chars=int(saved["model"]["max_chars"]),
    )
    with resumed_lm_run(
        out, KIND, stops, quiet=quiet, device=device, compile=compile, load_data=load_elmo_data, prepare=prepare,
        keep_data=keep_data,
    ) as (output, config, train_config, data):
        model_config = ElmoConfig.from_dict(config["model"])
        seq_len, batch_size = int(config["seq_len"]), int(config["batch_size"])
        check_elmo_memory(model_config, train_config, batch_size, seq_len)
        return _fit(model_config, train_config, data, output, seq_len, batch_size, resume=True)


def check_elmo_memory(
    config: ElmoConfig, train_config: TrainConfig, batch_size: int | None = None, seq_len: int | None = None
) -> None:
    """Fail before allocating when training ``config`` clearly needs more memory than the device has."""
    device = resolve_device(train_config.device)
    ema = bool(train_config.ema_decay)
    copies = state_factor(train_config.optimizer, momentum=train_config.momentum, ema=ema)
    filters = sum(n for _, n in config.filters)
    lstm = 2 * config.layers * 4 * config.hidden * (2 * config.dim + 2) + (
        2 * config.layers * config.hidden * config.dim if config.dim < config.hidden else 0
    )
    encoder = (
        260 * config.char_dim
        + sum(w * n for w, n in config.filters) * config.char_dim
        + 2 * config.highway * filters * (filters + 1)
        + filters * config.dim
    )
    params = lstm + encoder + config.vocab_size * (config.dim + 1)
    needs = [
        Need(
            "parameters, gradients and optimizer state",
            params * FLOAT * copies,
            "--hidden, --dim, --filters or the vocabulary (--min-count, --max-vocab)",
        )
    ]
    if batch_size and seq_len:
        tokens = batch_size * seq_len
        per_token = 2 * config.layers * (6 * config.hidden + 2 * config.dim) + 4 * config.dim
        if config.softmax == "full":
            per_token += 2 * 3 * config.vocab_size
        needs.append(
            Need(
                "activations of a batch",
                tokens * per_token * FLOAT + 2 * tokens * config.max_chars * filters * FLOAT,
                "--batch-size or --seq-len",
            )
        )
    check_training(needs, device, task="elmo training", copies=copies)


def elmo_streams(
    data: ElmoData, tokens: np.ndarray, batch_size: int, seq_len: int, validation: bool
) -> ElmoStreams:
    return ElmoStreams(tokens, data.type_out, data.type_chars, batch_size, seq_len, clamp=validation)


def _fit(
    model_config: ElmoConfig,
    train_config: TrainConfig,
    data: ElmoData,
    output: Any,
    seq_len: int,
    batch_size: int,
    *,
    resume: bool,
) -> dict[str, Any]:
    train = elmo_streams(data, data.train, batch_size, seq_len, False)
    val = elmo_streams(data, data.val, batch_size, seq_len, True) if data.val is not None else None
    model = build_model(model_config)
    if not resume:
        c = model_config
        proj = f" projected to {c.dim}" if c.dim < c.hidden else ""
        log(
            f"ELMo biLM: char-CNN ({sum(n for _, n in c.filters)} filters, {c.highway} highway) -> {c.dim}, "
            f"{c.layers} x LSTM {c.hidden}{proj} per direction, {c.softmax} softmax over {c.vocab_size:,} words; "
            f"{parameter_count(model):,} parameters; {len(data.train):,} training tokens ({train.batches_per_epoch} "
            f"windows of {train.batch_size}x{seq_len} per epoch), "
            f"{len(data.val) if data.val is not None else 0:,} validation tokens",
            quiet=train_config.quiet,
        )
    result = Trainer(
        model, train_config, train, val, out_dir=output.path, resume=resume, on_save=output.commit
    ).fit()
    summary = run_summary(result, output.target, parameter_count(model), train_config.quiet)
    summary["loss"] = "mean of the forward and backward NLL per token (val_perplexity: their geometric mean)"
    return summary


# -- evaluation -------------------------------------------------------------------------------------------


def load_elmo(model_dir: str | Path, device: str = "auto") -> BiLM:
    """The biLM of an ``elmo`` model directory, in eval mode (``model.words``: its output vocabulary)."""
    return load_model(model_dir, resolve_device(device), kind=KIND).model


@dataclass
class _Types:
    """Word types of a text being evaluated: their character ids once each, their output ids."""

    words: dict[str, int]
    out: list[int]

    @classmethod
    def new(cls) -> _Types:
        return cls({BOUNDARY: 0}, [BOUNDARY_ID])


def _chunks(tokens: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, end) pieces of a ``</s>``-delimited stream, cut at ``</s>``
    (each piece starts and ends with one; neighbours share it)."""
    ends = np.flatnonzero(tokens == 0)
    parts = max(1, min(parts, len(ends) - 1))
    cuts = [0]
    for i in range(1, parts):
        want = len(tokens) * i / parts
        cut = int(ends[np.abs(ends - want).argmin()])
        if cut > cuts[-1]:
            cuts.append(cut)
    if cuts[-1] != len(tokens) - 1:
        cuts.append(len(tokens) - 1)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


@torch.no_grad()
def score_stream(
    model: BiLM,
    tokens: np.ndarray,
    type_out: np.ndarray,
    type_chars: np.ndarray,
    *,
    batch_size: int = 32,
    seq_len: int = 64,
) -> dict[str, float]:
    """Total NLL (nats) and tokens scored of each direction over a type stream ``</s> .. </s>``.

    The stream is cut at line ends into up to ``batch_size`` pieces read in parallel, each from a zero
    state; the forward LM reads a piece left to right in windows of ``seq_len`` (state carried) and
    predicts all of it but its first ``</s>``; the backward LM reads it right to left and predicts all
    of it but its last ``</s>``. Every word and every line's ``</s>`` is thus scored once per direction.
    """
    device = next(model.parameters()).device
    pieces = _chunks(tokens, batch_size)
    width = max(end - start for start, end in pieces)
    out = torch.from_numpy(np.asarray(type_out, dtype=np.int64))
    # forward: inputs tokens[s..e-1], targets tokens[s+1..e], right-padded
    # backward (text order): inputs tokens[s+1..e], targets tokens[s..e-1], left-padded (read last)
    shape = (len(pieces), width)
    f_in, b_in = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    f_tg, b_tg = np.full(shape, -100, np.int64), np.full(shape, -100, np.int64)
    for row, (s, e) in enumerate(pieces):
        n = e - s
        f_in[row, :n], f_tg[row, :n] = tokens[s:e], out[tokens[s + 1 : e + 1]].numpy()
        b_in[row, width - n :], b_tg[row, width - n :] = tokens[s + 1 : e + 1], out[tokens[s:e]].numpy()
    totals = {}
    for backward, inputs, targets in ((False, f_in, f_tg), (True, b_in, b_tg)):
        state, nll, count = None, 0.0, 0
        starts = range(0, width, seq_len)
        windows = [(i, min(i + seq_len, width)) for i in starts]
        for lo, hi in reversed(windows) if backward else windows:
            ids = inputs[:, lo:hi]
            uniq, inverse = np.unique(ids, return_inverse=True)
            chars = type_chars[uniq]
            chars = chars[:, : int((chars != 0).sum(1).max())]
            vectors = model.token_encoder(torch.from_numpy(chars.astype(np.int64)).to(device))
            x = vectors[torch.from_numpy(inverse.reshape(ids.shape)).to(device)]
            target = torch.from_numpy(targets[:, lo:hi]).to(device)
            values, state = model.direction_nll(backward, x, target, state)
            nll += float(values.double().sum())
            count += int((target >= 0).sum())
        totals["backward" if backward else "forward"] = (nll, count)
    return totals


def text_types(
    lines: Iterable[str], max_chars: int, words: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(type stream ``</s> w .. </s> ..``, output id of each type, character ids of each type, lines, unknown
    words) of ``lines`` scored against the output vocabulary ``words`` (word -> id)."""
    types: dict[str, int] = {BOUNDARY: 0}
    stream = [0]
    lines_read = 0
    for line in lines:
        stream.extend(types.setdefault(w, len(types)) for w in split_words(line))
        stream.append(0)
        lines_read += 1
    names = list(types)
    type_out = np.array([BOUNDARY_ID] + [words.get(w, UNK_ID) for w in names[1:]], dtype=np.int64)
    tokens = np.asarray(stream, dtype=np.int64)
    unknown = int((type_out[tokens] == UNK_ID).sum())
    return tokens, type_out, encode_words(names, max_chars), lines_read, unknown


def evaluate_elmo_dir(
    model_dir: str | Path,
    inputs: Sequence[str] | None,
    *,
    batch_size: int = 32,
    seq_len: int = 64,
    device: str = "auto",
    options: CorpusOptions | None = None,
) -> dict[str, Any]:
    """Forward, backward and mean perplexity of a biLM over a whole text, counted as ``dlnlp ngram eval``
    counts (every word and ``</s>``, out-of-vocabulary words as ``<unk>``)."""
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    if seq_len < 1:
        raise OptionError(f"--seq-len must be >= 1, got {seq_len}")
    model = load_elmo(model_dir, device)
    vocab = {w: i for i, w in enumerate(model.words)}
    tokens, type_out, type_chars, sentences, unknown = text_types(
        iter_lines(inputs, options), model.config.max_chars, vocab
    )
    if sentences == 0:
        raise InputError("the evaluation text is empty")
    totals = score_stream(model, tokens, type_out, type_chars, batch_size=batch_size, seq_len=seq_len)
    (f_nll, f_n), (b_nll, b_n) = totals["forward"], totals["backward"]
    return {
        "sentences": sentences,
        "tokens": f_n,
        "oov": unknown,
        "forward_perplexity": math.exp(f_nll / f_n),
        "backward_perplexity": math.exp(b_nll / b_n),
        "perplexity": math.exp((f_nll + b_nll) / (f_n + b_n)),
        "forward_loss": f_nll / f_n,
        "backward_loss": b_nll / b_n,
    }


# -- contextual vectors -----------------------------------------------------------------------------------


def check_layers(layers: str, num_hidden: int, mix_weights: Sequence[float] | None) -> np.ndarray | None:
    """The normalized mix weights for ``--layers mix`` (equal without ``mix_weights``), else None."""
    if layers not in LAYER_CHOICES:
        from dlnlp.errors import UsageError

        raise UsageError(f"--layers must be one of {', '.join(LAYER_CHOICES)}, got {layers!r}")
    if mix_weights is not None and layers != "mix":
        raise OptionError("--mix-weights applies to --layers mix only")
    if layers != "mix":
        return None
    if mix_weights is None:
        return np.full(num_hidden, 1.0 / num_hidden)
    weights = np.asarray(mix_weights, dtype=np.float64)
    if (
        len(weights) != num_hidden
        or not np.all(np.isfinite(weights))
        or (weights < 0).any()
        or weights.sum() <= 0
    ):
        raise OptionError(
            f"--mix-weights needs {num_hidden} non-negative numbers (layer 0 = the token encoder, "
            f"then the {num_hidden - 1} LSTM layers), got {list(mix_weights)}"
        )
    return weights / weights.sum()


def embed_shape(layers: str, num_hidden: int, dim: int) -> tuple[int, ...]:
    """The shape of one token's output: ``(num_hidden, dim)`` for ``all``, else ``(dim,)``."""
    return (num_hidden, dim) if layers == "all" else (dim,)


@torch.no_grad()
def embed_sentences(
    encoder: ElmoEncoder,
    sentences: Sequence[Sequence[str]],
    layers: str = "all",
    mix: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Per sentence, its words' vectors: ``[words, num_hidden, 2 dim]`` (``all``) or ``[words, 2 dim]``
    (``top``; ``mean`` of the hidden states; ``mix``: their weighted sum by ``mix``)."""
    chars, mask = encoder.batch(sentences)
    out = encoder(chars, mask, "all")
    stacked = torch.stack(out.hidden_states, 2).float()  # [B, T, L+1, D]
    if layers == "top":
        stacked = stacked[:, :, -1]
    elif layers == "mean":
        stacked = stacked.mean(2)
    elif layers == "mix":
        w = torch.as_tensor(mix, dtype=stacked.dtype, device=stacked.device)
        stacked = (stacked * w.view(1, 1, -1, 1)).sum(2)
    array = stacked.cpu().numpy()
    return [array[i, : len(words)] for i, words in enumerate(sentences)]


def embed_lines(
    encoder: ElmoEncoder,
    lines: Iterable[str],
    *,
    layers: str = "all",
    mix: np.ndarray | None = None,
    batch_size: int = 32,
) -> Iterator[tuple[list[list[str]], list[np.ndarray]]]:
    """Batches of ``(words of each line, their vectors)`` in input order, ``batch_size`` lines at a time."""
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    batch: list[list[str]] = []
    for line in lines:
        batch.append(split_words(line))
        if len(batch) == batch_size:
            yield batch, embed_sentences(encoder, batch, layers, mix)
            batch = []
    if batch:
        yield batch, embed_sentences(encoder, batch, layers, mix)


def load_encoder(model_dir: str | Path, device: str = "auto") -> ElmoEncoder:
    """An :class:`~dlnlp.models.elmo.ElmoEncoder` of a model directory (eval mode)."""
    return ElmoEncoder(load_elmo(model_dir, device)).eval()


# -- nearest neighbours in context ----------------------------------------------------------------------


@dataclass
class Neighbor:
    score: float
    word: str
    line: int  # 1-based
    position: int  # 0-based word index in the line
    words: list[str]


def neighbors(
    encoder: ElmoEncoder,
    sentence: str,
    word: str,
    corpus: Iterable[str],
    *,
    top: int = 10,
    layer: int = -1,
    batch_size: int = 32,
    same_word: bool = False,
) -> tuple[int, list[Neighbor]]:
    """The ``top`` corpus tokens whose vectors (hidden state ``layer``) are closest by cosine to ``word``'s in
    ``sentence``; with ``same_word`` only occurrences of the same word (its senses in context).

    Returns (the word's index in the sentence, neighbours best first).
    """
    if top < 1:
        raise OptionError(f"--top must be >= 1, got {top}")
    if not -encoder.num_hidden <= layer < encoder.num_hidden:
        raise OptionError(
            f"--layer must be between {-encoder.num_hidden} and {encoder.num_hidden - 1}, got {layer}"
        )
    words = split_words(sentence)
    if word not in words:
        raise OptionError(f"--word {word!r} is not a word of --sentence (words are separated by spaces)")
    index = words.index(word)
    query = embed_sentences(encoder, [words], "all")[0][index, layer]
    query = query / max(np.linalg.norm(query), 1e-12)
    heap: list[tuple[float, int, int, Neighbor]] = []
    counter = 0
    for number, (batch, vectors) in enumerate(embed_lines(encoder, corpus, batch_size=batch_size)):
        for i, (line_words, array) in enumerate(zip(batch, vectors, strict=True)):
            if not line_words:
                continue
            v = array[:, layer]
            scores = v @ query / np.maximum(np.linalg.norm(v, axis=1), 1e-12)
            for pos in np.argsort(-scores)[:top] if not same_word else range(len(line_words)):
                if same_word and line_words[pos] != word:
                    continue
                item = Neighbor(
                    float(scores[pos]), line_words[pos], number * batch_size + i + 1, int(pos), line_words
                )
                counter += 1
                entry = (item.score, -counter, counter, item)
                if len(heap) < top:
                    heapq.heappush(heap, entry)
                elif entry > heap[0]:
                    heapq.heapreplace(heap, entry)
    if not heap:
        raise DlnlpError("the corpus has no " + (f"occurrence of {word!r}" if same_word else "word"))
    return index, [entry[3] for entry in sorted(heap, reverse=True)]
