"""``TrainConfig``: every knob of the shared trainer, one dataclass, saved in the checkpoint as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dlnlp.errors import UsageError
from dlnlp.settings import DictConfig

OPTIMIZERS = ("adamw", "sgd")
BEST_MODES = ("min", "max")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig(DictConfig):
    """How to train; the model and data are given to :class:`~dlnlp.training.Trainer` separately.

    Stopping: at least one of ``max_steps`` (optimizer steps), ``epochs`` (passes over the training
    batches, may be fractional) and ``max_time`` (wall-clock seconds, evaluation included) must be
    set; training stops at the first one reached, then validates and saves. ``max_time`` is a
    wall-clock budget that holds the final validation and save: training stops when the time left is
    what they are estimated to take (measured on the validations and saves so far, before any from
    the step time and the model's size; at most a quarter of the budget), and every validation stops
    at its deadline (one during training leaves that reserve, the final one the save's time), then
    covers the batches it read and is logged with ``full: false``. A run started by a recipe counts
    its setup (spooling the corpus) in the budget too (``Trainer(started=...)``).

    Schedules: the learning rate rises linearly from ``lr / warmup_steps`` to ``lr`` over
    ``warmup_steps`` steps, then follows ``schedule`` down to ``lr * min_lr_ratio``: ``constant``,
    ``linear`` or ``cosine`` (Loshchilov & Hutter 2017, without restarts). The decay progress is the
    larger of steps done / total steps (when ``max_steps`` or ``epochs`` fix the total) and time
    used / ``max_time``, so a run bounded only by a time budget still anneals to the end of it.

    Weight averaging (``ema_decay`` > 0): the trainer keeps an exponential moving average of the
    weights, ``w_avg <- w_avg + max(1 - decay, 1 / t) (w_t - w_avg)`` after step ``t`` (the first
    steps average everything so far; Polyak & Juditsky 1992), validates and saves the averaged
    weights, and keeps training the raw ones.

    Best checkpoint: ``model.safetensors`` holds the weights of the validation with the best
    ``best_metric`` (a key of the validation result, e.g. ``accuracy`` from a ``val_fn``), the lowest
    when ``best_mode`` is ``min``, the highest when ``max``; the first of equal values is kept.
    Targets equal to ``ignore_index`` (the -100 of ``cross_entropy``: padding, unmasked MLM
    positions) are not counted in the validation average nor in the token counts; None counts all.
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0          # AdamW: decoupled, on weight matrices/embeddings only (not biases)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9              # SGD
    nesterov: bool = False             # SGD
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    clip: float | None = 1.0           # max global gradient L2 norm; None or 0: no clipping
    grad_accum: int = 1                # micro-batches per optimizer step
    ema_decay: float = 0.0             # weight averaging (0: off), see above
    precision: str = "auto"            # auto|fp32|bf16|fp16 (autocast on CUDA; GradScaler for fp16)
    device: str = "auto"
    max_steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None
    eval_interval: int = 500           # optimizer steps between validations (0: only at the end)
    eval_batches: int | None = None    # batches per periodic validation (None: all); the final one is full
    #                                    unless max_time cuts it (see above)
    log_interval: int = 50             # optimizer steps between metrics lines / loss checks
    checkpoint_interval: int | None = None  # steps between checkpoints (None: at each validation)
    seed: int = 0
    best_metric: str = "val_loss"      # the validation result that selects model.safetensors
    best_mode: str = "min"             # min | max: which way best_metric improves
    ignore_index: int | None = -100    # integer targets equal to it are not counted (None: all are)
    compile: bool = False
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, recorded with the checkpoint

    def validate(self) -> None:
        """Raise ValueError naming the option at fault."""
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.clip is not None and self.clip < 0:
            raise ValueError(f"--clip must be >= 0, got {self.clip}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema must be in [0, 1), got {self.ema_decay}")
        if self.grad_accum < 1:
            raise ValueError(f"--grad-accum must be >= 1, got {self.grad_accum}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"--epochs must be > 0, got {self.epochs}")
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(f"--max-time must be > 0 seconds, got {self.max_time}")
        if self.max_steps is None and self.epochs is None and self.max_time is None:
            raise ValueError("give at least one of --max-steps, --epochs or --max-time")
        if self.eval_interval < 0:
            raise ValueError(f"--eval-interval must be >= 0, got {self.eval_interval}")
        if self.log_interval < 1:
            raise ValueError(f"--log-interval must be >= 1, got {self.log_interval}")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ValueError(f"--eval-batches must be >= 1, got {self.eval_batches}")
        if self.checkpoint_interval is not None and self.checkpoint_interval < 1:
            raise ValueError(f"--checkpoint-interval must be >= 1, got {self.checkpoint_interval}")
        for name, beta in zip(("beta1", "--beta2"), self.betas, strict=True):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not isinstance(self.best_metric, str) or not self.best_metric:
            raise ValueError(f"best_metric must name a validation result, got {self.best_metric!r}")
        if self.best_mode not in BEST_MODES:
            raise ValueError(f"best_mode must be one of {', '.join(BEST_MODES)}, got {self.best_mode!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        config = super().from_dict(data)
        config.betas = tuple(config.betas)
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
