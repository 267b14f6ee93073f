"""``dlnlp gpt``: train, evaluate, import and export GPT (decoder-only transformer) language models.

The commands are thin over :mod:`dlnlp.models.gpt`, the shared trainer (:mod:`dlnlp.training`) and
:mod:`dlnlp.models.gpt_hf`; the recipes they call, usable from Python, are in :mod:`dlnlp.recipes.gpt`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    INPUT,
    Device,
    EncodingErrors,
    Force,
    Ids,
    IdsEos,
    IdsVocabSize,
    InitFrom,
    Inputs,
    Json,
    OutDir,
    Precision,
    Quiet,
    Seed,
    Streaming,
    TextField,
    Threads,
    TrainingOptions,
    corpus_options,
    given_options,
    print_json,
    run_conversion,
    training_options,
)

app = typer.Typer(help="GPT language models: train, evaluate, import/export HF GPT-2 checkpoints.",
                  no_args_is_help=True)

MODEL = "Model options"


@app.command()
@training_options(batch_size=12, lr=1e-3, weight_decay=0.1, beta2=0.99, schedule="cosine", warmup=100, min_lr_ratio=0.1,
                  eval_interval=250, eval_batches=20)
def train(
    ctx: typer.Context,
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
    activation: Annotated[str, typer.Option("--activation", help="MLP activation: gelu (exact, nanoGPT), gelu_tanh "
                                            "(GPT-2's approximation) or relu.", rich_help_panel=MODEL)] = "gelu",
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share the token embedding "
                                              "with the output layer.", rich_help_panel=MODEL)] = True,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="A dlnlp tokenizer file (subword "
                                                     "level; with --ids, the tokenizer that wrote them).", rich_help_panel=INPUT)] = None,
    char: Annotated[bool, typer.Option("--char", help="Character level (the default without --tokenizer).",
                                       rich_help_panel=INPUT)] = False,
    ids: Ids = False,
    init_from: InitFrom = None,
    vocab_size: IdsVocabSize = None,
    eos_id: IdsEos = None,
    training: TrainingOptions = None,
    device: Device = "auto",
    threads: Threads = None,
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    streaming: Streaming = False,
) -> None:
    """Train a GPT language model with the shared trainer (AdamW, warmup + cosine decay, clipping).

    Example: dlnlp gpt train tinyshakespeare.txt --char --layers 4 --heads 4 --dim 128 --block-size 64
    --batch-size 12 --max-steps 2000 --lr 1e-3 --out shakes-gpt

    Example: dlnlp tokenize encode corpus.txt -t tok.json | dlnlp gpt train - --ids -t tok.json --out gpt

    Example: dlnlp gpt import ./gpt2-hf --out gpt2 && dlnlp gpt train poems.txt --init-from gpt2 --lr 1e-4 --out poems
    """
    from dlnlp.recipes.gpt import resume_gpt_training, start_gpt_training

    if training.resume:
        result = resume_gpt_training(out, training.stops(), quiet=quiet, device=device, compile=training.compile,
                                     keep_data=training.keep_data, given=given_options(ctx), inputs=inputs)
    else:
        model_args = {"n_layer": layers, "n_head": heads, "n_embd": dim, "block_size": block_size,
                      "dropout": dropout, "position": position, "bias": bias, "tie_weights": tie_weights,
                      "activation": activation}
        config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
        result = start_gpt_training(inputs, out, model_args, config, batch_size=training.batch_size,
                                    tokenizer=tokenizer, char=char, ids=ids, vocab_size=vocab_size, val=training.val,
                                    val_fraction=training.val_fraction,
                                    options=corpus_options(text_field, encoding_errors, streaming=streaming),
                                    force=force, eos_id=eos_id, keep_data=training.keep_data, init_from=init_from,
                                    given=given_options(ctx))
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
    threads: Threads = None,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Loss (nats per token), perplexity and bits per character over a whole text, in block-size windows.

    Example: dlnlp gpt eval shakes-gpt valid.txt --json
    """
    from dlnlp.recipes.gpt import evaluate_gpt_dir

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
    from dlnlp.models.gpt_hf import import_hf_gpt2

    run_conversion(import_hf_gpt2, hf_dir, out, force=force, json=json)


@app.command("export")
def export_hf(
    model_dir: Annotated[Path, typer.Argument(help="A dlnlp GPT model directory.", show_default=False)],
    hf_dir: Annotated[Path, typer.Argument(help="The HF checkpoint directory to write.", show_default=False)],
    force: Force = False,
    json: Json = False,
) -> None:
    """Write a dlnlp GPT as a HF GPT-2 checkpoint (loads with GPT2LMHeadModel.from_pretrained) with its
    tokenizer (AutoTokenizer.from_pretrained; a character model's vocabulary becomes a tokenizer.json).

    Example: dlnlp gpt export shakes-gpt ./shakes-hf
    """
    from dlnlp.models.gpt_hf import export_hf_gpt2
    from dlnlp.progress import warn

    run_conversion(export_hf_gpt2, model_dir, hf_dir, force=force, json=json, warn=warn)


@app.command("prompt-tune")
@training_options(batch_size=16, lr=3e-2, weight_decay=0.0, schedule="linear", warmup=0, max_steps=500, clip=1.0,
                  eval_interval=0)
def prompt_tune(
    model_dir: Annotated[Path, typer.Argument(help="A dlnlp GPT model directory (stays frozen).", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(help="The target corpus: text files, one sentence or document per "
                                                "line.", show_default=False)],
    out: OutDir = ...,
    prompt_length: Annotated[int, typer.Option("--prompt-length", help="Soft-prompt vectors (they take that many "
                                               "of the block's positions).", rich_help_panel=MODEL)] = 20,
    prompt_init: Annotated[str, typer.Option("--prompt-init", help="random, vocab or a text whose token embeddings "
                                             "start the prompt.", rich_help_panel=MODEL)] = "random",
    training: TrainingOptions = None,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Learn a soft prompt for a frozen GPT on a target corpus (its LM loss); the output holds the prompt
    only (kilobytes) and names the model by path and content hash. Decode with it through
    dlnlp generate MODEL --soft-prompt OUT.

    Example: dlnlp gpt prompt-tune brown-gpt mr-positive.txt --val mr-positive-dev.txt --prompt-length 20 --out mr-prompt
    """
    from dlnlp.recipes.prompt_tune import prompt_tune as run

    config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
    result = run(model_dir, inputs, out, config, length=prompt_length, init=prompt_init, val=training.val,
                 batch_size=training.batch_size, options=corpus_options(None, encoding_errors), force=force,
                 resume=training.resume)
    if json:
        print_json(result)
