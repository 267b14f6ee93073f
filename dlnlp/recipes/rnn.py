"""The recipe behind ``dlnlp rnn train`` / ``dlnlp rnn eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.kernels.device import resolve_device, resolve_precision
from dlnlp.kernels.memory import activation_bytes, check_training, rnn_training_needs, state_factor
from dlnlp.models.registry import load_model
from dlnlp.models.rnn_lm import KIND, RNNLMConfig, build_model
from dlnlp.recipes.lm import (
    LMRecipe,
    bits_per_char,
    parameter_count,
    read_eval_text,
    resume_lm_training,
    start_lm_training,
)
from dlnlp.tokenization.text_codec import CharCodec
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, StreamBatches
from dlnlp.training.trainer import evaluate_loss


def start_rnn_training(
    inputs: Sequence[str] | None, out: str | Path, model_config: RNNLMConfig, train_config: TrainConfig, *,
    seq_len: int = 128, batch_size: int = 32, tokenizer: str | None = None, ids: bool = False,
    vocab_size: int | None = None, val: str | Path | None = None, val_fraction: float = 0.1,
    options: CorpusOptions | None = None, force: bool = False, eos_id: int | None = None, keep_data: bool = False,
    init_from: str | Path | None = None, given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Spool the corpus into ``out/data``, write ``config.json`` and the vocabulary, then train.

    ``ids`` with a ``tokenizer`` reads that tokenizer's ids and records it; each line of ids ends with
    ``eos_id`` (default: the tokenizer's end-of-text). ``init_from`` fine-tunes an RNN model directory
    (its weights, shape and vocabulary; see :func:`~dlnlp.recipes.lm.start_lm_training`)."""
    return start_lm_training(RNN_RECIPE, inputs, out, model_config, train_config,
                             {"seq_len": seq_len, "batch_size": batch_size}, tokenizer=tokenizer, ids=ids,
                             vocab_size=vocab_size, val=val, val_fraction=val_fraction, options=options, force=force,
                             eos_id=eos_id, keep_data=keep_data, init_from=init_from, given=given)


def resume_rnn_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False, keep_data: bool = False, given: dict[str, Any] | None = None,
                        inputs: Sequence[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override;
    ``given`` options and a corpus given again (``inputs``) must be the run's (``--resume`` refuses a change)."""
    return resume_lm_training(RNN_RECIPE, out, stops, quiet=quiet, device=device, compile=compile, given=given,
                              inputs=inputs, keep_data=keep_data)


# The model options of `rnn train`, named as RNNLMConfig's fields.
_MODEL_OPTIONS = ("cell", "embed", "hidden", "layers", "dropout", "embed_dropout", "tie_weights", "forget_bias",
                  "context", "direct", "vocab_size")


def _resume_view(config: dict[str, Any]) -> dict[str, Any]:
    """The model options of an RNN run (config.json), by CLI parameter name, for --resume and --init-from."""
    model = config.get("model", {})
    char = config.get("level") == CharCodec.level
    return {**{name: model.get(name) for name in _MODEL_OPTIONS}, "seq_len": config.get("seq_len"),
            "tokenizer": lambda given: (given == "char") == char}  # --tokenizer char or a file: the text level


def check_rnn_memory(config: RNNLMConfig, train_config: TrainConfig, batch_size: int | None = None,
                     seq_len: int | None = None, train_tokens: int | None = None) -> None:
    """Fail before allocating when training ``config`` clearly needs more memory than the device has.

    With the batch shape and ``train_tokens`` a window's activations count too (``batch_size``
    streams of ``(train_tokens - 1) // batch_size`` tokens, read ``seq_len`` at a time, as
    :class:`StreamBatches` cuts them).
    """
    device = resolve_device(train_config.device)
    batch = seq = None
    if batch_size and seq_len and train_tokens:
        batch = batch_size
        seq = max(1, min(seq_len, (train_tokens - 1) // batch_size))
    ema = bool(train_config.ema_decay)
    needs = rnn_training_needs(config.vocab_size, config.embed, config.hidden, config.layers, config.cell,
                               tied=config.tie_weights, context=config.context, direct=config.direct,
                               batch=batch, seq=seq, optimizer=train_config.optimizer,
                               momentum=train_config.momentum, ema=ema,
                               act_bytes=activation_bytes(device, train_config.precision))
    check_training(needs, device, task="rnn training",
                   copies=state_factor(train_config.optimizer, momentum=train_config.momentum, ema=ema))


def _streams(tokens: Any, config: RNNLMConfig, shape: dict[str, int], seed: int, validation: bool) -> StreamBatches:
    return StreamBatches(tokens, shape["batch_size"], shape["seq_len"], clamp=validation)


def _describe(model: Any, data: LMData, train: StreamBatches) -> str:
    return (f"{model.config.cell} language model, {parameter_count(model):,} parameters, vocabulary "
            f"{data.vocab_size}; {len(data.train):,} training tokens ({train.batches_per_epoch} windows of "
            f"{train.batch_size}x{train.seq_len} per epoch), {len(data.val) if data.val is not None else 0:,} "
            f"validation tokens")


def _check_memory(config: RNNLMConfig, train_config: TrainConfig, shape: dict[str, int] | None,
                  train_tokens: int | None) -> None:
    if shape is None:
        check_rnn_memory(config, train_config)
    else:
        check_rnn_memory(config, train_config, shape["batch_size"], shape["seq_len"], train_tokens)


def evaluate_model_dir(model_dir: str | Path, inputs: Sequence[str] | None, *, batch_size: int = 32,
                       device: str = "auto", precision: str = "fp32",
                       options: CorpusOptions | None = None) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per character of a saved model over a whole text.

    The text is cut into ``batch_size`` parallel streams read with carried state (as in training);
    every token but the first of each stream (and the < ``batch_size`` left over at the end) is
    predicted. Bits per character: total nats over the text's characters, ``loss * tokens /
    (characters * ln 2)``; for a character model that is ``loss / ln 2``.
    """
    if batch_size < 1:
        raise DlnlpError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    loaded = load_model(model_dir, dev, kind=KIND)
    text = read_eval_text(inputs, loaded.codec, options)
    ids = text.ids
    streams = StreamBatches(ids, batch_size, loaded.config["seq_len"], clamp=True)
    result = evaluate_loss(loaded.model, streams, dev, dtype)
    loss = result["val_loss"]
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)),
            "bits_per_char": bits_per_char(loss, len(ids), text),
            "tokens": int(result["val_tokens"]), "tokens_in_text": int(len(ids)), "characters": text.characters,
            "unknown_characters": text.unknown, "streams": streams.batch_size}


RNN_RECIPE = LMRecipe(
    kind=KIND, format_version=1, config_class=RNNLMConfig, build=build_model, shape=("seq_len", "batch_size"),
    batches=_streams, check_memory=_check_memory, describe=_describe, resume_view=_resume_view,
)
