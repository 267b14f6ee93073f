"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay."""

from __future__ import annotations

import math


def lr_factor(schedule: str, step: int, warmup_steps: int, progress: float, min_ratio: float = 0.0) -> float:
    """The multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    ``progress`` in [0, 1] is how far the decay phase has gone (steps after warmup over the steps
    left after warmup, or the share of the time budget used). Warmup is linear from ``1/warmup``
    to 1 (never 0, so the first step moves the weights, as in nanoGPT).
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    q = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - q * (1.0 - min_ratio)
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * q))
    raise ValueError(f"unknown schedule {schedule!r}")


def decay_progress(step: int, warmup_steps: int, total_steps: int | None, elapsed: float,
                   max_time: float | None, warmup_time: float | None = None) -> float:
    """How far the decay phase has gone: the larger of the step share and the time-budget share."""
    shares = [0.0]
    if total_steps:
        shares.append((step - warmup_steps) / max(1, total_steps - warmup_steps))
    if max_time:
        start = warmup_time or 0.0
        shares.append((elapsed - start) / max(1e-9, max_time - start))
    return min(max(shares), 1.0)
