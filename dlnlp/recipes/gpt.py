"""The recipe behind ``dlnlp gpt train`` / ``dlnlp gpt eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import DlnlpError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.modeldir import RunOutput
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.kernels.memory import (
    activation_bytes,
    check_training,
    check_width,
    gpt_training_needs,
    state_factor,
)
from dlnlp.models.gpt import GPT, KIND, GPTConfig, evaluate_windows, gpt_config_dict
from dlnlp.models.registry import load_model
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
from dlnlp.training.data import LMData, RandomWindows
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
    check_width("--dim", model_args["n_embd"])
    if model_args["n_embd"] % model_args["n_head"]:
        raise DlnlpError(f"--dim {model_args['n_embd']} is not divisible by --heads {model_args['n_head']}")
    # Before reading the corpus: the parameters alone (the vocabulary is not known yet).
    check_gpt_memory(GPTConfig(vocab_size=vocab_size or 1, **model_args), train_config)
    model_config: GPTConfig | None = None

    def make_run_config(run: LMRun) -> dict[str, Any]:
        nonlocal model_config
        model_config = GPTConfig(vocab_size=run.data.vocab_size, **model_args)
        longest = len(run.data.train) - 1  # the longest window the training text holds
        if model_config.block_size > longest:
            raise DlnlpError(f"--block-size {model_config.block_size} is longer than the training text "
                             f"({len(run.data.train):,} tokens); use --block-size {max(longest, 1)} or less")
        check_gpt_memory(model_config, train_config, batch_size, len(run.data.train))
        eos = getattr(run.tokenizer, "eos_id", None) if run.tokenizer is not None else None
        return gpt_config_dict(model_config, level=run.level, batch_size=batch_size, eos_id=eos,
                               train=train_config.to_dict(), data=run.data.meta)

    with new_lm_run(inputs, out, make_run_config, tokenizer=tokenizer, ids=ids, vocab_size=vocab_size,
                    val=val, val_fraction=val_fraction, options=options, force=force) as run:
        seed_everything(train_config.seed)
        return _train(GPT(model_config), train_config, run.data, run.output, batch_size, resume=False)


def resume_gpt_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override."""
    with resumed_lm_run(out, KIND, stops, quiet=quiet, device=device, compile=compile) as (
            output, config, train_config, data):
        model_config = GPTConfig.from_dict(config["model"])
        check_gpt_memory(model_config, train_config, config["batch_size"], len(data.train))
        return _train(GPT(model_config), train_config, data, output, config["batch_size"], resume=True)


def check_gpt_memory(config: GPTConfig, train_config: TrainConfig, batch_size: int | None = None,
                     train_tokens: int | None = None) -> None:
    """Fail before allocating when training ``config`` clearly needs more memory than the device has.

    With ``batch_size`` and ``train_tokens`` the activations of a batch count too (windows are at
    most ``train_tokens - 1`` long, as :class:`RandomWindows` cuts them).
    """
    device = resolve_device(train_config.device)
    seq = min(config.block_size, max(1, train_tokens - 1)) if train_tokens else None
    needs = gpt_training_needs(config.vocab_size, config.n_embd, config.n_layer, config.block_size,
                               mlp_dim=config.mlp_dim, tied=config.tie_weights,
                               learned_positions=config.position == "learned", batch=batch_size, seq=seq,
                               optimizer=train_config.optimizer, momentum=train_config.momentum,
                               ema=bool(train_config.ema_decay),
                               act_bytes=activation_bytes(device, train_config.precision))
    check_training(needs, device, task="gpt training", copies=state_factor(
        train_config.optimizer, momentum=train_config.momentum, ema=bool(train_config.ema_decay)))


def _train(model: GPT, train_config: TrainConfig, data: LMData, output: RunOutput, batch_size: int, *,
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
    result = Trainer(model, train_config, train, val, out_dir=output.path, loss_fn=gpt_loss, resume=resume,
                     on_save=output.commit).fit()
    return run_summary(result, output.target, params, train_config.quiet)


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
    loaded = load_model(model_dir, dev, kind=KIND)
    model = loaded.model
    text = read_eval_text(inputs, loaded.codec, options)
    block = block_size or model.config.block_size
    if block > model.config.block_size:
        raise InputError(f"--block-size {block} exceeds the model's block size {model.config.block_size}")
    loss, count = evaluate_windows(model, torch.from_numpy(text.ids), block, batch_size, dev)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "bits_per_char": bits_per_char(loss, count, text),
            "tokens": count, "characters": text.characters, "unknown_characters": text.unknown, "block_size": block}
