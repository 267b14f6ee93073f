"""The recipe behind ``dlnlp gpt train`` / ``dlnlp gpt eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import DlnlpError, ModelDirError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.modeldir import WEIGHTS_NAME
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.models.gpt import GPT, KIND, GPTConfig, evaluate_windows, gpt_config_dict, load_gpt
from dlnlp.progress import log
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, RandomWindows
from dlnlp.training.lm import (
    LMRun,
    bits_per_char,
    checked,
    prepare_lm_run,
    read_eval_text,
    resume_lm_run,
    run_summary,
)
from dlnlp.training.trainer import Trainer


def gpt_loss(model: Any, batch: Any, state: Any) -> tuple[Any, None]:
    """The trainer's loss function for a GPT: batch ``(x, y)`` -> mean next-token cross-entropy."""
    x, y = batch
    return model(x, y)[1], None


def start_gpt_training(
    inputs: Sequence[str] | None, out: str | Path, model_args: dict[str, Any], train_config: TrainConfig, *,
    batch_size: int = 12, tokenizer: str | None = None, ids: bool = False, vocab_size: int | None = None,
    val: str | Path | None = None, val_fraction: float = 0.1, options: CorpusOptions | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Spool the corpus to ``out/data``, write config.json and the vocabulary, train, return a summary.

    ``model_args`` are :class:`~dlnlp.models.gpt.GPTConfig` fields (``vocab_size`` comes from the data);
    ``tokenizer`` None means character level.
    """
    checked(train_config)
    if batch_size < 1:
        raise DlnlpError("--batch-size must be >= 1")
    if model_args["n_embd"] % model_args["n_head"]:
        raise DlnlpError(f"--dim {model_args['n_embd']} is not divisible by --heads {model_args['n_head']}")
    model_config: GPTConfig | None = None

    def make_run_config(run: LMRun) -> dict[str, Any]:
        nonlocal model_config
        model_config = GPTConfig(vocab_size=run.data.vocab_size, **model_args)
        eos = getattr(run.tokenizer, "eos_id", None) if run.tokenizer is not None else None
        return gpt_config_dict(model_config, level=run.level, batch_size=batch_size, eos_id=eos,
                               train=train_config.to_dict(), data=run.data.meta)

    run = prepare_lm_run(inputs, out, make_run_config, tokenizer=tokenizer, ids=ids, vocab_size=vocab_size,
                         val=val, val_fraction=val_fraction, options=options, force=force)
    seed_everything(train_config.seed)
    return _train(GPT(model_config), train_config, run.data, run.directory, batch_size, resume=False)


def resume_gpt_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override."""
    directory, config, train_config, data = resume_lm_run(out, KIND, stops, quiet=quiet, device=device,
                                                          compile=compile)
    model = GPT(GPTConfig.from_dict(config["model"]))
    return _train(model, train_config, data, directory, config["batch_size"], resume=True)


def _train(model: GPT, train_config: TrainConfig, data: LMData, directory: Path, batch_size: int, *,
           resume: bool) -> dict[str, Any]:
    block = model.config.block_size
    train = RandomWindows(data.train, batch_size, block, seed=train_config.seed)
    val = RandomWindows(data.val, batch_size, block, seed=train_config.seed) if data.val is not None else None
    params = model.num_parameters()
    if not resume:
        c = model.config
        log(f"GPT {c.n_layer} layers x {c.n_head} heads x {c.n_embd} dims, block {block}, "
            f"{params:,} parameters, vocabulary {data.vocab_size}; {len(data.train):,} training tokens, "
            f"{len(data.val) if data.val is not None else 0:,} validation tokens", quiet=train_config.quiet)
    result = Trainer(model, train_config, train, val, out_dir=directory, loss_fn=gpt_loss, resume=resume).fit()
    return run_summary(result, directory, params, train_config.quiet)


def load_gpt_dir(model_dir: str | Path, device: Any = "cpu") -> tuple[GPT, Any, dict[str, Any]]:
    """(model, codec, config.json) of a GPT directory; the codec is a CharVocab, a Tokenizer or None (ids)."""
    from dlnlp.models.rnn_lm import load_codec

    if Path(model_dir).is_dir() and (Path(model_dir) / "config.json").is_file() \
            and not (Path(model_dir) / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{model_dir}: no {WEIGHTS_NAME} yet (training saves it at the first validation)")
    model, config = load_gpt(model_dir, device)
    level = config.get("level") or ("tokenizer" if any((Path(model_dir) / n).is_file()
                                                      for n in ("tokenizer.json", "tokenizer.model")) else "ids")
    config["level"] = level
    return model, load_codec(model_dir, level), config


def evaluate_gpt_dir(model_dir: str | Path, inputs: Sequence[str] | None, *, batch_size: int = 32,
                     device: str = "auto", block_size: int | None = None,
                     options: CorpusOptions | None = None) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per character of a GPT over a whole text.

    The text is encoded as in training and read in consecutive windows of ``block_size`` tokens (the
    model's by default), each predicted from its own window only; every token but the first is
    predicted once.
    """
    from dlnlp.errors import InputError

    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if block_size is not None and block_size < 1:
        raise InputError(f"--block-size must be >= 1, got {block_size}")
    dev = resolve_device(device)
    model, codec, config = load_gpt_dir(model_dir, dev)
    level = config["level"]
    text = read_eval_text(inputs, codec, level, model.config.vocab_size, options)
    block = block_size or model.config.block_size
    if block > model.config.block_size:
        raise InputError(f"--block-size {block} exceeds the model's block size {model.config.block_size}")
    loss, count = evaluate_windows(model, torch.from_numpy(text.ids), block, batch_size, dev)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "bits_per_char": bits_per_char(loss, count, text, level),
            "tokens": count, "characters": text.characters, "unknown_characters": text.unknown, "block_size": block}
