"""What the vector-model recipes share: counting a corpus, and where and how the vectors are written.

``glove`` and ``ppmi`` count co-occurrences the same way (Stanford's ``vocab_count`` + ``cooccur``,
memory-bounded, :class:`Counting`); ``glove``, ``ppmi`` and ``word2vec`` resolve and check their
output the same way before any work (:func:`prepare_output`), so a refused overwrite costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError, OptionError
from dlnlp.io.atomic import check_can_write
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.vectors import output_format
from dlnlp.kernels.cooccur import DEFAULT_MEMORY_BYTES
from dlnlp.models.ppmi_svd import check_counting_options, corpus_cooccurrence
from dlnlp.progress import Progress, log

MIN_MEMORY_BYTES = 1 << 20  # CooccurrenceCounter's smallest budget


@dataclass
class Counting:
    """How a corpus becomes a vocabulary and a co-occurrence matrix (the counting options)."""

    window: int = 10
    min_count: int = 5
    max_vocab: int | None = None
    symmetric: bool = True
    distance_weighting: bool = True
    cross_lines: bool = False
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    temp_dir: str | Path | None = None

    def check(self) -> None:
        """The options' bounds, before any work (one-line errors naming the option)."""
        check_counting_options(self.window, self.min_count, self.memory_bytes, self.max_vocab)
        if self.memory_bytes < MIN_MEMORY_BYTES:  # the counter's own floor, as an option error
            raise OptionError(f"--memory must be at least 1M, got {self.memory_bytes:,} bytes")


def prepare_output(out: str | Path, fmt: str, *, force: bool, inputs: Sequence[str] | None) -> str:
    """The output format for ``--format`` and ``--out``, once it is known ``out`` may be written."""
    chosen = output_format(Path(out), fmt)
    check_can_write(Path(out), force, inputs=inputs)
    return chosen


def count_cooccurrences(inputs: Sequence[str] | None, counting: Counting, options: CorpusOptions | None = None, *,
                        quiet: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """(vocabulary, co-occurrence matrix, statistics) of a corpus, with a progress bar; the caller
    closes the matrix. A corpus with no co-occurrence at all is an error."""
    with Progress("counting", unit="lines", quiet=quiet) as bar:
        vocab, matrix, stats = corpus_cooccurrence(
            inputs, options, min_count=counting.min_count, max_vocab=counting.max_vocab, window=counting.window,
            symmetric=counting.symmetric, distance_weighting=counting.distance_weighting,
            cross_lines=counting.cross_lines, memory_bytes=counting.memory_bytes, tmp_dir=counting.temp_dir,
            on_lines=lambda n: bar.update(n))
    stats["count_seconds"] = stats["vocab_seconds"] + stats["cooccur_seconds"]
    log(f"vocabulary: {len(vocab)} words (min-count {counting.min_count}) of {stats['corpus_tokens']} tokens; "
        f"{matrix.nnz} non-zero co-occurrences (window {counting.window}, {stats['shards']} shards spilled) "
        f"in {stats['count_seconds']:.1f}s", quiet=quiet)
    if matrix.nnz == 0:
        matrix.close()
        raise DlnlpError("no co-occurrences: every line has fewer than two in-vocabulary words")
    return vocab, matrix, stats


def write_seconds(words: int, dim: int, fmt: str) -> float:
    """A generous estimate of the time writing ``words`` vectors of ``dim`` takes in ``fmt`` (text formats
    print about two million numbers a second; binary ones write at disk speed), which ``--max-time``
    keeps for the writing after training."""
    numbers = words * dim
    if fmt in ("word2vec-text", "glove"):
        return 0.5 + numbers / 2e6
    return 0.5 + numbers * 4 / 100e6


def time_left(max_time: float | None, words: int, dim: int, fmt: str) -> float | None:
    """The training time left of a ``--max-time`` budget (counted from the command's start) once the
    vectors' writing is kept aside; None without a budget, at least a millisecond."""
    if max_time is None:
        return None
    import time

    from dlnlp.progress import run_started

    return max(max_time - (time.perf_counter() - run_started()) - write_seconds(words, dim, fmt), 1e-3)
