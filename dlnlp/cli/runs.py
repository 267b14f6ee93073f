"""``dlnlp runs``: look at training runs (their metrics.jsonl) as a table and a loss chart."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import Force, Json

app = typer.Typer(
    help="Training runs: metrics tables and loss charts of run directories.", no_args_is_help=True
)


@app.command("show")
def show(
    directories: Annotated[
        list[Path],
        typer.Argument(help="Run directories (model directories with a metrics.jsonl).", show_default=False),
    ],
    png: Annotated[
        Optional[Path],
        typer.Option(
            "--png",
            help="Also draw the curves into this image "
            "(.png, .pdf, .svg; needs matplotlib: the \\[plot] extra).",
        ),
    ] = None,
    height: Annotated[int, typer.Option("--height", help="Chart height in lines (0: no chart).")] = 16,
    width: Annotated[
        Optional[int],
        typer.Option("--width", help="Chart width in columns (default: the terminal's, at most 120)."),
    ] = None,
    force: Force = False,
    json_: Json = False,
) -> None:
    """A table of each run's figures and a chart of its training and validation loss.

    Several directories are shown side by side: one row each in the table, one line each in the
    chart (a colour per run; validation points marked ● ■ ▲ per run). word2vec and GloVe runs plot
    their loss per epoch.

    Example: dlnlp runs show runs/gpt-small runs/gpt-wide --png curves.png
    """
    from dlnlp.cli.options import print_json
    from dlnlp.errors import OptionError
    from dlnlp.evaluation.runs import (
        braille_chart,
        chart_series,
        legend,
        read_runs,
        save_png,
        summarize,
        to_json,
    )

    if height < 0 or height == 1 or height > 200:
        raise OptionError(f"--height must be 0 (no chart) or in [2, 200], got {height}")
    if width is not None and not 20 <= width <= 1000:
        raise OptionError(f"--width must be in [20, 1000], got {width}")
    runs = read_runs(directories)
    if png is not None:
        save_png(runs, png, force=force)
    if json_:
        print_json(to_json(runs))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from dlnlp.evaluation.runs import COLORS

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a file: no 80-column wrapping of the table
        console = Console(highlight=False, width=max(console.width, (width or 0), 132))
    table = Table(show_edge=False, pad_edge=False)
    columns = [
        ("run", "run"),
        ("kind", "kind"),
        ("steps", "steps"),
        ("epochs", "epochs"),
        ("train loss", "train_loss"),
        ("val loss", "val_loss"),
        ("best val", "best_val_loss"),
        ("best ppl", "val_perplexity"),
        ("tokens/s", "tokens_per_s"),
        ("time (s)", "elapsed_s"),
    ]
    for title, _ in columns:
        table.add_column(title, justify="left" if title in ("run", "kind") else "right")
    for i, run in enumerate(runs):
        row = summarize(run)
        cells = [Text(str(row["run"]), style=COLORS[i % len(COLORS)])]
        for _, key in columns[1:]:
            value = row[key]
            cells.append(Text(_cell(key, value)))
        table.add_row(*cells)
    console.print(table)
    if height:
        chart_width = width or min(console.width, 100 if not console.is_terminal else 120)
        console.print()
        for pieces in [*braille_chart(chart_series(runs), chart_width, height), [], *legend(runs)]:
            line = Text()
            for text, style in pieces:
                line.append(text, style=None if style is None else COLORS[style % len(COLORS)])
            console.print(line, no_wrap=True, overflow="crop")
    if png is not None:
        from dlnlp.progress import log

        log(f"wrote {png}")


def _cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    if key in ("tokens_per_s", "val_perplexity") and isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    if key == "elapsed_s" and isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}" if key.endswith("loss") else f"{value:.4g}"
    return str(value)
