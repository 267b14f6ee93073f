"""Progress reporting on stderr, shared by every long-running command.

On a terminal it is a rich progress bar; when stderr is not a terminal (logs, pipes, CI) it
degrades to a plain log line every few seconds, so batch jobs get readable logs. ``quiet``
silences it. Data never goes through here: it belongs on stdout.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

LOG_INTERVAL_S = 5.0


def follower_process() -> bool:
    """Whether this is a process other than rank 0 of a torchrun launch (``RANK`` > 0 of ``WORLD_SIZE`` > 1):
    rank 0 alone prints progress, logs, warnings and ``--json`` results."""
    try:
        return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1 \
            and int(os.environ.get("RANK", "0")) > 0
    except ValueError:
        return False


def log(message: str, *, quiet: bool = False) -> None:
    """One line of information on stderr."""
    if not quiet and not follower_process():
        print(f"dlnlp: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning on stderr; shown even with --quiet (by rank 0 alone under torchrun)."""
    if follower_process():
        return
    print(f"dlnlp: warning: {message}", file=sys.stderr, flush=True)


def _format_count(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """``with Progress("training", total=steps, unit="step") as p: p.update(1, loss=..)``.

    ``rate_unit``/``rate_count`` let a bar count steps while reporting another rate (tokens/s):
    pass ``rate=n`` to :meth:`update` with the number of those items processed.
    """

    def __init__(self, description: str, total: float | None = None, unit: str = "it", *,
                 rate_unit: str | None = None, quiet: bool = False, stream: Any = None):
        self.description = description
        self.total = total
        self.unit = unit
        self.rate_unit = rate_unit or unit
        self.quiet = quiet or follower_process()
        self.stream = stream or sys.stderr
        self.completed = 0.0
        self.rate_items = 0.0
        self.fields: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_log = self._start
        self._bar = None
        self._task = None
        self._interactive = not self.quiet and hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self) -> Progress:
        if self._interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def rate(self) -> float:
        return self.rate_items / max(self.elapsed, 1e-9)

    def _info(self) -> str:
        parts = [f"{k}={_format_value(v)}" for k, v in self.fields.items()]
        if self.rate_items:
            parts.append(f"{_format_count(self.rate())} {self.rate_unit}/s")
        return " ".join(parts)

    def update(self, advance: float = 1, *, rate: float | None = None, **fields: Any) -> None:
        self.completed += advance
        self.rate_items += advance if rate is None else rate
        self.fields.update(fields)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, info=self._info())
            return
        now = time.perf_counter()
        if now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            self._log_line()

    def _log_line(self, final: bool = False) -> None:
        done = _format_count(self.completed)
        if self.total:
            share = self.completed / self.total
            eta = (self.elapsed / share - self.elapsed) if share > 0 else 0
            position = f"{done}/{_format_count(self.total)} {self.unit} ({share:.0%})"
            timing = f"elapsed {_format_duration(self.elapsed)}" + ("" if final else f" eta {_format_duration(eta)}")
        else:
            position = f"{done} {self.unit}"
            timing = f"elapsed {_format_duration(self.elapsed)}"
        info = self._info()
        print(f"dlnlp: {self.description}: {position} {timing}{' ' + info if info else ''}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not self.quiet and self.completed:
            self._log_line(final=True)
        self.quiet = True  # close is idempotent: no second final line
