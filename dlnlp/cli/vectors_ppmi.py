"""``dlnlp vectors ppmi-svd``: count-based word vectors (PPMI matrix + truncated SVD).

Registered into the ``dlnlp vectors`` group by ``dlnlp/cli/vectors.py`` through ``register(app)``.
"""

from pathlib import Path
from typing import Annotated

import typer

from dlnlp.cli.glove import CrossLines, MaxVocab, Memory, MinCount, Symmetric, TmpDir
from dlnlp.cli.options import (
    TRAINING,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    Quiet,
    Seed,
    TextField,
    VectorsFormat,
)


def register(app: typer.Typer) -> None:
    """Add the ``ppmi-svd`` command to the ``dlnlp vectors`` group ``app``."""

    @app.command("ppmi-svd")
    def ppmi_svd(
        inputs: Inputs = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Output: a vectors file (.bin word2vec binary, "
                                          ".txt/.vec word2vec text) or a model directory; see --format.")
                       ] = Path("ppmi-svd-model"),
        fmt: VectorsFormat = "auto",
        dim: Annotated[int, typer.Option("--dim", help="Vector dimension (singular vectors kept).",
                                         rich_help_panel=TRAINING)] = 100,
        window: Annotated[int, typer.Option("--window", help="Context words on each side.")] = 5,
        distance_weighting: Annotated[bool, typer.Option("--distance-weighting/--no-distance-weighting",
                                                         help="Add 1/d for a context d words away (default: "
                                                         "plain counts).")] = False,
        min_count: MinCount = 5,
        max_vocab: MaxVocab = None,
        symmetric: Symmetric = True,
        cross_lines: CrossLines = False,
        memory: Memory = 1.0,
        tmp_dir: TmpDir = None,
        cds: Annotated[float, typer.Option("--cds", help="Context-distribution smoothing exponent (1: none).",
                                           rich_help_panel=TRAINING)] = 0.75,
        shift: Annotated[float, typer.Option("--shift", help="Shift k: PMI - log k (1: none).",
                                             rich_help_panel=TRAINING)] = 1.0,
        positive: Annotated[bool, typer.Option("--positive/--no-positive", help="Clip PMI at 0 (PPMI), or keep "
                                               "the negative PMI of observed pairs.", rich_help_panel=TRAINING)
                            ] = True,
        eig: Annotated[float, typer.Option("--eig", help="p in U Sigma^p (1: U Sigma; 0: U).",
                                           rich_help_panel=TRAINING)] = 0.5,
        svd: Annotated[str, typer.Option("--svd", help="randomized (torch.svd_lowrank) or lanczos (scipy svds).",
                                         rich_help_panel=TRAINING)] = "randomized",
        power_iterations: Annotated[int, typer.Option("--power-iterations", help="Subspace iterations of the "
                                                      "randomized SVD.", rich_help_panel=TRAINING)] = 4,
        seed: Seed = 0,
        text_field: TextField = None,
        encoding_errors: EncodingErrors = "strict",
        force: Force = False,
        quiet: Quiet = False,
        json_: Json = False,
    ) -> None:
        """Count-based vectors: PPMI word-context matrix (smoothed, optionally shifted), truncated SVD, U Sigma^p.

        Counts windows the way `dlnlp glove train` does (same vocabulary rules, memory-bounded);
        --window 5 with plain counts and --eig 0.5 follow Levy, Goldberg and Dagan (2015).

        Example: dlnlp vectors ppmi-svd corpus.txt --dim 100 --window 5 --out ppmi.bin
        """
        import time

        from dlnlp.cli.options import corpus_options, print_json
        from dlnlp.errors import DlnlpError
        from dlnlp.io.atomic import check_can_write
        from dlnlp.io.corpus import describe_inputs
        from dlnlp.io.vectors import KeyedVectors, output_format, write_vectors_output
        from dlnlp.models.ppmi_svd import (
            PPMIConfig,
            check_counting_options,
            corpus_cooccurrence,
            ppmi_svd_vectors,
        )
        from dlnlp.progress import Progress, log

        started = time.perf_counter()
        config = PPMIConfig(dim=dim, cds=cds, shift=shift, positive=positive, eig=eig, svd=svd,
                            power_iterations=power_iterations, seed=seed)
        try:
            config.validate()
        except ValueError as exc:
            raise DlnlpError(str(exc)) from exc
        check_counting_options(window, min_count, memory, max_vocab)
        fmt_out = output_format(out, fmt)
        check_can_write(out, force, inputs=inputs)
        with Progress("counting", unit="lines", quiet=quiet) as bar:
            vocab, matrix, stats = corpus_cooccurrence(
                inputs, corpus_options(text_field, encoding_errors), min_count=min_count, max_vocab=max_vocab,
                window=window, symmetric=symmetric, distance_weighting=distance_weighting,
                cross_lines=cross_lines, memory_bytes=int(memory * (1 << 30)), tmp_dir=tmp_dir,
                on_lines=lambda n: bar.update(n))
        log(f"vocabulary: {len(vocab)} words; {matrix.nnz} non-zero co-occurrences (window {window})", quiet=quiet)
        if matrix.nnz == 0:
            raise DlnlpError("no co-occurrences: every line has fewer than two in-vocabulary words")
        svd_started = time.perf_counter()
        try:
            vectors, singular = ppmi_svd_vectors(matrix.rows, matrix.cols, matrix.values, len(vocab), config)
        except RuntimeError as exc:
            raise DlnlpError(str(exc)) from exc
        finally:
            matrix.close()
        svd_seconds = time.perf_counter() - svd_started
        kv = KeyedVectors(vocab.words, vectors, vocab.counts)
        write_vectors_output(kv, out, fmt_out, force=force,
                             config={"model": "ppmi-svd", "corpus": describe_inputs(inputs), "window": window,
                                     "min_count": min_count, "distance_weighting": distance_weighting,
                                     **config.to_dict()})
        result = {"out": str(out), "format": fmt_out, "vocab_size": len(vocab), "nnz": stats["nnz"],
                  "count_seconds": stats["vocab_seconds"] + stats["cooccur_seconds"], "svd_seconds": svd_seconds,
                  "top_singular_values": [float(x) for x in singular[:5]],
                  "wall_seconds": time.perf_counter() - started}
        log(f"PPMI + {svd} SVD to {dim} dimensions in {svd_seconds:.1f}s; wrote {out}", quiet=quiet)
        if json_:
            print_json(result)
