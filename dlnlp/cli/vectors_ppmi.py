"""``dlnlp vectors ppmi-svd``: count-based word vectors (PPMI matrix + truncated SVD).

Registered into the ``dlnlp vectors`` group by ``dlnlp/cli/vectors.py`` through ``register(app)``.
"""

from pathlib import Path
from typing import Annotated

import typer

from dlnlp.cli.options import (
    TRAINING,
    CrossLines,
    DistanceWeighting,
    EncodingErrors,
    Force,
    Inputs,
    Json,
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
        window: Window = 5,
        distance_weighting: DistanceWeighting = False,
        min_count: MinCount = 5,
        max_vocab: MaxVocab = None,
        symmetric: Symmetric = True,
        cross_lines: CrossLines = False,
        memory: Memory = "1G",
        temp_dir: TempDir = None,
        tmp_dir: TmpDirAlias = None,
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
        from dlnlp.cli.options import corpus_options, counting, print_json
        from dlnlp.cli.options import temp_dir as chosen_temp_dir
        from dlnlp.models.ppmi_svd import PPMIConfig
        from dlnlp.recipes.ppmi import train_ppmi_svd

        config = PPMIConfig(dim=dim, cds=cds, shift=shift, positive=positive, eig=eig, svd=svd,
                            power_iterations=power_iterations, seed=seed)
        count = counting(window=window, min_count=min_count, max_vocab=max_vocab, symmetric=symmetric,
                         distance_weighting=distance_weighting, cross_lines=cross_lines, memory=memory,
                         temp_dir=chosen_temp_dir(temp_dir, tmp_dir))
        result = train_ppmi_svd(inputs, out, config, count, fmt=fmt,
                                options=corpus_options(text_field, encoding_errors), force=force, quiet=quiet)
        if json_:
            print_json(result)
