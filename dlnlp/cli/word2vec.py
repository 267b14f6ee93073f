"""``dlnlp word2vec``: train skip-gram / CBOW word vectors (negative sampling or hierarchical softmax)."""

from pathlib import Path
from typing import Annotated

import typer

from dlnlp.cli.options import (
    TRAINING,
    Device,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    MaxTime,
    MaxVocab,
    MinCount,
    Quiet,
    Seed,
    TextField,
    VectorsFormat,
    Workers,
)

app = typer.Typer(help="word2vec: skip-gram and CBOW word vectors (negative sampling, hierarchical softmax).",
                  no_args_is_help=True)



@app.command("train")
def train(
    inputs: Inputs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: a model directory, or a word2vec file "
                                      "(.bin binary, .txt/.vec text; see --format).")] = Path("word2vec-model"),
    fmt: VectorsFormat = "auto",
    arch: Annotated[str, typer.Option("--arch", help="skipgram or cbow.", rich_help_panel=TRAINING)] = "skipgram",
    loss: Annotated[str, typer.Option("--loss", help="ns (negative sampling), hs (hierarchical softmax) or both.",
                                      rich_help_panel=TRAINING)] = "ns",
    negative: Annotated[int, typer.Option("--negative", help="Negative samples per prediction (1-1000).",
                                          rich_help_panel=TRAINING)] = 5,
    window: Annotated[int, typer.Option("--window", help="Maximum context window (each center word draws "
                                        "1..W; at most 1000).", rich_help_panel=TRAINING)] = 5,
    min_count: MinCount = 5,
    max_vocab: MaxVocab = None,
    sample: Annotated[float, typer.Option("--sample", help="Subsampling threshold for frequent words (0: off).",
                                          rich_help_panel=TRAINING)] = 1e-3,
    dim: Annotated[int, typer.Option("--dim", help="Vector dimension.", rich_help_panel=TRAINING)] = 100,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the corpus.", rich_help_panel=TRAINING)] = 5,
    lr: Annotated[float, typer.Option("--lr", help="Starting learning rate (0 < lr < 1).", rich_help_panel=TRAINING)] = 0.025,
    min_lr: Annotated[float, typer.Option("--min-lr", help="Final learning rate (linear decay).",
                                          rich_help_panel=TRAINING)] = 0.0001,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Center words per step of the batched Torch "
                                            "kernels (CUDA; 0: auto). The CPU loop trains word by word.",
                                            rich_help_panel=TRAINING)] = 0,
    vectors: Annotated[str, typer.Option("--vectors", help="Write input vectors, or the average of input and "
                                         "output vectors (NS only).", rich_help_panel=TRAINING)] = "input",
    kernel: Annotated[str, typer.Option("--kernel", help="auto (compiled loop on CPU, batched Torch on CUDA), "
                                        "native or torch.", rich_help_panel=TRAINING)] = "auto",
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
    """Train word2vec vectors on whitespace-tokenized text, one sentence per line.

    On CPU the loop runs in a compiled kernel with --workers lock-free threads (as word2vec.c and
    gensim; built with the system C compiler on first use and cached); on CUDA in batched Torch
    kernels. Same seed with --workers 1 gives the same vectors. The corpus is held in memory as
    4-byte word ids for the passes.

    Example: dlnlp word2vec train corpus.txt --arch skipgram --loss ns --dim 100 --epochs 5 --out vectors.bin
    """
    from dlnlp.cli.options import corpus_options, print_json
    from dlnlp.models.word2vec import Word2VecConfig
    from dlnlp.recipes.word2vec import train_word2vec

    config = Word2VecConfig(arch=arch, loss=loss, negative=negative, window=window, min_count=min_count,
                            max_vocab=max_vocab, sample=sample, dim=dim, epochs=epochs, lr=lr, min_lr=min_lr,
                            workers=workers, batch_size=batch_size, seed=seed)
    result = train_word2vec(inputs, out, config, fmt=fmt, vectors=vectors, kernel=kernel, device=device,
                            options=corpus_options(text_field, encoding_errors), force=force, quiet=quiet,
                            max_time=max_time)
    if json_:
        print_json(result)
