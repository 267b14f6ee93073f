"""The recipe behind ``dlnlp word2vec train``: count and encode the corpus, train, write the vectors."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError, OptionError, UsageError
from dlnlp.io.corpus import CorpusOptions, describe_inputs, iter_token_lines
from dlnlp.io.vectors import save_vectors
from dlnlp.kernels.memory import check_fits, check_width, vector_tables_needs
from dlnlp.models.vocab import count_and_encode
from dlnlp.models.word2vec import Word2Vec, Word2VecConfig
from dlnlp.progress import Progress, log
from dlnlp.recipes.vectors import prepare_output, time_left

WHICH_VECTORS = ("input", "average")


def train_word2vec(
    inputs: Sequence[str] | None, out: str | Path, config: Word2VecConfig | None = None, *, fmt: str = "auto",
    vectors: str = "input", kernel: str = "auto", device: str = "auto", options: CorpusOptions | None = None,
    force: bool = False, quiet: bool = False, max_time: float | None = None,
) -> dict[str, Any]:
    """Train word2vec on ``inputs`` and write ``vectors`` (input, or the input/output average) to ``out``.

    ``max_time`` (seconds, counted from the command's start) stops training early enough to write the
    vectors within it (the learning rate then stops short of ``min_lr``: word2vec.c's decay is by words).

    Ctrl-C keeps what was trained so far: the vectors are written, then KeyboardInterrupt goes on.
    """
    started = time.perf_counter()
    config = config or Word2VecConfig()
    config.validate()
    if max_time is not None and not max_time > 0:
        raise OptionError(f"--max-time must be > 0 seconds, got {max_time}")
    check_width("--dim", config.dim)
    if vectors not in WHICH_VECTORS:
        raise UsageError(f"--vectors {vectors}: expected input or average")
    if vectors == "average" and not config.use_ns:
        raise DlnlpError("--vectors average needs --loss ns or both (HS has no per-word output vectors)")
    out = Path(out)
    fmt = prepare_output(out, fmt, force=force, inputs=inputs)

    token_lines = iter_token_lines(inputs, options)
    vocab, corpus, line_ends = count_and_encode(token_lines, min_count=config.min_count, max_vocab=config.max_vocab)
    log(f"vocabulary: {len(vocab)} words (min-count {config.min_count}) covering {len(corpus)} of "
        f"{vocab.total_tokens} tokens", quiet=quiet)
    if len(corpus) == 0:
        raise DlnlpError(f"no word occurs at least {config.min_count} times (lower --min-count)")
    # input and output vectors (NS and HS each have an output table)
    check_fits(vector_tables_needs(len(vocab), config.dim, 1 + int(config.use_ns) + int(config.use_hs)), "cpu",
               task="word2vec training")
    model = Word2Vec(vocab, config)
    total = len(corpus) * config.epochs
    with Progress("word2vec", total=total, unit="words", quiet=quiet) as bar:
        def report(done: int, _total: int) -> None:
            bar.update(done - bar.completed)

        stop = threading.Event()
        left = time_left(max_time, len(vocab), config.dim, fmt)
        timer = threading.Timer(left, stop.set) if left is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            stats = model.train(corpus, line_ends, device=device, kernel=kernel, on_progress=report, stop=stop)
        except KeyboardInterrupt:
            log(f"interrupted: writing the vectors trained so far to {out}")
            _write(model, out, fmt, vectors, force, inputs, interrupted=True)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        report(stats["words_trained"], total)
    _write(model, out, fmt, vectors, force, inputs)
    wall = time.perf_counter() - started
    log(f"trained {config.arch}+{config.loss} on {stats['backend']} in {stats['train_seconds']:.1f}s "
        f"({stats['words_per_second'] / 1e3:.0f}k words/s); wrote {out}", quiet=quiet)
    return {"out": str(out), "format": fmt, "vocab_size": len(vocab), "corpus_tokens": vocab.total_tokens,
            "trained_tokens": len(corpus), **stats, "wall_seconds": wall,
            "words_per_second_wall": vocab.total_tokens * config.epochs / wall}


def _write(model: Word2Vec, out: Path, fmt: str, vectors: str, force: bool, inputs: Sequence[str] | None,
           interrupted: bool = False) -> None:
    # A model directory keeps the output tables too (Word2Vec.save); a file holds the chosen vectors.
    if fmt == "dir":
        model.save(out, which=vectors, force=force,
                   extra_config={"corpus": describe_inputs(inputs), "interrupted": interrupted})
    else:
        save_vectors(model.keyed_vectors(vectors), out, fmt=fmt, force=force)
