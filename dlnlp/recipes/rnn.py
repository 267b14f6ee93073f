"""The recipe behind ``dlnlp rnn train`` / ``dlnlp rnn eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.modeldir import RunOutput, make_config
from dlnlp.kernels.device import resolve_device, resolve_precision, seed_everything
from dlnlp.kernels.memory import activation_bytes, check_training, rnn_training_needs, state_factor
from dlnlp.models.registry import load_model
from dlnlp.models.rnn_lm import KIND, RNNLMConfig, build_model
from dlnlp.progress import log
from dlnlp.recipes.lm import (
    LMRun,
    bits_per_char,
    checked,
    new_lm_run,
    read_eval_text,
    resumed_lm_run,
    run_summary,
)
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, StreamBatches
from dlnlp.training.trainer import Trainer, evaluate_loss


def start_rnn_training(
    inputs: Sequence[str] | None, out: str | Path, model_config: RNNLMConfig, train_config: TrainConfig, *,
    seq_len: int = 128, batch_size: int = 32, tokenizer: str | None = "char", ids: bool = False,
    vocab_size: int | None = None, val: str | Path | None = None, val_fraction: float = 0.1,
    options: CorpusOptions | None = None, force: bool = False,
) -> dict[str, Any]:
    """Spool the corpus into ``out/data``, write ``config.json`` and the vocabulary, then train."""
    checked(model_config)
    checked(train_config)
    if seq_len < 1 or batch_size < 1:
        raise DlnlpError("--seq-len and --batch-size must be >= 1")
    # Before reading the corpus: the parameters alone (the vocabulary is not known yet).
    model_config.vocab_size = vocab_size or 1
    check_rnn_memory(model_config, train_config)

    def make_run_config(run: LMRun) -> dict[str, Any]:
        model_config.vocab_size = run.data.vocab_size
        checked(model_config)
        check_rnn_memory(model_config, train_config, batch_size, seq_len, len(run.data.train))
        return make_config(KIND, model=model_config.to_dict(), level=run.level, seq_len=seq_len,
                           batch_size=batch_size, train=train_config.to_dict(), data=run.data.meta)

    with new_lm_run(inputs, out, make_run_config, tokenizer=tokenizer, ids=ids, vocab_size=vocab_size,
                    val=val, val_fraction=val_fraction, options=options, force=force) as run:
        seed_everything(train_config.seed)
        model = build_model(model_config)
        return _train(model, train_config, run.data, run.output, seq_len, batch_size, resume=False)


def resume_rnn_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override."""
    with resumed_lm_run(out, KIND, stops, quiet=quiet, device=device, compile=compile) as (
            output, config, train_config, data):
        model_config = RNNLMConfig.from_dict(config["model"])
        check_rnn_memory(model_config, train_config, config["batch_size"], config["seq_len"], len(data.train))
        model = build_model(model_config)
        return _train(model, train_config, data, output, config["seq_len"], config["batch_size"], resume=True)


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


def _train(model: Any, train_config: TrainConfig, data: LMData, output: RunOutput, seq_len: int, batch_size: int,
           *, resume: bool) -> dict[str, Any]:
    train = StreamBatches(data.train, batch_size, seq_len)
    val = StreamBatches(data.val, batch_size, seq_len, clamp=True) if data.val is not None else None
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    if not resume:
        cfg = model.config
        log(f"{cfg.cell} language model, {params:,} parameters, vocabulary {data.vocab_size}; "
            f"{len(data.train):,} training tokens ({train.batches_per_epoch} windows of {batch_size}x{seq_len} "
            f"per epoch), {len(data.val) if data.val is not None else 0:,} validation tokens",
            quiet=train_config.quiet)
    result = Trainer(model, train_config, train, val, out_dir=output.path, resume=resume,
                     on_save=output.commit).fit()
    return run_summary(result, output.target, params, train_config.quiet)


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
