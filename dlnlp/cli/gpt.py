"""``dlnlp gpt``: train, evaluate, import and export GPT (decoder-only transformer) language models.

The commands are thin over :mod:`dlnlp.models.gpt`, the shared trainer (:mod:`dlnlp.training`) and
:mod:`dlnlp.io.hf`; :func:`start_gpt_training` and :func:`evaluate_gpt_dir` are the recipes, usable
from Python.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    INPUT,
    TRAINING,
    BatchSize,
    Compile,
    Device,
    EncodingErrors,
    Epochs,
    Force,
    Inputs,
    Json,
    LearningRate,
    MaxSteps,
    MaxTime,
    OutDir,
    Precision,
    Quiet,
    Resume,
    Seed,
    TextField,
    Validation,
    corpus_options,
    print_json,
)

app = typer.Typer(help="GPT language models: train, evaluate, import/export HF GPT-2 checkpoints.",
                  no_args_is_help=True)

MODEL = "Model options"


def gpt_loss(model: Any, batch: Any, state: Any) -> tuple[Any, None]:
    """The trainer's loss function for a GPT: batch ``(x, y)`` -> mean next-token cross-entropy."""
    x, y = batch
    return model(x, y)[1], None


def _checked(config: Any) -> None:
    from dlnlp.errors import DlnlpError

    try:
        config.validate()
    except ValueError as exc:
        raise DlnlpError(str(exc)) from None


def start_gpt_training(
    inputs: Sequence[str] | None, out: str | Path, model_args: dict[str, Any], train_config: Any, *,
    batch_size: int = 12, tokenizer: str | None = None, ids: bool = False, vocab_size: int | None = None,
    val: str | Path | None = None, val_fraction: float = 0.1, options: Any = None, force: bool = False,
) -> dict[str, Any]:
    """Spool the corpus to ``out/data``, write config.json and the vocabulary, train, return a summary.

    ``model_args`` are :class:`~dlnlp.models.gpt.GPTConfig` fields (``vocab_size`` comes from the data);
    ``tokenizer`` None means character level.
    """
    from dlnlp.errors import DlnlpError, InputError
    from dlnlp.io.modeldir import prepare_model_dir, write_config
    from dlnlp.kernels.device import seed_everything
    from dlnlp.models.gpt import GPT, GPTConfig, gpt_config_dict
    from dlnlp.training.data import prepare_lm_data

    _checked(train_config)
    if batch_size < 1:
        raise DlnlpError("--batch-size must be >= 1")
    if val is not None and not Path(val).is_file():
        raise InputError(f"{val}: no such validation file")
    if model_args["n_embd"] % model_args["n_head"]:
        raise DlnlpError(f"--dim {model_args['n_embd']} is not divisible by --heads {model_args['n_head']}")
    tok = None
    if not ids and tokenizer is not None:
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
        model_config = GPTConfig(vocab_size=data.vocab_size, **model_args)
        eos = getattr(tok, "eos_id", None) if tok is not None else None
        config = gpt_config_dict(model_config, level=level, batch_size=batch_size, eos_id=eos,
                                 train=train_config.to_dict(), data=data.meta)
        write_config(directory, config)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # nothing trained yet: leave no half directory
        raise
    seed_everything(train_config.seed)
    return _train(GPT(model_config), train_config, data, directory, batch_size, resume=False)


def resume_gpt_training(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                        compile: bool = False) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override."""
    from dlnlp.io.modeldir import prepare_model_dir, read_config
    from dlnlp.models.gpt import GPT, KIND, GPTConfig
    from dlnlp.training import TrainConfig
    from dlnlp.training.checkpoint import read_checkpoint_meta
    from dlnlp.training.data import load_lm_data

    directory = prepare_model_dir(out, resume=True)
    config = read_config(directory, KIND)
    meta = read_checkpoint_meta(directory)
    overrides = {k: v for k, v in stops.items() if v is not None}
    train_config = TrainConfig.from_dict(meta["config"]).replace(quiet=quiet, device=device, compile=compile,
                                                                 **overrides)
    _checked(train_config)
    data = load_lm_data(directory)
    model = GPT(GPTConfig.from_dict(config["model"]))
    return _train(model, train_config, data, directory, config["batch_size"], resume=True)


def _train(model: Any, train_config: Any, data: Any, directory: Path, batch_size: int, *,
           resume: bool) -> dict[str, Any]:
    from dlnlp.progress import log
    from dlnlp.training import Trainer
    from dlnlp.training.data import RandomWindows

    block = model.config.block_size
    train = RandomWindows(data.train, batch_size, block, seed=train_config.seed)
    val = RandomWindows(data.val, batch_size, block, seed=train_config.seed) if data.val is not None else None
    params = model.num_parameters()
    if not resume:
        c = model.config
        log(f"GPT {c.n_layer} layers x {c.n_head} heads x {c.n_embd} dims, block {block}, "
            f"{params:,} parameters, vocabulary {data.vocab_size}; {len(data.train):,} training tokens, "
            f"{len(data.val) if data.val is not None else 0:,} validation tokens", quiet=train_config.quiet)
    trainer = Trainer(model, train_config, train, val, out_dir=directory, loss_fn=gpt_loss, resume=resume)
    result = trainer.fit()
    summary = {
        "out": str(directory), "steps": result.steps, "epochs": round(result.epochs, 4), "tokens": result.tokens,
        "elapsed_s": round(result.elapsed, 2), "tokens_per_s": round(result.tokens / max(result.elapsed, 1e-9), 1),
        "stopped_by": result.stopped_by, "train_loss": result.last_train_loss, "val_loss": result.final_val_loss,
        "best_val_loss": result.best_val_loss, "parameters": params,
    }
    if result.final_val_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.final_val_loss, 700))
        log(f"stopped by {result.stopped_by} after {result.steps} steps ({result.elapsed:.0f} s): validation "
            f"loss {result.final_val_loss:.4f} (best {result.best_val_loss:.4f}); saved {directory}",
            quiet=train_config.quiet)
    else:
        log(f"stopped by {result.stopped_by} after {result.steps} steps: training loss "
            f"{result.last_train_loss:.4f}; saved {directory}", quiet=train_config.quiet)
    return summary


def load_gpt_dir(model_dir: str | Path, device: Any = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """(model, codec, config.json) of a GPT directory; the codec is a CharVocab, a Tokenizer or None (ids)."""
    from dlnlp.errors import ModelDirError
    from dlnlp.io.modeldir import WEIGHTS_NAME
    from dlnlp.models.gpt import load_gpt
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
                     device: str = "auto", block_size: int | None = None, options: Any = None) -> dict[str, Any]:
    """Loss (nats/token), perplexity and bits per character of a GPT over a whole text.

    The text is encoded as in training and read in consecutive windows of ``block_size`` tokens (the
    model's by default), each predicted from its own window only; every token but the first is
    predicted once.
    """
    import numpy as np
    import torch

    from dlnlp.errors import InputError
    from dlnlp.io.corpus import iter_lines
    from dlnlp.kernels.device import resolve_device
    from dlnlp.models.gpt import evaluate_windows
    from dlnlp.training.data import encode_text_ids

    dev = resolve_device(device)
    model, codec, config = load_gpt_dir(model_dir, dev)
    level = config["level"]
    characters, unknown = None, 0
    if level == "ids":
        from dlnlp.tokenization.ids import read_id_lines

        ids = np.asarray([i for line in read_id_lines(inputs, options) for i in line], dtype=np.int64)
        if ids.size and ids.max() >= model.config.vocab_size:
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
    block = block_size or model.config.block_size
    if block > model.config.block_size:
        raise InputError(f"--block-size {block} exceeds the model's block size {model.config.block_size}")
    loss, count = evaluate_windows(model, torch.from_numpy(ids), block, batch_size, dev)
    bpc = loss / math.log(2) if level == "char" else (loss * count / (characters * math.log(2)) if characters
                                                        else None)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700)), "bits_per_char": bpc, "tokens": count,
            "characters": characters, "unknown_characters": unknown, "block_size": block}


@app.command()
def train(
    inputs: Inputs = None,
    out: OutDir = ...,
    layers: Annotated[int, typer.Option("--layers", help="Transformer blocks.", rich_help_panel=MODEL)] = 4,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads per block.", rich_help_panel=MODEL)] = 4,
    dim: Annotated[int, typer.Option("--dim", help="Model width (embedding size).", rich_help_panel=MODEL)] = 128,
    block_size: Annotated[int, typer.Option("--block-size", help="Context length in tokens.",
                                            rich_help_panel=MODEL)] = 64,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout on embeddings, attention and residuals.",
                                           rich_help_panel=MODEL)] = 0.0,
    position: Annotated[str, typer.Option("--position", help="learned (GPT-2) or sinusoidal (Vaswani et al.).",
                                          rich_help_panel=MODEL)] = "learned",
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Biases in linear layers and LayerNorms.",
                                       rich_help_panel=MODEL)] = True,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share the token embedding "
                                              "with the output layer.", rich_help_panel=MODEL)] = True,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="A dlnlp tokenizer file (subword "
                                                     "level).", rich_help_panel=INPUT)] = None,
    char: Annotated[bool, typer.Option("--char", help="Character level (the default without --tokenizer).",
                                       rich_help_panel=INPUT)] = False,
    ids: Annotated[bool, typer.Option("--ids", help="The corpus is ids from `dlnlp tokenize encode --format ids`.",
                                      rich_help_panel=INPUT)] = False,
    vocab_size: Annotated[Optional[int], typer.Option("--vocab-size", help="With --ids: the vocabulary size "
                                                      "(default: largest id + 1).", rich_help_panel=INPUT)] = None,
    batch_size: BatchSize = 12,
    lr: LearningRate = 1e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW decoupled weight decay.",
                                                rich_help_panel=TRAINING)] = 0.1,
    beta2: Annotated[float, typer.Option("--beta2", help="AdamW beta2.", rich_help_panel=TRAINING)] = 0.99,
    schedule: Annotated[str, typer.Option("--schedule", help="constant, linear or cosine.",
                                          rich_help_panel=TRAINING)] = "cosine",
    warmup: Annotated[int, typer.Option("--warmup", help="Linear warmup steps.", rich_help_panel=TRAINING)] = 100,
    min_lr_ratio: Annotated[float, typer.Option("--min-lr-ratio", help="Final learning rate as a share of --lr.",
                                                rich_help_panel=TRAINING)] = 0.1,
    clip: Annotated[float, typer.Option("--clip", help="Max gradient norm (0: off).", rich_help_panel=TRAINING)] = 1.0,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Batches per optimizer step.",
                                            rich_help_panel=TRAINING)] = 1,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    max_time: MaxTime = None,
    val: Validation = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Without --val: hold out this last share of "
                                                "the corpus.", rich_help_panel=TRAINING)] = 0.1,
    eval_interval: Annotated[int, typer.Option("--eval-interval", help="Steps between validations (0: at the end).",
                                               rich_help_panel=TRAINING)] = 250,
    eval_batches: Annotated[Optional[int], typer.Option("--eval-batches", help="Batches per periodic validation "
                                                        "(the final one is always the whole text).",
                                                        rich_help_panel=TRAINING)] = 20,
    log_interval: Annotated[int, typer.Option("--log-interval", help="Steps between metrics lines.",
                                              rich_help_panel=TRAINING)] = 50,
    resume: Resume = False,
    compile: Compile = False,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Train a GPT language model with the shared trainer (AdamW, warmup + cosine decay, clipping).

    Example: dlnlp gpt train tinyshakespeare.txt --char --layers 4 --heads 4 --dim 128 --block-size 64
    --batch-size 12 --max-steps 2000 --lr 1e-3 --out shakes-gpt
    """
    from dlnlp.errors import DlnlpError
    from dlnlp.training import TrainConfig

    stops = {"max_steps": max_steps, "epochs": epochs, "max_time": max_time}
    if resume:
        result = resume_gpt_training(out, stops, quiet=quiet, device=device, compile=compile)
    else:
        if sum([tokenizer is not None, char, ids]) > 1:
            raise DlnlpError("give one of --tokenizer, --char and --ids")
        if position not in ("learned", "sinusoidal"):
            raise DlnlpError(f"--position {position}: expected learned or sinusoidal")
        if min(layers, heads, dim, block_size) < 1 or not 0 <= dropout < 1:
            raise DlnlpError("--layers, --heads, --dim and --block-size must be >= 1 and --dropout in [0, 1)")
        if not any(v is not None for v in stops.values()):
            stops["epochs"] = 1.0
        model_args = {"n_layer": layers, "n_head": heads, "n_embd": dim, "block_size": block_size,
                      "dropout": dropout, "position": position, "bias": bias, "tie_weights": tie_weights}
        train_config = TrainConfig(
            optimizer="adamw", lr=lr, weight_decay=weight_decay, betas=(0.9, beta2), schedule=schedule,
            warmup_steps=warmup, min_lr_ratio=min_lr_ratio, clip=clip or None, grad_accum=grad_accum,
            precision=precision, device=device, eval_interval=eval_interval, eval_batches=eval_batches,
            log_interval=log_interval, seed=seed, compile=compile, quiet=quiet, **stops,
        )
        result = start_gpt_training(inputs, out, model_args, train_config, batch_size=batch_size,
                                    tokenizer=None if (ids or char) else tokenizer, ids=ids,
                                    vocab_size=vocab_size, val=val, val_fraction=val_fraction,
                                    options=corpus_options(text_field, encoding_errors), force=force)
    if json:
        print_json(result)


@app.command("eval")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A GPT model directory.", show_default=False)],
    inputs: Inputs = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per forward pass.",
                                            rich_help_panel=COMMON)] = 32,
    block_size: Annotated[Optional[int], typer.Option("--block-size", help="Window length (default: the model's).",
                                                      rich_help_panel=COMMON)] = None,
    device: Device = "auto",
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Loss (nats per token), perplexity and bits per character over a whole text, in block-size windows.

    Example: dlnlp gpt eval shakes-gpt valid.txt --json
    """
    result = evaluate_gpt_dir(model_dir, inputs, batch_size=batch_size, device=device, block_size=block_size,
                              options=corpus_options(text_field, encoding_errors))
    if json:
        print_json(result)
    else:
        bpc = f"  bits/char {result['bits_per_char']:.4f}" if result["bits_per_char"] is not None else ""
        typer.echo(f"loss {result['loss']:.4f}  perplexity {result['perplexity']:.3f}{bpc}  "
                   f"({result['tokens']:,} tokens)")


@app.command("import")
def import_hf(
    hf_dir: Annotated[Path, typer.Argument(help="A HF GPT-2 checkpoint directory (config.json, model.safetensors, "
                                           "tokenizer.json).", show_default=False)],
    out: OutDir = ...,
    force: Force = False,
    json: Json = False,
) -> None:
    """Convert a HF transformers GPT-2 checkpoint directory into a dlnlp GPT model directory.

    Example: dlnlp gpt import ./gpt2-small-hf --out gpt2-dlnlp
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.hf import import_hf_gpt2

    check_can_write(out, force)
    path = import_hf_gpt2(hf_dir, out, force=force)
    if json:
        print_json({"out": str(path)})


@app.command("export")
def export_hf(
    model_dir: Annotated[Path, typer.Argument(help="A dlnlp GPT model directory.", show_default=False)],
    hf_dir: Annotated[Path, typer.Argument(help="The HF checkpoint directory to write.", show_default=False)],
    force: Force = False,
    json: Json = False,
) -> None:
    """Write a dlnlp GPT as a HF GPT-2 checkpoint (loads with GPT2LMHeadModel.from_pretrained).

    Example: dlnlp gpt export shakes-gpt ./shakes-hf
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.hf import export_hf_gpt2

    check_can_write(hf_dir, force)
    path = export_hf_gpt2(model_dir, hf_dir, force=force)
    if json:
        print_json({"out": str(path)})
