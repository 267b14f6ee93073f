"""The recipe behind ``dlnlp gpt train`` / ``dlnlp gpt eval``: data, model directory, trainer, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import DlnlpError, OptionError, UsageError
from dlnlp.io.corpus import CorpusOptions
from dlnlp.kernels.device import resolve_device
from dlnlp.kernels.memory import (
    check_width,
)
from dlnlp.kernels.transformer import ACTIVATIONS
from dlnlp.models.gpt import FORMAT_VERSION, GPT, KIND, GPTConfig, evaluate_windows
from dlnlp.models.registry import load_model
from dlnlp.recipes.lm import (
    LMRecipe,
    bits_per_char,
    check_transformer_memory,
    read_eval_text,
    resume_lm_training,
    start_lm_training,
)
from dlnlp.tokenization.text_codec import CharCodec
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, RandomWindows


def gpt_loss(model: Any, batch: Any, state: Any) -> tuple[Any, None]:
    """The trainer's loss function for a GPT: batch ``(x, y)`` -> mean next-token cross-entropy."""
    x, y = batch
    return model(x, y)[1], None


POSITIONS = ("learned", "sinusoidal")
# The model options' names as the user types them, for the messages of check_gpt_args.
_OPTION_NAMES = {"n_layer": "--layers", "n_head": "--heads", "n_embd": "--dim", "block_size": "--block-size"}


def check_gpt_args(model_args: dict[str, Any]) -> None:
    """Refuse model options out of range before any work, naming each as typed (``--heads must be >= 1, got 0``)."""
    for key, option in _OPTION_NAMES.items():
        if key in model_args and model_args[key] < 1:
            raise OptionError(f"{option} must be >= 1, got {model_args[key]}")
    dropout = model_args.get("dropout", 0.0)
    if not 0 <= dropout < 1:
        raise OptionError(f"--dropout must be in [0, 1), got {dropout}")
    position = model_args.get("position", "learned")
    if position not in POSITIONS:
        raise UsageError(f"--position {position}: expected learned or sinusoidal")
    activation = model_args.get("activation", "gelu")
    if activation not in ACTIVATIONS:
        raise UsageError(f"--activation {activation}: expected one of {', '.join(ACTIVATIONS)}")


def start_gpt_training(
    inputs: Sequence[str] | None, out: str | Path, model_args: dict[str, Any], train_config: TrainConfig, *,
    batch_size: int = 12, tokenizer: str | None = None, char: bool = False, ids: bool = False,
    vocab_size: int | None = None, val: str | Path | None = None, val_fraction: float = 0.1,
    options: CorpusOptions | None = None, force: bool = False, eos_id: int | None = None, keep_data: bool = False,
    init_from: str | Path | None = None, given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Spool the corpus to ``out/data``, write config.json and the vocabulary, train, return a summary.

    ``init_from`` fine-tunes a GPT model directory (a run or ``gpt import``): its weights, shape and
    tokenizer, a new optimizer and schedule; options in ``given`` (typed on the command line) that
    contradict its shape are refused, naming the option.

    ``model_args`` are :class:`~dlnlp.models.gpt.GPTConfig` fields (``vocab_size`` comes from the data).
    The text level is one of ``tokenizer`` (a tokenizer file), ``char`` and ``ids``; with none given it
    is character level. ``ids`` with ``tokenizer`` reads that tokenizer's ids and records it (the model
    reads text); each line of ids ends with ``eos_id`` (default: the tokenizer's end-of-text).
    """
    if char and (tokenizer is not None or ids):
        raise OptionError(f"--char cannot be used with {'--ids' if ids else '--tokenizer'}")
    check_gpt_args(model_args)
    check_width("--dim", model_args["n_embd"])
    if model_args["n_embd"] % model_args["n_head"]:
        raise DlnlpError(f"--dim {model_args['n_embd']} is not divisible by --heads {model_args['n_head']}")
    return start_lm_training(GPT_RECIPE, inputs, out, GPTConfig(vocab_size=vocab_size or 1, **model_args),
                             train_config, {"batch_size": batch_size}, tokenizer=None if char else tokenizer,
                             ids=ids, vocab_size=vocab_size, val=val, val_fraction=val_fraction, options=options,
                             force=force, eos_id=eos_id, keep_data=keep_data, init_from=init_from, given=given)


def resume_gpt_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False, keep_data: bool = False, given: dict[str, Any] | None = None,
                        inputs: Sequence[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override;
    ``given`` options and a corpus given again (``inputs``) must be the run's (``--resume`` refuses a change)."""
    return resume_lm_training(GPT_RECIPE, out, stops, quiet=quiet, device=device, compile=compile, given=given,
                              inputs=inputs, keep_data=keep_data)


def check_gpt_memory(config: GPTConfig, train_config: TrainConfig, batch_size: int | None = None,
                     train_tokens: int | None = None) -> None:
    """Fail before allocating when training ``config`` clearly needs more memory than the device has.

    With ``batch_size`` and ``train_tokens`` the activations of a batch count too (windows are at
    most ``train_tokens - 1`` long, as :class:`RandomWindows` cuts them).
    """
    seq = min(config.block_size, max(1, train_tokens - 1)) if train_tokens else None
    check_transformer_memory(train_config, "gpt training", vocab=config.vocab_size, dim=config.n_embd,
                             layers=config.n_layer, positions=config.block_size, mlp_dim=config.mlp_dim,
                             tied=config.tie_weights, learned_positions=config.position == "learned",
                             batch=batch_size, seq=seq)


def _resume_view(config: dict[str, Any]) -> dict[str, Any]:
    """The model options of a GPT run (config.json), by CLI parameter name, for --resume and --init-from."""
    model = config.get("model", {})
    view = {option.lstrip("-").replace("-", "_"): model.get(key) for key, option in _OPTION_NAMES.items()}
    view.update({name: model.get(name) for name in ("dropout", "position", "bias", "activation", "tie_weights")})
    char = config.get("level") == CharCodec.level
    view.update({"char": char, "vocab_size": model.get("vocab_size"),
                 "tokenizer": lambda given: not char})  # a tokenizer's text level: the file is checked by the data
    return view


def _check_block_size(config: GPTConfig, data: LMData) -> None:
    longest = len(data.train) - 1  # the longest window the training text holds
    if config.block_size > longest:
        raise DlnlpError(f"--block-size {config.block_size} is longer than the training text "
                         f"({len(data.train):,} tokens); use --block-size {max(longest, 1)} or less")


def _windows(tokens: Any, config: GPTConfig, shape: dict[str, int], seed: int, validation: bool) -> RandomWindows:
    return RandomWindows(tokens, shape["batch_size"], config.block_size, seed=seed)


def _describe(model: GPT, data: LMData, train: RandomWindows) -> str:
    c = model.config
    return (f"GPT {c.n_layer} layers x {c.n_head} heads x {c.n_embd} dims, block {c.block_size}, "
            f"{model.num_parameters():,} parameters, vocabulary {data.vocab_size}; {len(data.train):,} training "
            f"tokens, {len(data.val) if data.val is not None else 0:,} validation tokens")


def _check_memory(config: GPTConfig, train_config: TrainConfig, shape: dict[str, int] | None,
                  train_tokens: int | None) -> None:
    check_gpt_memory(config, train_config, shape["batch_size"] if shape else None, train_tokens)


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


GPT_RECIPE = LMRecipe(
    kind=KIND, format_version=FORMAT_VERSION, config_class=GPTConfig, build=GPT, shape=("batch_size",),
    batches=_windows, check_memory=_check_memory, describe=_describe,
    loss_fn=gpt_loss, check_data=_check_block_size, resume_view=_resume_view,
)
