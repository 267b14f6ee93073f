"""``dlnlp vectors ppmi-svd``: count-based word vectors (PPMI matrix + truncated SVD).

Registered into the ``dlnlp vectors`` group by ``dlnlp/cli/vectors.py`` through ``register(app)``.
"""

from __future__ import annotations

import typer

from dlnlp.cli.options import Inputs, OutFile


def register(app: typer.Typer) -> None:
    """Add the ``ppmi-svd`` command to the ``dlnlp vectors`` group ``app``."""

    @app.command("ppmi-svd")
    def ppmi_svd(
        inputs: Inputs = None,
        out: OutFile = None,
    ) -> None:
        """Count-based vectors: PPMI word-context matrix, truncated SVD, U Sigma^p.

        Example: dlnlp vectors ppmi-svd corpus.txt --dim 100 --window 5 --out vectors.txt
        """
        from dlnlp.errors import DlnlpError

        raise DlnlpError("dlnlp vectors ppmi-svd: not implemented yet")
