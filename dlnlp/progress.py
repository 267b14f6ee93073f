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
BAR_WIDTH = 12

_run_started: float | None = None


def _process_age() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere): interpreter start and imports."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            now = float(uptime.read().split()[0])
        import os

        return max(0.0, now - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime in ticks
    except (OSError, ValueError, IndexError):
        return 0.0


def mark_run_start(*, process: bool = False, clear: bool = False) -> None:
    """Start the clock that ``--max-time`` budgets count from: now, or (``process``) when this process
    started, so that the interpreter's start and the imports (torch takes seconds) are counted too.
    The CLI calls it for each command it runs, and with ``clear`` when the command ends."""
    global _run_started
    _run_started = None if clear else time.perf_counter() - (_process_age() if process else 0.0)


def run_started() -> float:
    """The ``time.perf_counter()`` value the current command started at (now when no command marked one)."""
    return _run_started if _run_started is not None else time.perf_counter()


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
    pass ``rate=n`` to :meth:`update` with the number of those items processed. ``budget`` (seconds
    from now, a ``--max-time``) bounds the run too: the share done and the ETA follow whichever of
    ``total`` and ``budget`` ends first.
    """

    def __init__(self, description: str, total: float | None = None, unit: str = "it", *,
                 rate_unit: str | None = None, quiet: bool = False, stream: Any = None,
                 budget: float | None = None):
        self.description = description
        self.total = total
        self.unit = unit
        self.rate_unit = rate_unit or unit
        self.quiet = quiet or follower_process()
        self.stream = stream or sys.stderr
        self.budget = budget
        self.completed = 0.0
        self.rate_items = 0.0
        self.fields: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._last_log = self._start
        self._bar = None
        self._task = None
        self._width = 80
        self._interactive = not self.quiet and hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self) -> Progress:
        if self._interactive:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            # The position and the times keep their width; the metrics give way (cut with an
            # ellipsis, see _bar_fields), so elapsed and ETA stay readable in 80 columns.
            fixed = {"no_wrap": True}
            console = Console(file=self.stream)
            self._width = console.width
            self._bar = RichProgress(
                TextColumn("{task.description}", table_column=Column(**fixed)), BarColumn(bar_width=BAR_WIDTH),
                TextColumn("{task.fields[position]}", table_column=Column(**fixed)),
                TextColumn("{task.fields[timing]}", table_column=Column(**fixed)),
                TextColumn("{task.fields[info]}", table_column=Column(**fixed)),
                console=console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=1.0 if self.total or self.budget else None,
                                            **self._bar_fields())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def rate(self) -> float:
        return self.rate_items / max(self.elapsed, 1e-9)

    def share(self) -> float | None:
        """The part done: of ``total``, or of the time ``budget``, whichever is further (None: unknown)."""
        shares = []
        if self.total:
            shares.append(self.completed / self.total)
        if self.budget:
            shares.append(self.elapsed / self.budget)
        return min(max(shares), 1.0) if shares else None

    def eta(self) -> float | None:
        """Seconds left until ``total`` (at the rate so far) or the end of the ``budget``, whichever is nearer."""
        left = []
        if self.total and self.completed > 0:
            left.append(self.elapsed * (self.total - self.completed) / self.completed)
        if self.budget:
            left.append(self.budget - self.elapsed)
        return max(min(left), 0.0) if left else None

    def _info(self) -> str:
        parts = [f"{k}={_format_value(v)}" for k, v in self.fields.items()]
        if self.rate_items:
            parts.append(f"{_format_count(self.rate())} {self.rate_unit}/s")
        return " ".join(parts)

    def _position(self) -> str:
        if self.unit == "step":  # "step 120/2000": the step number as the run's logs and metrics name it
            done = f"step {self.completed:.0f}" + (f"/{self.total:.0f}" if self.total else "")
        else:
            done = _format_count(self.completed) + (f"/{_format_count(self.total)}" if self.total else "") \
                + f" {self.unit}"
        share = self.share()
        return done + (f" ({share:.0%})" if share is not None else "")

    def _timing(self, final: bool = False) -> str:
        eta = None if final else self.eta()
        return f"elapsed {_format_duration(self.elapsed)}" + (f" eta {_format_duration(eta)}" if eta is not None
                                                               else "")

    def _bar_fields(self) -> dict[str, Any]:
        position, timing, info = self._position(), self._timing(), self._info()
        # what is left of the line after the other columns and the spaces between the five
        room = self._width - len(self.description) - BAR_WIDTH - len(position) - len(timing) - 5
        if len(info) > room:
            info = info[:max(room - 1, 0)] + "…" if room > 0 else ""
        return {"position": position, "timing": timing, "info": info}

    def update(self, advance: float = 1, *, rate: float | None = None, **fields: Any) -> None:
        self.completed += advance
        self.rate_items += advance if rate is None else rate
        self.fields.update(fields)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.share() or 0.0, **self._bar_fields())
            return
        now = time.perf_counter()
        if now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            self._log_line()

    def _log_line(self, final: bool = False) -> None:
        info = self._info()
        print(f"dlnlp: {self.description}: {self._position()} {self._timing(final)}{' ' + info if info else ''}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.share() or 0.0, **self._bar_fields())
            self._bar.stop()
            self._bar = None
        elif not self.quiet and self.completed:
            self._log_line(final=True)
        self.quiet = True  # close is idempotent: no second final line
