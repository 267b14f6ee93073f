"""Reading training runs back: the ``metrics.jsonl`` of run directories as a summary, series, a chart.

Every trainer writes the same records (``dlnlp.training.trainer``): a training line
``{"step", "epoch", "loss", "lr", "tokens", "tokens_per_s", "elapsed"}`` every ``--log-interval``
steps and a validation line ``{"step", "val_loss", "val_ppl", "best", ...}`` at each validation;
word2vec and GloVe write one training line per epoch (``step`` = the epoch). :func:`read_run`
turns a directory into a :class:`Run`; :func:`summarize` gives one table row per run;
:func:`braille_chart` draws loss curves in a terminal with Unicode braille (2 x 4 dots per
character, the way ``plotext`` and ``drawille`` do), without any plotting dependency;
:func:`save_png` draws the same curves through matplotlib (the ``[plot]`` extra).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError, InputError
from dlnlp.io.modeldir import CONFIG_NAME, METRICS_NAME

Point = tuple[float, float]


@dataclass
class Run:
    """One run directory's metrics: training and validation loss against the step."""

    path: Path
    label: str
    kind: str | None
    train: list[Point] = field(default_factory=list)  # (step, training loss)
    val: list[Point] = field(default_factory=list)  # (step, validation loss)
    last: dict[str, Any] = field(default_factory=dict)  # the last training record
    last_val: dict[str, Any] = field(default_factory=dict)  # the last validation record


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def read_run(directory: str | os.PathLike, label: str | None = None) -> Run:
    """Read ``directory/metrics.jsonl`` (and the kind from config.json when there is one).

    A last line cut short (a run killed while writing it) is skipped; any other line that is not a
    JSON object is an error naming the file and line.
    """
    path = Path(directory)
    if not path.is_dir():
        raise InputError(f"{path}: no such run directory")
    metrics = path / METRICS_NAME
    if not metrics.is_file():
        raise InputError(
            f"{path}: no {METRICS_NAME} (not a training run directory, or a run that logged nothing)"
        )
    kind = None
    try:
        config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        if isinstance(config, dict):
            # GloVe writes a generic vectors directory that names its model ("model": "glove").
            named = config.get("model")
            kind = named if isinstance(named, str) else config.get("kind")
    except (OSError, ValueError):
        pass
    run = Run(path=path, label=label or path.name or str(path), kind=kind)
    try:
        text = metrics.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{metrics}: not UTF-8 text ({exc})") from None
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if number == len(lines) and not text.endswith("\n"):
                break  # the last line of a run killed while writing it
            raise InputError(f"{metrics}:{number}: not a JSON object") from None
        step = _number(record.get("step", record.get("epoch")))
        if step is None:
            continue
        val_loss = _number(record.get("val_loss"))
        loss = _number(record.get("loss"))
        if val_loss is not None:
            run.val.append((step, val_loss))
            run.last_val = record
        elif loss is not None:
            run.train.append((step, loss))
            run.last = record
    return run


def read_runs(directories: Sequence[str | os.PathLike]) -> list[Run]:
    """:func:`read_run` for each directory, labelled by name (by the path as given when names repeat)."""
    names = [Path(d).name or str(d) for d in directories]
    return [
        read_run(d, label=str(d) if names.count(name) > 1 else name)
        for d, name in zip(directories, names, strict=True)
    ]


def summarize(run: Run) -> dict[str, Any]:
    """The figures of one run: steps, epochs, last and best losses, throughput, time."""
    best = min((v for _, v in run.val), default=None)
    last_step = max([s for s, _ in run.train] + [s for s, _ in run.val], default=None)
    return {
        "run": run.label,
        "path": str(run.path),
        "kind": run.kind,
        "steps": int(last_step) if last_step is not None else None,
        "epochs": _number(run.last.get("epoch")),
        "train_loss": run.train[-1][1] if run.train else None,
        "val_loss": run.val[-1][1] if run.val else None,
        "best_val_loss": best,
        "val_perplexity": math.exp(min(best, 700)) if best is not None else None,
        "tokens_per_s": _number(run.last.get("tokens_per_s")),
        "elapsed_s": _number(
            run.last_val.get("elapsed")
            if run.last_val.get("step", -1) >= run.last.get("step", 0)
            else run.last.get("elapsed")
        ),
    }


def to_json(runs: Sequence[Run]) -> dict[str, Any]:
    """What ``runs show --json`` prints: each run's summary and its two series."""
    return {
        "runs": [
            {**summarize(r), "train": [list(p) for p in r.train], "val": [list(p) for p in r.val]}
            for r in runs
        ]
    }


# -- terminal chart ---------------------------------------------------------------------------------

# Braille dot bits by (column, row) inside a 2 x 4 cell (Unicode U+2800 block).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# Validation points are marked with a glyph per run, so they stay apart even without colour.
MARKERS = "●■▲◆✚✖"
COLORS = ("cyan", "magenta", "yellow", "green", "blue", "red")


@dataclass
class Series:
    label: str
    points: list[Point]
    style: int  # the run's index: its colour and marker
    markers: bool = False  # draw points as markers (validation), else as a line of dots (training)


def _format_tick(value: float) -> str:
    return f"{value:.4g}"


def braille_chart(
    series: Sequence[Series], width: int = 72, height: int = 16
) -> list[list[tuple[str, int | None]]]:
    """Draw ``series`` on a ``width`` x ``height`` character canvas with axes and tick labels.

    Returns rows of (text, style) pieces, style being the series' ``style`` (None for axes), so the
    caller can colour them; lines are joined dot to dot (Bresenham) in braille, validation points
    are drawn as their series' marker glyph. An empty chart has one row saying so.
    """
    points = [p for s in series for p in s.points]
    if not points:
        return [[("(no loss values to chart)", None)]]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    labels = [_format_tick(y1), _format_tick((y0 + y1) / 2), _format_tick(y0)]
    margin = max(len(t) for t in labels) + 1
    cols, rows = max(width - margin - 1, 10), max(height, 4)
    dots_w, dots_h = cols * 2, rows * 4
    cells = [[0] * cols for _ in range(rows)]
    owner: list[list[int | None]] = [[None] * cols for _ in range(rows)]
    marks: dict[tuple[int, int], Series] = {}

    def to_dot(x: float, y: float) -> tuple[int, int]:
        dx = round((x - x0) / (x1 - x0) * (dots_w - 1))
        dy = round((y1 - y) / (y1 - y0) * (dots_h - 1))
        return dx, dy

    def plot(dx: int, dy: int, style: int) -> None:
        row, col = dy // 4, dx // 2
        cells[row][col] |= _DOTS[dx % 2][dy % 4]
        owner[row][col] = style

    for s in series:
        if s.markers:
            for x, y in s.points:
                dx, dy = to_dot(x, y)
                marks[(dy // 4, dx // 2)] = s
            continue
        previous = None
        for x, y in s.points:
            dot = to_dot(x, y)
            if previous is None:
                plot(*dot, s.style)
            else:  # Bresenham's line from the previous point
                (ax, ay), (bx, by) = previous, dot
                steps = max(abs(bx - ax), abs(by - ay), 1)
                for i in range(steps + 1):
                    plot(round(ax + (bx - ax) * i / steps), round(ay + (by - ay) * i / steps), s.style)
            previous = dot
    tick_rows = {0: labels[0], (rows - 1) // 2: labels[1], rows - 1: labels[2]}
    out: list[list[tuple[str, int | None]]] = []
    for r in range(rows):
        pieces: list[tuple[str, int | None]] = [(tick_rows.get(r, "").rjust(margin - 1) + " ┤", None)]
        for c in range(cols):
            if (r, c) in marks:
                s = marks[(r, c)]
                pieces.append((MARKERS[s.style % len(MARKERS)], s.style))
            elif cells[r][c]:
                pieces.append((chr(0x2800 + cells[r][c]), owner[r][c]))
            else:
                pieces.append((" ", None))
        out.append(pieces)
    left, right = _format_tick(x0), _format_tick(x1)
    out.append([(" " * margin + "└" + "─" * cols, None)])
    out.append([(" " * (margin + 1) + left + right.rjust(max(cols - len(left), len(right) + 1)), None)])
    return out


def chart_series(runs: Sequence[Run]) -> list[Series]:
    """One training line and one set of validation markers per run."""
    series = []
    for i, run in enumerate(runs):
        series.append(Series(f"{run.label} train", run.train, i))
        if run.val:
            series.append(Series(f"{run.label} val", run.val, i, markers=True))
    return series


def legend(runs: Sequence[Run]) -> list[list[tuple[str, int | None]]]:
    """One legend line per run: its colour's line glyph (training), its marker (validation)."""
    lines = []
    for i, run in enumerate(runs):
        val = f"   {MARKERS[i % len(MARKERS)]}" if run.val else ""
        pieces: list[tuple[str, int | None]] = [("  ⣀⣀", i), (f" {run.label} training loss", None)]
        if val:
            pieces += [(val, i), (f" {run.label} validation loss", None)]
        lines.append(pieces)
    return lines


# -- PNG through matplotlib -------------------------------------------------------------------------


def save_png(
    runs: Sequence[Run], out: str | os.PathLike, *, force: bool = False, title: str | None = None
) -> Path:
    """Training (solid) and validation (dashed, with markers) loss of every run in one figure."""
    from dlnlp.io.atomic import atomic_open, check_can_write

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DlnlpError(
            "--png needs matplotlib: pip install 'dlnlp[plot]' (or pip install matplotlib)"
        ) from exc
    out = Path(out)
    check_can_write(out, force, directory=False)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        if run.train:
            ax.plot(*zip(*run.train, strict=True), color=color, linewidth=1.2, label=f"{run.label} training")
        if run.val:
            ax.plot(
                *zip(*run.val, strict=True),
                color=color,
                linestyle="--",
                marker="o",
                markersize=3,
                label=f"{run.label} validation",
            )
    ax.set_xlabel("step (epoch for word2vec and GloVe)")
    ax.set_ylabel("loss")
    ax.set_title(title or "training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    suffix = out.suffix.lstrip(".").lower() or "png"
    with atomic_open(out, "wb", force=force) as handle:
        fig.savefig(handle, format=suffix, bbox_inches="tight")
    plt.close(fig)
    return out
