"""The recipe behind ``dlnlp glove train``: count co-occurrences, fit GloVe, write the vectors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError, UsageError
from dlnlp.io.corpus import CorpusOptions, describe_inputs
from dlnlp.io.modeldir import METRICS_NAME, metrics_text
from dlnlp.io.vectors import KeyedVectors, write_vectors_output
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.kernels.memory import check_fits, check_width, vector_tables_needs
from dlnlp.models.glove import GloVe, GloVeConfig, check_options
from dlnlp.progress import Progress, log
from dlnlp.recipes.vectors import Counting, count_cooccurrences, prepare_output, time_left

BACKENDS = ("auto", "native", "torch")


def train_glove(
    inputs: Sequence[str] | None, out: str | Path, config: GloVeConfig | None = None,
    counting: Counting | None = None, *, fmt: str = "auto", backend: str = "auto", workers: int = 0,
    max_time: float | None = None, device: str = "auto", options: CorpusOptions | None = None,
    force: bool = False, quiet: bool = False,
) -> dict[str, Any]:
    """Train GloVe vectors on ``inputs`` and write them to ``out`` (a model directory or a vectors file
    by ``fmt``); returns the run's figures (vocabulary, entries, cost, timings)."""
    started = time.perf_counter()
    config = config or GloVeConfig()
    counting = counting or Counting()
    config.validate()
    counting.check()
    check_options(window=counting.window, min_count=counting.min_count, max_vocab=counting.max_vocab,
                  memory=counting.memory_bytes, workers=workers, max_time=max_time)
    check_width("--dim", config.dim)
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend}: expected auto, native or torch")
    fmt = prepare_output(out, fmt, force=force, inputs=inputs)
    torch_device = resolve_device(device)
    seed_everything(config.seed)

    vocab, matrix, stats = count_cooccurrences(inputs, counting, options, quiet=quiet)
    try:
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
        with Progress("glove", total=matrix.nnz * config.epochs, unit="entries", quiet=quiet) as bar:

            def epoch_done(record: dict) -> None:  # glove.c prints its cost per iteration as it goes
                log(f"iter {record['epoch']:03d}: cost {record['cost']:.6f}", quiet=quiet)

            # --max-time counts from the command's start: the counting before and the writing after too
            left = time_left(max_time, len(vocab), config.dim, fmt)
            history = model.fit(matrix.rows, matrix.cols, matrix.values, backend=chosen, threads=workers,
                                callback=lambda r: bar.update(r["entries"]), max_time=left,
                                on_epoch=epoch_done)
    finally:
        matrix.close()
    train_seconds = time.perf_counter() - train_started
    kv = KeyedVectors(vocab.words, model.vectors(), vocab.counts)
    write_vectors_output(kv, out, fmt, force=force,
                         config={"model": "glove", "corpus": describe_inputs(inputs), "window": counting.window,
                                 "min_count": counting.min_count, "symmetric": counting.symmetric,
                                 **config.to_dict()},
                         files={METRICS_NAME: metrics_text(_metrics(history))})
    entries = sum(r["entries"] for r in history)
    result = {
        "out": str(out), "format": fmt, "vocab_size": len(vocab), "corpus_tokens": stats["corpus_tokens"],
        "nnz": stats["nnz"], "shards": stats["shards"], "backend": chosen, "device": str(torch_device),
        "epochs_completed": sum(1 for r in history if r["complete"]),
        "final_cost": history[-1]["cost"] if history else float("nan"),
        "count_seconds": stats["count_seconds"], "train_seconds": train_seconds,
        "entries_per_second": entries / max(train_seconds, 1e-9), "wall_seconds": time.perf_counter() - started,
    }
    log(f"trained {result['epochs_completed']} iterations on {chosen} in {train_seconds:.1f}s "
        f"({result['entries_per_second'] / 1e6:.2f}M entries/s); wrote {out}", quiet=quiet)
    return result


def _metrics(history: list[dict]) -> list[dict]:
    """metrics.jsonl records of the iterations, in the trainer's format (``loss`` is glove.c's cost)."""
    return [{"step": r["epoch"], "epoch": r["epoch"], "loss": r["cost"], "entries": r["entries"],
             "seconds": round(r["seconds"], 3), "complete": r["complete"]} for r in history]
