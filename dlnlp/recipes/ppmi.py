"""The recipe behind ``dlnlp vectors ppmi-svd``: count co-occurrences, PPMI + truncated SVD, write."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError, checked
from dlnlp.io.corpus import CorpusOptions, describe_inputs
from dlnlp.io.vectors import KeyedVectors, write_vectors_output
from dlnlp.models.ppmi_svd import PPMIConfig, ppmi_svd_vectors
from dlnlp.progress import log
from dlnlp.recipes.vectors import Counting, count_cooccurrences, prepare_output


def train_ppmi_svd(
    inputs: Sequence[str] | None, out: str | Path, config: PPMIConfig | None = None,
    counting: Counting | None = None, *, fmt: str = "auto", options: CorpusOptions | None = None,
    force: bool = False, quiet: bool = False,
) -> dict[str, Any]:
    """Count-based vectors of ``inputs`` (PPMI matrix, truncated SVD, ``U Sigma^eig``) written to ``out``.

    ``counting`` defaults to Levy, Goldberg and Dagan's (2015) window of 5 with plain counts.
    """
    started = time.perf_counter()
    config = config or PPMIConfig()
    counting = counting or Counting(window=5, distance_weighting=False)
    checked(config)
    counting.check()
    fmt = prepare_output(out, fmt, force=force, inputs=inputs)
    vocab, matrix, stats = count_cooccurrences(inputs, counting, options, quiet=quiet)
    svd_started = time.perf_counter()
    try:
        vectors, singular = ppmi_svd_vectors(matrix.rows, matrix.cols, matrix.values, len(vocab), config)
    except RuntimeError as exc:
        raise DlnlpError(str(exc)) from exc
    finally:
        matrix.close()
    svd_seconds = time.perf_counter() - svd_started
    kv = KeyedVectors(vocab.words, vectors, vocab.counts)
    write_vectors_output(kv, out, fmt, force=force,
                         config={"model": "ppmi-svd", "corpus": describe_inputs(inputs), "window": counting.window,
                                 "min_count": counting.min_count, "distance_weighting": counting.distance_weighting,
                                 **config.to_dict()})
    log(f"PPMI + {config.svd} SVD to {config.dim} dimensions in {svd_seconds:.1f}s; wrote {out}", quiet=quiet)
    return {"out": str(out), "format": fmt, "vocab_size": len(vocab), "nnz": stats["nnz"],
            "count_seconds": stats["count_seconds"], "svd_seconds": svd_seconds,
            "top_singular_values": [float(x) for x in singular[:5]], "wall_seconds": time.perf_counter() - started}
