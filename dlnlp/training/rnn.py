"""The recipe behind ``dlnlp rnn train`` / ``dlnlp rnn eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import DlnlpError, InputError
from dlnlp.io.corpus import CorpusOptions, iter_lines
from dlnlp.io.modeldir import make_config, prepare_model_dir, read_config, write_config
from dlnlp.kernels.device import resolve_device, resolve_precision, seed_everything
from dlnlp.models.rnn_lm import MODEL_KIND, RNNLMConfig, build_model, load_model_dir
from dlnlp.progress import log
from dlnlp.training.checkpoint import read_checkpoint_meta
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, StreamBatches, encode_text_ids, load_lm_data, prepare_lm_data
from dlnlp.training.trainer import Trainer, evaluate_loss


def _checked(config: Any) -> None:
    try:
        config.validate()
    except ValueError as exc:
        raise DlnlpError(str(exc)) from None


def start_rnn_training(
    inputs: Sequence[str] | None, out: str | Path, model_config: RNNLMConfig, train_config: TrainConfig, *,
    seq_len: int = 128, batch_size: int = 32, tokenizer: str | None = "char", ids: bool = False,
    vocab_size: int | None = None, val: str | Path | None = None, val_fraction: float = 0.1,
    options: CorpusOptions | None = None, force: bool = False,
) -> dict[str, Any]:
    """Spool the corpus into ``out/data``, write ``config.json`` and the vocabulary, then train."""
    _checked(model_config)
    _checked(train_config)
    if seq_len < 1 or batch_size < 1:
        raise DlnlpError("--seq-len and --batch-size must be >= 1")
    if val is not None and not Path(val).is_file():
        raise InputError(f"{val}: no such validation file")
    tok = None
    if not ids and tokenizer != "char":
        from dlnlp.tokenization import load_tokenizer

        tok = load_tokenizer(tokenizer)
    directory = prepare_model_dir(out, force=force)
    try:
        level = "ids" if ids else ("char" if tok is None else "tokenizer")
        data = prepare_lm_data(inputs, directory, level=level, tokenizer=tok, val=val, val_fraction=val_fraction,
                               options=options, vocab_size=vocab_size)
        if level == "char":
            data.vocab.save(directory)
        elif level == "tokenizer":
            name = "tokenizer.model" if tok.engine == "sentencepiece" else "tokenizer.json"
            shutil.copyfile(tok.path, directory / name)
        model_config.vocab_size = data.vocab_size
        _checked(model_config)
        config = make_config(MODEL_KIND, model=model_config.to_dict(), level=level, seq_len=seq_len,
                             batch_size=batch_size, train=train_config.to_dict(), data=data.meta)
        write_config(directory, config)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # nothing trained yet: leave no half directory
        raise
    seed_everything(train_config.seed)
    model = build_model(model_config)
    return _train(model, train_config, data, directory, seq_len, batch_size, resume=False)


def resume_rnn_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override."""
    directory = prepare_model_dir(out, resume=True)
    config = read_config(directory, MODEL_KIND)
    meta = read_checkpoint_meta(directory)
    train_config = TrainConfig.from_dict(meta["config"])
    overrides = {k: v for k, v in stops.items() if v is not None}
    train_config = train_config.replace(quiet=quiet, device=device, compile=compile, **overrides)
    _checked(train_config)
    data = load_lm_data(directory)
    model = build_model(RNNLMConfig.from_dict(config["model"]))
    return _train(model, train_config, data, directory, config["seq_len"], config["batch_size"], resume=True)


def _train(model: Any, train_config: TrainConfig, data: LMData, directory: Path, seq_len: int, batch_size: int,
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
    trainer = Trainer(model, train_config, train, val, out_dir=directory, resume=resume)
    result = trainer.fit()
    summary = {
        "out": str(directory), "steps": result.steps, "epochs": round(result.epochs, 4), "tokens": result.tokens,
        "elapsed_s": round(result.elapsed, 2), "stopped_by": result.stopped_by,
        "train_loss": result.last_train_loss, "val_loss": result.final_val_loss,
        "best_val_loss": result.best_val_loss, "parameters": params,
    }
    if result.final_val_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.final_val_loss, 700))
        log(f"stopped by {result.stopped_by} after {result.steps} steps ({result.elapsed:.0f} s): "
            f"validation loss {result.final_val_loss:.4f} (best {result.best_val_loss:.4f}); saved {directory}",
            quiet=train_config.quiet)
    else:
        log(f"stopped by {result.stopped_by} after {result.steps} steps: training loss "
            f"{result.last_train_loss:.4f}; saved {directory}", quiet=train_config.quiet)
    return summary


def evaluate_model_dir(model_dir: str | Path, inputs: Sequence[str] | None, *, batch_size: int = 32,
                       device: str = "auto", precision: str = "fp32",
                       options: CorpusOptions | None = None) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per character of a saved model over a whole text.

    The text is cut into ``batch_size`` parallel streams read with carried state (as in training);
    every token but the first of each stream (and the < ``batch_size`` left over at the end) is
    predicted. Bits per character: total nats over the text's characters, ``loss * tokens /
    (characters * ln 2)``; for a character model that is ``loss / ln 2``.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    model, codec, config = load_model_dir(model_dir, dev)
    level = config["level"]
    characters = None
    unknown = 0
    if level == "ids":
        from dlnlp.tokenization.ids import read_id_lines

        ids = np.asarray([i for line in read_id_lines(inputs, options) for i in line], dtype=np.int64)
        if ids.size and ids.max() >= config["model"]["vocab_size"]:
            raise InputError(f"token id {int(ids.max())} is outside the model's vocabulary")
    else:
        lines = list(iter_lines(inputs, options))
        characters = sum(len(line) + 1 for line in lines)
        ids = encode_text_ids(lines, codec, level)
        if level == "char":
            unknown = codec.unknown_count
            if unknown:
                from dlnlp.progress import warn

                warn(f"{unknown} characters are not in the model's vocabulary; they count as <unk>")
    if len(ids) < 2:
        raise InputError("the text is too short to evaluate (fewer than 2 tokens)")
    streams = StreamBatches(ids, batch_size, config["seq_len"], clamp=True)
    result = evaluate_loss(model, streams, dev, dtype)
    loss = result["val_loss"]
    if level == "char":
        bpc = loss / math.log(2)
    elif characters:
        bpc = loss * len(ids) / (characters * math.log(2))
    else:
        bpc = None
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "bits_per_char": bpc,
            "tokens": int(result["val_tokens"]), "tokens_in_text": int(len(ids)), "characters": characters,
            "unknown_characters": unknown, "streams": streams.batch_size}
