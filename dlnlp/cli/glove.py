"""``dlnlp glove``: train GloVe word vectors (co-occurrence counting, then weighted least squares)."""

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
    MaxTime,
    Quiet,
    Seed,
    TextField,
    VectorsFormat,
    Workers,
)

app = typer.Typer(help="GloVe: global vectors from weighted least squares on log co-occurrence counts.",
                  no_args_is_help=True)

COUNTING = "Counting options"

# Co-occurrence counting options, shared with `dlnlp vectors ppmi-svd`.
MinCount = Annotated[int, typer.Option("--min-count", help="Drop words seen fewer times (vocab_count's "
                                       "-min-count).", rich_help_panel=COUNTING)]
MaxVocab = Annotated[Optional[int], typer.Option("--max-vocab", help="Keep at most this many most frequent words.",
                                                 rich_help_panel=COUNTING)]
Symmetric = Annotated[bool, typer.Option("--symmetric/--left-only", help="Count left and right context, or the "
                                         "left context only (cooccur's -symmetric).", rich_help_panel=COUNTING)]
CrossLines = Annotated[bool, typer.Option("--cross-lines", help="Treat the corpus as one token stream (windows "
                                          "cross line ends, as GloVe 1.0); default: a line is a document.",
                                          rich_help_panel=COUNTING)]
Memory = Annotated[float, typer.Option("--memory", help="Soft memory limit for counting, in GiB; beyond it sorted "
                                       "shards spill to disk and are merged (cooccur's -memory).",
                                       rich_help_panel=COUNTING)]
TmpDir = Annotated[Optional[Path], typer.Option("--tmp-dir", help="Directory for spilled shards (default: the "
                                                "system temporary directory).", rich_help_panel=COUNTING)]


@app.command("train")
def train(
    inputs: Inputs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: a model directory, or a vectors file "
                                      "(.bin word2vec binary, .txt/.vec word2vec text; see --format).")
                   ] = Path("glove-model"),
    fmt: VectorsFormat = "auto",
    dim: Annotated[int, typer.Option("--dim", help="Vector dimension.", rich_help_panel=TRAINING)] = 100,
    window: Annotated[int, typer.Option("--window", help="Context words on each side, weighted 1/distance.",
                                        rich_help_panel=COUNTING)] = 10,
    min_count: MinCount = 5,
    max_vocab: MaxVocab = None,
    symmetric: Symmetric = True,
    distance_weighting: Annotated[bool, typer.Option("--distance-weighting/--no-distance-weighting",
                                                     help="Add 1/d for a context d words away (else 1).",
                                                     rich_help_panel=COUNTING)] = True,
    cross_lines: CrossLines = False,
    memory: Memory = 1.0,
    tmp_dir: TmpDir = None,
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
    import time

    from dlnlp.cli.options import corpus_options, print_json
    from dlnlp.errors import DlnlpError
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.corpus import describe_inputs
    from dlnlp.io.vectors import KeyedVectors, output_format, write_vectors_output
    from dlnlp.kernels.device import resolve_device, seed_everything
    from dlnlp.kernels.memory import check_fits, check_width, vector_tables_needs
    from dlnlp.models.glove import GloVe, GloVeConfig, check_options
    from dlnlp.models.ppmi_svd import corpus_cooccurrence
    from dlnlp.progress import Progress, log

    started = time.perf_counter()
    config = GloVeConfig(dim=dim, x_max=x_max, alpha=alpha, epochs=epochs, lr=lr, bias_lr=bias_lr,
                         optimizer=optimizer, batch_size=batch_size, grad_clip=None if grad_clip == 0 else grad_clip,
                         output=vectors, seed=seed)
    config.validate()
    check_options(window=window, min_count=min_count, max_vocab=max_vocab, memory=memory, workers=workers,
                  max_time=max_time)
    check_width("--dim", dim)
    if backend not in ("auto", "native", "torch"):
        raise DlnlpError(f"--backend {backend}: expected auto, native or torch")
    fmt = output_format(out, fmt)
    check_can_write(out, force, inputs=inputs)
    torch_device = resolve_device(device)
    seed_everything(seed)

    with Progress("counting", unit="lines", quiet=quiet) as bar:
        vocab, matrix, stats = corpus_cooccurrence(
            inputs, corpus_options(text_field, encoding_errors), min_count=min_count, max_vocab=max_vocab,
            window=window, symmetric=symmetric, distance_weighting=distance_weighting, cross_lines=cross_lines,
            memory_bytes=int(memory * (1 << 30)), tmp_dir=tmp_dir, on_lines=lambda n: bar.update(n))
    log(f"vocabulary: {len(vocab)} words (min-count {min_count}) of {stats['corpus_tokens']} tokens; "
        f"{matrix.nnz} non-zero co-occurrences (window {window}, {stats['shards']} shards spilled) "
        f"in {stats['vocab_seconds'] + stats['cooccur_seconds']:.1f}s", quiet=quiet)
    if matrix.nnz == 0:
        raise DlnlpError("no co-occurrences: every line has fewer than two in-vocabulary words")
    # word and context tables (+2 columns), their optimizer state (AdaGrad 2 tables, Adam 4), and
    # the float64 initialization of both (4 tables' worth)
    tables = 2 + (2 if config.optimizer == "adagrad" else 4) + 4
    check_fits(vector_tables_needs(len(vocab), config.dim + 2, tables), torch_device, task="glove training")
    model = GloVe(len(vocab), config, device=torch_device)
    try:
        chosen = model.resolve_backend(backend)
    except (ValueError, RuntimeError) as exc:
        raise DlnlpError(f"--backend {backend}: {exc}") from exc
    train_started = time.perf_counter()
    with Progress("glove", total=matrix.nnz * epochs, unit="entries", quiet=quiet) as bar:
        history = model.fit(matrix.rows, matrix.cols, matrix.values, backend=chosen, threads=workers,
                            callback=lambda r: bar.update(r["entries"]), max_time=max_time)
        matrix.close()
    train_seconds = time.perf_counter() - train_started
    for record in history:
        log(f"iter {record['epoch']:03d}: cost {record['cost']:.6f}", quiet=quiet)
    kv = KeyedVectors(vocab.words, model.vectors(), vocab.counts)
    write_vectors_output(kv, out, fmt, force=force,
                         config={"model": "glove", "corpus": describe_inputs(inputs), "window": window,
                                 "min_count": min_count, "symmetric": symmetric, **config.to_dict()})
    entries = sum(r["entries"] for r in history)
    result = {
        "out": str(out), "format": fmt, "vocab_size": len(vocab), "corpus_tokens": stats["corpus_tokens"],
        "nnz": stats["nnz"], "shards": stats["shards"], "backend": chosen, "device": str(torch_device),
        "epochs_completed": sum(1 for r in history if r["complete"]),
        "final_cost": history[-1]["cost"] if history else float("nan"),
        "count_seconds": stats["vocab_seconds"] + stats["cooccur_seconds"], "train_seconds": train_seconds,
        "entries_per_second": entries / max(train_seconds, 1e-9), "wall_seconds": time.perf_counter() - started,
    }
    log(f"trained {result['epochs_completed']} iterations on {chosen} in {train_seconds:.1f}s "
        f"({result['entries_per_second'] / 1e6:.2f}M entries/s); wrote {out}", quiet=quiet)
    if json_:
        print_json(result)
