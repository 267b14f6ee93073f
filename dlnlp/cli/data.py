"""``dlnlp data``: the public corpora of the README and benchmarks (list, get, path).

The work is in :mod:`dlnlp.io.public_data`; this module parses options and prints. Paths go to
stdout one per line (so ``$(dlnlp data path brown/train)`` works in a shell), progress to stderr.
"""

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import COMMON, Force, Json, Quiet, print_json

app = typer.Typer(
    help="Public corpora (Tiny Shakespeare, Brown, ABC, WikiText-2, MR, CoNLL-2000, analogies, WordSim-353): "
    "list, download into a checksum-verified cache, print paths.",
    no_args_is_help=True,
)

Names = Annotated[
    list[str],
    typer.Argument(
        help="Dataset names (`dlnlp data list`), or one file of a dataset: brown/train, mr/dev.",
        show_default=False,
    ),
]
DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="The cache directory (default: $DLNLP_DATA_DIR, else ~/.cache/dlnlp/data).",
        rich_help_panel=COMMON,
        show_default=False,
    ),
]
Mirror = Annotated[
    Optional[str],
    typer.Option(
        "--mirror",
        metavar="URL|DIR",
        help="Fetch the final files from this http(s) URL or local directory laid out as corpora/..., "
        "eval/... (default: $DLNLP_DATA_MIRROR; without one, download upstream and split).",
        show_default=False,
    ),
]


def _progress(quiet: bool) -> Callable:
    from dlnlp.progress import Progress

    @contextlib.contextmanager
    def report(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        with Progress(f"download {description}", total=total, unit="B", quiet=quiet) as bar:
            yield bar.update

    return report


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@app.command("list")
def list_(data_dir: DataDir = None, json: Json = False) -> None:
    """The datasets, their files, sizes and licences, and whether each is in the cache.

    Example: dlnlp data list --json
    """
    from dlnlp.io.public_data import data_dir as resolve_dir
    from dlnlp.io.public_data import listing

    rows = listing(data_dir)
    if json:
        print_json({"data_dir": str(resolve_dir(data_dir)), "datasets": rows})
        return
    table = [("NAME", "FILES", "SIZE", "CACHED", "LICENCE")]
    for row in rows:
        files = " ".join(Path(f["path"]).name for f in row["files"])
        table.append(
            (row["name"], files, _size(row["size"]), "yes" if row["present"] else "no", row["licence"])
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        sys.stdout.write(
            "  ".join(cell.ljust(width) for cell, width in zip(r[:4], widths, strict=True))
            + "  "
            + r[4]
            + "\n"
        )
    sys.stdout.write(f"cache: {resolve_dir(data_dir)} (get with `dlnlp data get NAME`)\n")


@app.command()
def get(
    names: Names, mirror: Mirror = None, data_dir: DataDir = None, force: Force = False, quiet: Quiet = False
) -> None:
    """Download datasets into the cache, verify their SHA-256, and print their paths.

    With a mirror the final files are fetched by relative path; without one the upstream sources are
    downloaded and split as `dlnlp data list --json` describes. A file already cached with the right
    checksum is kept (--force fetches it again). Nothing half-written or unverified is ever left.

    Example: dlnlp data get brown wordsim353 --mirror http://localhost:8000
    """
    from dlnlp.io.public_data import get as fetch

    for path in fetch(names, root=data_dir, mirror=mirror, force=force, progress=_progress(quiet)):
        sys.stdout.write(f"{path}\n")


@app.command()
def path(names: Names, data_dir: DataDir = None) -> None:
    """Print the cached path of each file of the datasets (fails, naming `dlnlp data get`, if missing).

    Example: dlnlp ngram train $(dlnlp data path brown/train) --order 3 --out brown3
    """
    from dlnlp.io.public_data import paths

    for found in paths(names, root=data_dir):
        sys.stdout.write(f"{found}\n")
