"""``dlnlp glove``: train GloVe word vectors (co-occurrence counting, then weighted least squares)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    TRAINING,
    CrossLines,
    Device,
    DistanceWeighting,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    MaxTime,
    MaxVocab,
    Memory,
    MinCount,
    Quiet,
    Seed,
    Symmetric,
    TempDir,
    TextField,
    TmpDirAlias,
    VectorsFormat,
    Window,
    Workers,
)

app = typer.Typer(help="GloVe: global vectors from weighted least squares on log co-occurrence counts.",
                  no_args_is_help=True)


@app.command("train")
def train(
    inputs: Inputs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: a model directory, or a vectors file "
                                      "(.bin word2vec binary, .txt/.vec word2vec text; see --format).")
                   ] = Path("glove-model"),
    fmt: VectorsFormat = "auto",
    dim: Annotated[int, typer.Option("--dim", help="Vector dimension.", rich_help_panel=TRAINING)] = 100,
    window: Window = 10,
    min_count: MinCount = 5,
    max_vocab: MaxVocab = None,
    symmetric: Symmetric = True,
    distance_weighting: DistanceWeighting = True,
    cross_lines: CrossLines = False,
    memory: Memory = "1G",
    temp_dir: TempDir = None,
    tmp_dir: TmpDirAlias = None,
    x_max: Annotated[float, typer.Option("--x-max", help="Cutoff of the weighting function f.",
                                         rich_help_panel=TRAINING)] = 100.0,
    alpha: Annotated[float, typer.Option("--alpha", help="Exponent of the weighting function f, in [0, 1].",
                                         rich_help_panel=TRAINING)] = 0.75,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the non-zero entries (glove.c's -iter).",
                                        rich_help_panel=TRAINING)] = 25,
    lr: Annotated[float, typer.Option("--lr", help="Initial learning rate (glove.c's -eta), in (0, 1].",
                                      rich_help_panel=TRAINING)] = 0.05,
    bias_lr: Annotated[Optional[float], typer.Option("--bias-lr", help="Learning rate of the biases (default: 1 "
                                                     "with AdaGrad, as glove.c, which updates them without "
                                                     "-eta; --lr with Adam).", rich_help_panel=TRAINING)] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adagrad (glove.c) or adam.",
                                           rich_help_panel=TRAINING)] = "adagrad",
    grad_clip: Annotated[float, typer.Option("--grad-clip", help="Clip each entry's gradient components to "
                                             "[-C, C] (0: off).", rich_help_panel=TRAINING)] = 100.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Entries per step of the batched Torch "
                                            "kernels (CUDA, --backend torch).", rich_help_panel=TRAINING)] = 16384,
    backend: Annotated[str, typer.Option("--backend", help="auto (native C loop on CPU, Torch on CUDA), native "
                                         "or torch.", rich_help_panel=TRAINING)] = "auto",
    vectors: Annotated[str, typer.Option("--vectors", help="sum: W + W~ (glove.c -model 2); word: W alone "
                                         "(-model 1).", rich_help_panel=TRAINING)] = "sum",
    max_time: MaxTime = None,
    workers: Workers = 0,
    device: Device = "auto",
    seed: Seed = 0,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    force: Force = False,
    quiet: Quiet = False,
    json_: Json = False,
) -> None:
    """Train GloVe vectors on whitespace-tokenized text, one document per line.

    Counts co-occurrences the way Stanford's vocab_count and cooccur do (windows stay within a line,
    1/d weighting, memory-bounded with disk spill), then fits the weighted least-squares model with
    AdaGrad over the shuffled non-zero entries: on a CPU in a compiled per-entry loop with --workers
    lock-free threads (as glove.c), on CUDA in batched Torch kernels.

    Example: dlnlp glove train corpus.txt --dim 100 --window 10 --x-max 10 --epochs 25 --out vectors.bin
    """
    from dlnlp.cli.options import corpus_options, counting, print_json
    from dlnlp.cli.options import temp_dir as chosen_temp_dir
    from dlnlp.models.glove import GloVeConfig
    from dlnlp.recipes.glove import train_glove

    config = GloVeConfig(dim=dim, x_max=x_max, alpha=alpha, epochs=epochs, lr=lr, bias_lr=bias_lr,
                         optimizer=optimizer, batch_size=batch_size, grad_clip=None if grad_clip == 0 else grad_clip,
                         output=vectors, seed=seed)
    count = counting(window=window, min_count=min_count, max_vocab=max_vocab, symmetric=symmetric,
                     distance_weighting=distance_weighting, cross_lines=cross_lines, memory=memory,
                     temp_dir=chosen_temp_dir(temp_dir, tmp_dir))
    result = train_glove(inputs, out, config, count, fmt=fmt, backend=backend, workers=workers, max_time=max_time,
                         device=device, options=corpus_options(text_field, encoding_errors), force=force,
                         quiet=quiet)
    if json_:
        print_json(result)
