"""The trainer loop shared by every Torch model in dlnlp. See the package docstring for how to plug in."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlnlp.errors import DlnlpError
from dlnlp.io.modeldir import METRICS_NAME, WEIGHTS_NAME, MetricsLog, save_weights
from dlnlp.kernels.device import autocast, resolve_device, resolve_precision, seed_everything
from dlnlp.progress import Progress, log
from dlnlp.training import checkpoint as ckpt
from dlnlp.training.config import TrainConfig
from dlnlp.training.schedule import decay_progress, lr_factor

Batch = Any
State = Any
LossFn = Callable[[nn.Module, Batch, State], tuple[torch.Tensor, State]]

# With --max-time, a validation during training may run until the time is up, and the one after
# training for the time left or this share of --max-time (at least VALIDATION_MIN_SECONDS); then it
# stops after the batch in progress, and its loss covers the batches read (``full: false`` in
# metrics.jsonl).
VALIDATION_TIME_SHARE = 0.1
VALIDATION_MIN_SECONDS = 5.0


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :meth:`Trainer.fit` after Ctrl-C or SIGTERM, once the checkpoint is saved (exit 130)."""


class NonFiniteLoss(DlnlpError):
    """The training or validation loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    steps: int
    epochs: float
    tokens: int
    elapsed: float
    stopped_by: str                # max_steps | epochs | max_time
    final_val_loss: float | None
    best_val_loss: float | None
    last_train_loss: float | None
    final_val_full: bool | None = None  # False: the last validation was cut short (by --max-time)


# -- batch sources ----------------------------------------------------------------------------------

class IterableSource:
    """Adapts any re-iterable of batches (a list, a DataLoader) to the batch-source protocol.

    Each pass re-iterates it (one epoch); resuming skips the batches already used in the epoch, which
    reproduces the run exactly when the iteration order is deterministic.
    """

    stateful = False

    def __init__(self, iterable: Iterable[Batch]):
        self.iterable = iterable
        self.epoch = 0
        self.position = 0
        self._iterator: Iterator[Batch] | None = None
        try:
            self.batches_per_epoch: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.batches_per_epoch = None

    def next_batch(self) -> tuple[Batch, bool]:
        if self._iterator is None:
            self._iterator = iter(self.iterable)
            for _ in range(self.position):
                next(self._iterator)
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.position = 0
            self._iterator = iter(self.iterable)
            try:
                batch = next(self._iterator)
            except StopIteration:
                raise DlnlpError("the training data yields no batch") from None
        self.position += 1
        return batch, False

    @property
    def epochs_done(self) -> float:
        if self.batches_per_epoch:
            return self.epoch + self.position / self.batches_per_epoch
        return float(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iterator = None


def _as_source(data: Any) -> Any:
    return data if hasattr(data, "next_batch") else IterableSource(data)


# -- helpers --------------------------------------------------------------------------------------

def to_device(batch: Batch, device: torch.device) -> Batch:
    non_blocking = device.type == "cuda"
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary (truncated BPTT): values are kept, history dropped."""
    if state is None:
        return None
    if torch.is_tensor(state):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state


def _targets(batch: Batch) -> torch.Tensor | None:
    if torch.is_tensor(batch):
        return batch
    if isinstance(batch, (tuple, list)) and batch and torch.is_tensor(batch[-1]):
        return batch[-1]
    if isinstance(batch, dict):
        for key in ("labels", "targets", "target", "y"):
            if key in batch and torch.is_tensor(batch[key]):
                return batch[key]
    return None


def _inputs(batch: Batch) -> torch.Tensor | None:
    if torch.is_tensor(batch):
        return batch
    if isinstance(batch, (tuple, list)) and batch and torch.is_tensor(batch[0]):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("input_ids", "inputs", "x"):
            if key in batch and torch.is_tensor(batch[key]):
                return batch[key]
    return None


def default_loss_fn(model: nn.Module, batch: Batch, state: State) -> tuple[torch.Tensor, State]:
    """``model(*batch, state=state) -> (loss, state)`` for stateful models, else ``model(*batch)``.

    A non-stateful model may return the loss tensor, a dict with ``"loss"`` or an object with ``.loss``
    (HF style). A dict batch is passed as keyword arguments.
    """
    stateful = getattr(getattr(model, "_orig_mod", model), "stateful", False)
    if isinstance(batch, dict):
        args, kwargs = (), dict(batch)
    elif torch.is_tensor(batch):
        args, kwargs = (batch,), {}
    else:
        args, kwargs = tuple(batch), {}
    if stateful:
        loss, state = model(*args, state=state, **kwargs)
        return loss, state
    out = model(*args, **kwargs)
    if isinstance(out, dict):
        out = out["loss"]
    elif not torch.is_tensor(out) and hasattr(out, "loss"):
        out = out.loss
    return out, None


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD with momentum; weight decay on matrices and embeddings only.

    Biases and normalization gains (1-D parameters) are not decayed (as in nanoGPT and BERT).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    seen: set[int] = set()
    unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]  # tied weights once
    decay = [p for p in unique if p.dim() >= 2]
    no_decay = [p for p in unique if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        extra = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, **extra)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


# -- the trainer ----------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` on ``train_data``; validate on ``val_data``; checkpoint into ``out_dir``.

    Parameters: ``model`` (an ``nn.Module``; moved to the configured device), ``config``
    (:class:`TrainConfig`), ``train_data`` (a batch source with ``next_batch()``, such as
    :class:`~dlnlp.training.data.StreamBatches`, or any re-iterable of batches), ``val_data`` (an
    object with ``iter_eval()`` or a re-iterable of batches; optional), ``out_dir`` (the model
    directory: ``model.safetensors`` holds the best weights by validation loss, ``checkpoint/`` the
    last full state, ``metrics.jsonl`` the log), ``loss_fn(model, batch, state) -> (loss, state)``
    (default :func:`default_loss_fn`), ``val_fn(model) -> {"val_loss": ...}`` to replace the built-in
    validation, ``resume`` to continue from ``out_dir/checkpoint``, ``on_save() -> Path`` called after
    each checkpoint is saved, returning the directory to write into from then on (a
    :class:`~dlnlp.io.modeldir.RunOutput` swaps its staging directory in at the first one).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Any, val_data: Any = None, *,
                 out_dir: str | Path | None = None, loss_fn: LossFn | None = None,
                 val_fn: Callable[[nn.Module], dict[str, float]] | None = None, resume: bool = False,
                 on_step: Callable[[Trainer], None] | None = None, on_save: Callable[[], Path] | None = None):
        config.validate()
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)
        self.train_data = _as_source(train_data)
        self.val_data = val_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.loss_fn = loss_fn or default_loss_fn
        self.val_fn = val_fn
        self.resume = resume
        self.on_step = on_step
        self.on_save = on_save
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16 and self.device.type == "cuda")
        self.step = 0
        self.tokens = 0
        self.elapsed_before = 0.0
        self.warmup_time: float | None = None
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.last_val_full: bool | None = None
        self.last_train_loss: float | None = None
        self.state: State = None
        self.stop_requested: str | None = None
        self._good_checkpoint_step: int | None = None
        self._start = 0.0
        # The averaged weights (config.ema_decay), one tensor per parameter of the model.
        self.averaged: list[torch.Tensor] | None = None

    # -- public API -------------------------------------------------------------------------------

    def request_stop(self, reason: str = "interrupt") -> None:
        """Ask the loop to stop after the current optimizer step (signal handlers call this)."""
        self.stop_requested = reason

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

    def total_steps(self) -> int | None:
        """Optimizer steps the run will take when ``max_steps`` or ``epochs`` fix it (else None)."""
        totals = []
        if self.config.max_steps:
            totals.append(self.config.max_steps)
        per_epoch = getattr(self.train_data, "batches_per_epoch", None)
        if self.config.epochs and per_epoch:
            totals.append(max(1, math.ceil(self.config.epochs * per_epoch / self.config.grad_accum)))
        return min(totals) if totals else None

    def fit(self) -> TrainResult:
        """Train until a stop criterion, validate, save; returns a :class:`TrainResult`."""
        cfg = self.config
        if self.resume:
            self._load_checkpoint()
        else:
            seed_everything(cfg.seed)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.resume:
                _truncate_metrics(self.out_dir / METRICS_NAME, self.step)
        metrics = MetricsLog(self.out_dir, append=self.resume) if self.out_dir is not None else None
        if cfg.ema_decay and self.averaged is None:
            self.averaged = [p.detach().clone() for p in self.model.parameters()]
        train_model = torch.compile(self.model) if cfg.compile else self.model
        total_steps = self.total_steps()
        self.model.train()
        handlers = self._install_signal_handlers()
        stopped_by = "max_steps"
        by_time = total_steps is None and cfg.max_time is not None
        progress = Progress("training", total=cfg.max_time if by_time else total_steps,
                            unit="s" if by_time else "step", rate_unit="tok", quiet=cfg.quiet)
        running = torch.zeros((), device=self.device)
        running_n = 0
        log_tokens, log_time = 0, time.perf_counter()
        check_every_step = self.device.type != "cuda"  # .item() is free off-GPU; on CUDA it syncs
        self._start = time.perf_counter()
        last_tick = self._start
        try:
            with progress:
                if self.step:  # resumed: the bar starts where the run was
                    progress.update(self.elapsed_before if by_time else self.step, rate=0)
                while True:
                    reason = self._stop_reason(total_steps)
                    if reason:
                        stopped_by = reason
                        break
                    self._set_lr(total_steps)
                    step_tokens = 0
                    for _ in range(cfg.grad_accum):
                        batch, reset = self.train_data.next_batch()
                        if reset:
                            self.state = None
                        batch = to_device(batch, self.device)
                        with autocast(self.device, self.dtype):
                            loss, state = self.loss_fn(train_model, batch, self.state)
                        self.state = detach_state(state)
                        self.scaler.scale(loss / cfg.grad_accum).backward()
                        running += loss.detach().float()
                        running_n += 1
                        inputs = _inputs(batch)
                        step_tokens += inputs.numel() if inputs is not None else 0
                    if cfg.clip:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip, foreach=True)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    if self.averaged is not None:
                        self._update_average()
                    self.tokens += step_tokens
                    log_tokens += step_tokens
                    if cfg.warmup_steps and self.step == cfg.warmup_steps:
                        self.warmup_time = self.elapsed
                    if check_every_step:
                        self._check_finite(loss.detach().float().item(), "training")
                    now = time.perf_counter()
                    if by_time:
                        progress.update(now - last_tick, rate=step_tokens)
                    else:
                        progress.update(1, rate=step_tokens)
                    last_tick = now
                    if self.step % cfg.log_interval == 0:
                        mean = (running / max(running_n, 1)).item()
                        self._check_finite(mean, "training")
                        self.last_train_loss = mean
                        rate = log_tokens / max(now - log_time, 1e-9)
                        progress.fields.update(loss=round(mean, 4), lr=float(f"{self.current_lr:.3g}"))
                        if metrics:
                            metrics.write(step=self.step, epoch=round(self.train_data.epochs_done, 4), loss=mean,
                                          lr=self.current_lr, tokens=self.tokens, tokens_per_s=round(rate, 1),
                                          elapsed=round(self.elapsed, 3))
                        running.zero_()
                        running_n = 0
                        log_tokens, log_time = 0, now
                    if self.on_step is not None:
                        self.on_step(self)
                    if self.stop_requested:
                        continue
                    if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self._stop_reason(total_steps) is None:
                        self._validate(metrics, cfg.eval_batches, progress)
                        if cfg.checkpoint_interval is None:
                            self._save(running, running_n)
                    if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                        self._save(running, running_n)
            if stopped_by == "interrupt":
                self._save(running, running_n)
                where = f"; resume with --resume --out {self.out_dir}" if self.out_dir else ""
                log(f"interrupted at step {self.step}: checkpoint saved{where}")
                raise TrainingInterrupted()
            if running_n:
                self.last_train_loss = (running / running_n).item()
                self._check_finite(self.last_train_loss, "training")
            self._validate(metrics, None, None)
            self._save(running, running_n)
        finally:
            self._restore_signal_handlers(handlers)
            if metrics:
                metrics.close()
        return TrainResult(steps=self.step, epochs=self.train_data.epochs_done, tokens=self.tokens,
                           elapsed=self.elapsed, stopped_by=stopped_by, final_val_loss=self.last_val_loss,
                           best_val_loss=self.best_val_loss, last_train_loss=self.last_train_loss,
                           final_val_full=self.last_val_full)

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None, deadline: float | None = None) -> dict[str, float]:
        """Mean loss per target token over the validation data (all of it unless ``max_batches``, or
        the batches read until ``time.perf_counter()`` passes ``deadline``)."""
        if self.val_fn is not None:
            return self.val_fn(self.model)
        return evaluate_loss(self.model, self.val_data, self.device, self.dtype, self.loss_fn, max_batches,
                             deadline=deadline)

    @property
    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # -- internals --------------------------------------------------------------------------------

    def _stop_reason(self, total_steps: int | None) -> str | None:
        cfg = self.config
        if self.stop_requested:
            return self.stop_requested
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return "max_steps"
        if cfg.epochs is not None and total_steps is not None and self.step >= total_steps:
            return "epochs"
        if cfg.epochs is not None and self.train_data.epochs_done >= cfg.epochs:
            return "epochs"
        if cfg.max_time is not None and self.elapsed >= cfg.max_time:
            return "max_time"
        return None

    @torch.no_grad()
    def _update_average(self) -> None:
        weight = max(1.0 - self.config.ema_decay, 1.0 / self.step)
        for average, param in zip(self.averaged, self.model.parameters(), strict=True):
            average.lerp_(param, weight)

    @contextmanager
    def averaged_weights(self) -> Iterator[nn.Module]:
        """The model with the averaged weights in place for the duration (the model as is without
        weight averaging); the raw weights are put back afterwards."""
        if self.averaged is None:
            yield self.model
            return
        params = list(self.model.parameters())
        with torch.no_grad():
            raw = [p.detach().clone() for p in params]
            for param, average in zip(params, self.averaged, strict=True):
                param.copy_(average)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for param, value in zip(params, raw, strict=True):
                    param.copy_(value)

    def _set_lr(self, total_steps: int | None) -> None:
        cfg = self.config
        progress = decay_progress(self.step, cfg.warmup_steps, total_steps, self.elapsed, cfg.max_time,
                                  self.warmup_time)
        lr = cfg.lr * lr_factor(cfg.schedule, self.step, cfg.warmup_steps, progress, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            kept = (f"the last good checkpoint (step {self._good_checkpoint_step}) is kept in {self.out_dir}"
                    if self._good_checkpoint_step is not None else "no checkpoint was saved")
            raise NonFiniteLoss(f"the {what} loss became {value} at step {self.step}; stopped, {kept} "
                                "(try a lower --lr, --clip or --precision fp32)")

    def _validate(self, metrics: MetricsLog | None, max_batches: int | None, progress: Progress | None) -> None:
        if self.val_data is None and self.val_fn is None:
            return
        with self.averaged_weights():
            result = dict(self.evaluate(max_batches, deadline=self._validation_deadline()))
            cut = bool(result.pop("cut_short", False))
            full = max_batches is None and not cut
            self.last_val_full = full
            if cut:
                self._log_cut_validation(result)
            val_loss = float(result["val_loss"])
            self._check_finite(val_loss, "validation")
            self.last_val_loss = val_loss
            improved = self.best_val_loss is None or val_loss < self.best_val_loss
            if improved:
                self.best_val_loss = val_loss
                if self.out_dir is not None:
                    save_weights(self.model.state_dict(), self.out_dir / WEIGHTS_NAME)
        if metrics:
            metrics.write(step=self.step, val_loss=val_loss, val_ppl=math.exp(min(val_loss, 700)),
                          best=improved, full=full, elapsed=round(self.elapsed, 3),
                          **{k: v for k, v in result.items() if k != "val_loss"})
        if progress is not None:
            progress.fields["val"] = round(val_loss, 4)

    def _validation_deadline(self) -> float | None:
        """When a validation must stop (``time.perf_counter()`` value), None without --max-time.

        One during training (no stop reason yet) may use the time left; the final one (training has
        stopped) gets the time left or its own share of --max-time, whichever is more.
        """
        limit = self.config.max_time
        if limit is None:
            return None
        left = limit - self.elapsed
        if self._stop_reason(self.total_steps()) is not None:
            left = max(left, VALIDATION_TIME_SHARE * limit, VALIDATION_MIN_SECONDS)
        return time.perf_counter() + left

    def _log_cut_validation(self, result: dict[str, Any]) -> None:
        tokens = getattr(self.val_data, "tokens", None)
        of = f" of {len(tokens) - 1:,}" if tokens is not None and hasattr(tokens, "__len__") else ""
        log(f"validation stopped after {result.get('val_batches')} batches ({int(result['val_tokens']):,}{of} "
            f"tokens) to stay within --max-time {self.config.max_time:g}; its loss covers that part",
            quiet=self.config.quiet)

    def _save(self, running: torch.Tensor, running_n: int) -> None:
        if self.out_dir is None:
            return
        if running_n:
            self._check_finite((running / running_n).item(), "training")
        model_state = self.model.state_dict()
        optim_meta, tensors = ckpt.flatten_optimizer(self.optimizer.state_dict())
        rng_meta, rng_tensors = ckpt.rng_state()
        tensors.update(rng_tensors)
        structure, state_tensors = ckpt.flatten_state(self.state)
        tensors.update({f"recurrent/{k}": v for k, v in state_tensors.items()})
        if self.averaged is not None:
            tensors.update({f"averaged/{i}": t for i, t in enumerate(self.averaged)})
        meta = {
            "step": self.step, "tokens": self.tokens, "elapsed": self.elapsed, "warmup_time": self.warmup_time,
            "best_val_loss": self.best_val_loss, "last_val_loss": self.last_val_loss,
            "data": self.train_data.state_dict(), "optimizer": optim_meta, "rng": rng_meta,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "recurrent": structure, "config": self.config.to_dict(),
        }
        ckpt.save_checkpoint(self.out_dir, model_state, meta, tensors)
        if self.val_data is None and self.val_fn is None:
            with self.averaged_weights():
                save_weights(self.model.state_dict(), self.out_dir / WEIGHTS_NAME)
        self._good_checkpoint_step = self.step
        if self.on_save is not None:
            self.out_dir = Path(self.on_save())

    def _load_checkpoint(self) -> None:
        if self.out_dir is None:
            raise DlnlpError("resume needs an output directory")
        model_state, meta, tensors = ckpt.load_checkpoint(self.out_dir, device=self.device)
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(ckpt.unflatten_optimizer(meta["optimizer"], tensors))
        if meta.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(meta["scaler"])
        self.train_data.load_state_dict(meta["data"])
        self.step = int(meta["step"])
        self.tokens = int(meta["tokens"])
        self.elapsed_before = float(meta["elapsed"])
        self.warmup_time = meta.get("warmup_time")
        self.best_val_loss = meta.get("best_val_loss")
        self.last_val_loss = meta.get("last_val_loss")
        recurrent = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("recurrent/")}
        self.state = ckpt.unflatten_state(meta.get("recurrent"), recurrent, self.device)
        averaged = sorted((int(k.split("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("averaged/"))
        if averaged:
            self.averaged = [v.to(self.device, copy=True) for _, v in averaged]
        ckpt.set_rng_state(meta["rng"], tensors)
        self._good_checkpoint_step = self.step
        log(f"resuming from step {self.step} ({self.elapsed_before:.0f} s trained)", quiet=self.config.quiet)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested == "interrupt":  # second Ctrl-C: stop now, without saving
                raise KeyboardInterrupt
            self.request_stop("interrupt")
            log("stopping after this step and saving a checkpoint (press Ctrl-C again to abort)")

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint (a crash after it), so a resumed log has each step once."""
    if not path.is_file():
        return
    import json

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) > step:
                continue
        except json.JSONDecodeError:  # a line cut short by the crash
            continue
        kept.append(line)
    if len(kept) != len(lines):
        path.write_text("".join(kept), encoding="utf-8")


@torch.no_grad()
def evaluate_loss(model: nn.Module, data: Any, device: torch.device, dtype: torch.dtype | None = None,
                  loss_fn: LossFn | None = None, max_batches: int | None = None, *,
                  deadline: float | None = None) -> dict[str, Any]:
    """Token-weighted mean loss over ``data`` (``iter_eval()`` or a re-iterable of batches).

    Recurrent state is carried from batch to batch (the data is read as continuous streams) and
    reset when a batch says so. With ``deadline`` (a ``time.perf_counter()`` value) it stops after
    the batch during which the deadline passes. Returns ``{"val_loss", "val_tokens", "val_batches"}``,
    and ``"cut_short": True`` when the deadline stopped it before the end of the data.
    """
    loss_fn = loss_fn or default_loss_fn
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    state = None
    read = 0
    cut = False
    batches = data.iter_eval() if hasattr(data, "iter_eval") else iter(data)
    try:
        for i, item in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if deadline is not None and read and time.perf_counter() >= deadline:
                cut = True
                break
            batch, reset = item if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bool) \
                else (item, False)
            if reset:
                state = None
            batch = to_device(batch, device)
            with autocast(device, dtype):
                loss, state = loss_fn(model, batch, state)
            targets = _targets(batch)
            weight = targets.numel() if targets is not None else 1
            total += loss.double() * weight
            count += weight
            read += 1
            if deadline is not None and device.type == "cuda" and read % 16 == 0:
                torch.cuda.synchronize(device)  # the clock must see the work queued so far
    finally:
        model.train(was_training)
    if count == 0:
        raise DlnlpError("the validation data is empty")
    result: dict[str, Any] = {"val_loss": (total / count).item(), "val_tokens": count, "val_batches": read}
    if cut:
        result["cut_short"] = True
    return result
