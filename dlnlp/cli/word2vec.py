"""``dlnlp word2vec``: train skip-gram / CBOW word vectors (negative sampling or hierarchical softmax)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    TRAINING,
    Device,
    EncodingErrors,
    Force,
    Inputs,
    Json,
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
    min_count: Annotated[int, typer.Option("--min-count", help="Drop words seen fewer times.",
                                           rich_help_panel=TRAINING)] = 5,
    max_vocab: Annotated[Optional[int], typer.Option("--max-vocab", help="Keep at most this many most frequent "
                                                     "words.", rich_help_panel=TRAINING)] = None,
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
    workers: Workers = 0,
    device: Device = "auto",
    seed: Seed = 1,
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
    import time

    from dlnlp.cli.options import corpus_options, print_json
    from dlnlp.errors import DlnlpError
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.corpus import iter_token_lines
    from dlnlp.io.vectors import output_format
    from dlnlp.kernels.memory import check_fits, check_width, vector_tables_needs
    from dlnlp.models.vocab import count_and_encode
    from dlnlp.models.word2vec import Word2Vec, Word2VecConfig
    from dlnlp.progress import Progress, log

    started = time.perf_counter()
    config = Word2VecConfig(arch=arch, loss=loss, negative=negative, window=window, min_count=min_count,
                            max_vocab=max_vocab, sample=sample, dim=dim, epochs=epochs, lr=lr, min_lr=min_lr,
                            workers=workers, batch_size=batch_size, seed=seed)
    config.validate()
    check_width("--dim", dim)
    if vectors not in ("input", "average"):
        raise DlnlpError(f"--vectors {vectors}: expected input or average")
    if vectors == "average" and not config.use_ns:
        raise DlnlpError("--vectors average needs --loss ns or both (HS has no per-word output vectors)")
    out_format = output_format(out, fmt)
    check_can_write(out, force, inputs=inputs)

    token_lines = iter_token_lines(inputs, corpus_options(text_field, encoding_errors))
    vocab, corpus, line_ends = count_and_encode(token_lines, min_count=min_count, max_vocab=max_vocab)
    log(f"vocabulary: {len(vocab)} words (min-count {min_count}) covering {len(corpus)} of "
        f"{vocab.total_tokens} tokens", quiet=quiet)
    if len(corpus) == 0:
        raise DlnlpError(f"no word occurs at least {min_count} times (lower --min-count)")
    # input and output vectors (NS and HS each have an output table)
    check_fits(vector_tables_needs(len(vocab), dim, 1 + int(config.use_ns) + int(config.use_hs)), "cpu",
               task="word2vec training")
    model = Word2Vec(vocab, config)
    total = len(corpus) * epochs
    with Progress("word2vec", total=total, unit="words", quiet=quiet) as bar:
        def report(done: int, _total: int) -> None:
            bar.update(done - bar.completed)

        try:
            stats = model.train(corpus, line_ends, device=device, kernel=kernel, on_progress=report)
        except KeyboardInterrupt:
            # Ctrl-C: keep what was trained so far (the CLI then exits 130).
            log(f"interrupted: writing the vectors trained so far to {out}")
            _write(model, out, out_format, vectors, force, inputs, interrupted=True)
            raise
        report(stats["words_trained"], total)
    _write(model, out, out_format, vectors, force, inputs)
    wall = time.perf_counter() - started
    result = {"out": str(out), "format": out_format, "vocab_size": len(vocab), "corpus_tokens": vocab.total_tokens,
              "trained_tokens": len(corpus), **stats, "wall_seconds": wall,
              "words_per_second_wall": vocab.total_tokens * epochs / wall}
    log(f"trained {arch}+{loss} on {stats['backend']} in {stats['train_seconds']:.1f}s "
        f"({stats['words_per_second'] / 1e3:.0f}k words/s); wrote {out}", quiet=quiet)
    if json_:
        print_json(result)


def _write(model, out: Path, out_format: str, vectors: str, force: bool, inputs, interrupted: bool = False) -> None:
    from dlnlp.io.corpus import describe_inputs
    from dlnlp.io.vectors import save_vectors

    if out_format == "dir":
        model.save(out, which=vectors, force=force,
                   extra_config={"corpus": describe_inputs(inputs), "interrupted": interrupted})
    else:
        save_vectors(model.keyed_vectors(vectors), out, fmt=out_format, force=force)
