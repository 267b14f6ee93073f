"""The trainer loop shared by every Torch model in dlnlp. See the package docstring for how to plug in."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from dlnlp.training import distributed
from dlnlp.training.config import TrainConfig
from dlnlp.training.schedule import decay_progress, lr_factor

Batch = Any
State = Any
LossFn = Callable[[nn.Module, Batch, State], tuple[torch.Tensor, State]]

# --max-time is a wall-clock budget that the final validation and save fit in: training stops when
# the time left is what they are estimated to take (from the validations and saves measured so far;
# before any, from the training step time and the model's size), but the reserve is at most this
# share of the budget. A validation stops after the batch in progress when its deadline passes (its
# loss then covers the batches read: ``full: false`` in metrics.jsonl).
RESERVE_MAX_SHARE = 0.25
# Before a validation was measured, a validation batch is taken to cost this share of a training
# step (forward only, no backward pass nor optimizer update); before a save was measured, the
# checkpoint (weights, two optimizer moments, and the best weights) is written at SAVE_BYTES_PER_S.
EVAL_STEP_SHARE = 0.5
SAVE_BYTES_PER_S = 100e6


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
    best_value: float | None = None     # config.best_metric of the weights kept in model.safetensors


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

    def shard(self, rank: int, world: int) -> IterableSource:
        """Under torchrun: batches ``rank``, ``rank + world``, ... (the same count in every process)."""
        return IterableSource(distributed.Strided(self.iterable, rank, world))


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
        for key in ("labels", "targets", "target", "y", "mlm_labels"):  # mlm_labels: BERT's masked-LM targets
            if key in batch and torch.is_tensor(batch[key]):
                return batch[key]
    return None


def _count_targets(batch: Batch, ignore_index: int | None) -> int | torch.Tensor | None:
    """The targets a mean loss averages over: integer targets equal to ``ignore_index`` are left out
    (``cross_entropy``'s mean skips them). A tensor for integer targets, so that counting does not
    wait for the device; None when the batch has no targets."""
    targets = _targets(batch)
    if targets is None:
        return None
    if ignore_index is None or targets.is_floating_point() or targets.dtype == torch.bool:
        return targets.numel()
    return (targets != ignore_index).sum()


def _count_tokens(batch: Batch, ignore_index: int | None) -> int | torch.Tensor:
    """Tokens a training batch counts for (``tokens``, tokens/s): with a target per input token (LM,
    MLM, tagging) the targets not ignored, else every input token (a label per sequence)."""
    inputs, targets = _inputs(batch), _targets(batch)
    if inputs is not None and targets is not None and targets.shape == inputs.shape:
        return _count_targets(batch, ignore_index)
    return inputs.numel() if inputs is not None else 0


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
    stateful = getattr(unwrap_model(model), "stateful", False)
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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model itself inside DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, nn.parallel.DistributedDataParallel):
            inner = model.module
        if inner is None:
            return model
        model = inner


def exported_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """What ``model.safetensors`` keeps of ``model``: its ``exported_state_dict()`` when it has one (a
    pretraining wrapper whose product is one of its parts, e.g. ELECTRA's discriminator), else its
    whole state; the training checkpoint always holds the whole state."""
    export = getattr(model, "exported_state_dict", None)
    return export() if callable(export) else model.state_dict()


ParamGroups = Sequence[Mapping[str, Any]]


def _split_decay(params: list[nn.Parameter], weight_decay: float, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Matrices and embeddings decayed, biases and normalization gains (1-D) not (nanoGPT, BERT)."""
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **extra},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


def build_param_groups(model: nn.Module, config: TrainConfig,
                       param_groups: ParamGroups | None = None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups; trainable parameters only (frozen ones are left out).

    Without ``param_groups``: the decayed matrices and the undecayed 1-D parameters, at ``config.lr``.
    ``param_groups`` (from the recipe) is a list of dicts ``{"params": [...], "lr": rate}`` or
    ``{"params": [...], "lr_scale": factor}`` (rate = factor x ``config.lr``), optionally with
    ``"weight_decay"`` (for every parameter of the group; without it the group is split into decayed
    matrices and undecayed 1-D parameters as above) and any other optimizer option. Each group's
    ``"lr"`` is its base rate, which the schedule scales. Trainable parameters in no group train in
    the default groups at ``config.lr``. A parameter may be in one group only.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    seen: set[int] = set()
    unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]  # tied weights once
    if not param_groups:
        return _split_decay(unique, config.weight_decay, {})
    trainable = {id(p) for p in unique}
    assigned: set[int] = set()
    groups: list[dict[str, Any]] = []
    for i, spec in enumerate(param_groups):
        spec = dict(spec)
        if "lr" in spec and "lr_scale" in spec:
            raise ValueError(f"parameter group {i}: give lr or lr_scale, not both")
        scale = spec.pop("lr_scale", None)
        lr = spec.pop("lr", None)
        if lr is None:
            lr = config.lr * (1.0 if scale is None else scale)
        if not lr > 0:
            raise ValueError(f"parameter group {i}: the learning rate must be > 0, got {lr} "
                             "(freeze parameters with requires_grad_(False) instead)")
        chosen: list[nn.Parameter] = []
        mine: set[int] = set()
        for p in spec.pop("params"):
            if not p.requires_grad or id(p) in mine:  # frozen, or a tied weight seen in this group
                continue
            if id(p) not in trainable:
                raise ValueError(f"parameter group {i} holds a parameter that is not the model's")
            if id(p) in assigned:
                raise ValueError(f"parameter group {i} holds a parameter of an earlier group")
            mine.add(id(p))
            chosen.append(p)
        assigned |= mine
        weight_decay = spec.pop("weight_decay", None)
        if weight_decay is None:
            groups += _split_decay(chosen, config.weight_decay, {"lr": lr, **spec})
        elif chosen:
            groups.append({"params": chosen, "weight_decay": weight_decay, "lr": lr, **spec})
    rest = [p for p in unique if id(p) not in assigned]
    return groups + _split_decay(rest, config.weight_decay, {"lr": config.lr})


def layer_decay_groups(model: nn.Module, depths: Mapping[str, int], decay: float,
                       top: int | None = None) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; Sun et al. 2019 for BERT).

    ``depths`` maps a parameter-name prefix (a module path such as ``"embed"`` or
    ``"blocks.3"``) to its depth: the parameters under it train at ``lr * decay ** (top - depth)``,
    ``top`` being the largest depth + 1 unless given. The longest matching prefix wins; parameters
    under no prefix (the task head) are left to the default groups, at ``lr``. Returns groups for
    :func:`build_param_groups` (``Trainer(param_groups=...)``).
    """
    if not 0 < decay <= 1:
        raise ValueError(f"layer decay must be in (0, 1], got {decay}")
    if not depths:
        return []
    top = max(depths.values()) + 1 if top is None else top
    prefixes = sorted(depths, key=len, reverse=True)
    by_depth: dict[int, list[nn.Parameter]] = {}
    used: set[str] = set()
    for name, param in model.named_parameters():
        for prefix in prefixes:
            stem = prefix.rstrip(".")
            if name == stem or name.startswith(stem + "."):  # "blocks.1" is not "blocks.10"
                by_depth.setdefault(depths[prefix], []).append(param)
                used.add(prefix)
                break
    unused = [p for p in depths if p not in used]
    if unused:
        raise ValueError(f"layer decay: no parameter is named under {', '.join(map(repr, unused))}")
    return [{"params": by_depth[d], "lr_scale": decay ** (top - d)} for d in sorted(by_depth)]


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device,
                    param_groups: ParamGroups | None = None) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or SGD with momentum over :func:`build_param_groups`: weight decay on
    matrices and embeddings only, each group at its own base learning rate."""
    groups = build_param_groups(model, config, param_groups)
    if config.optimizer == "adamw":
        extra = {"fused": True} if device.type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, **extra)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _prepare_aux(modules: Mapping[str, nn.Module], model: nn.Module, device: torch.device) -> dict[str, nn.Module]:
    """Auxiliary modules (a teacher): on the device (in place), in eval mode, without gradients."""
    owned = {id(p) for p in model.parameters()}
    prepared = {}
    for name, module in modules.items():
        if any(id(p) in owned for p in module.parameters()):
            # freezing it would freeze the model's own weights
            raise ValueError(f"aux module {name!r} shares parameters with the model")
        prepared[name] = module.to(device).eval().requires_grad_(False)
    return prepared


# -- the trainer ----------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` on ``train_data``; validate on ``val_data``; checkpoint into ``out_dir``.

    Parameters: ``model`` (an ``nn.Module``; moved to the configured device), ``config``
    (:class:`TrainConfig`), ``train_data`` (a batch source with ``next_batch()``, such as
    :class:`~dlnlp.training.data.StreamBatches`, or any re-iterable of batches), ``val_data`` (an
    object with ``iter_eval()`` or a re-iterable of batches; optional), ``out_dir`` (the model
    directory: ``model.safetensors`` holds the best weights by ``config.best_metric``, ``checkpoint/`` the
    last full state, ``metrics.jsonl`` the log), ``loss_fn(model, batch, state) -> (loss, state)``
    (default :func:`default_loss_fn`), ``val_fn(model) -> {"val_loss": ...}`` to replace the built-in
    validation, ``resume`` to continue from ``out_dir/checkpoint``, ``on_save() -> Path`` called after
    each checkpoint is saved, returning the directory to write into from then on (a
    :class:`~dlnlp.io.modeldir.RunOutput` swaps its staging directory in at the first one).

    Hooks for transfer learning: ``param_groups`` (see :func:`build_param_groups` and
    :func:`layer_decay_groups`): groups with their own base learning rate, each scaled by the same
    schedule (a head at 10x the backbone's rate stays at 10x); frozen parameters
    (``requires_grad=False``) are left out of the optimizer. ``aux_modules`` (``{"teacher": net}``):
    modules the loss needs besides the model, moved to the device in place, put in eval mode with
    ``requires_grad`` off, kept out of the optimizer and the checkpoint, and available as
    ``trainer.aux[name]``; since the move is in place, a ``loss_fn`` closure over the module works
    too (distillation: ``loss_fn = lambda model, batch, state: (kd_loss(model, teacher, batch),
    None)``). ``config.best_metric``/``best_mode`` choose the validation result that selects
    ``model.safetensors`` (``val_fn`` may return ``{"val_loss": ..., "accuracy": ...}``);
    ``config.ignore_index`` leaves ignored targets out of the validation average and token counts.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Any, val_data: Any = None, *,
                 out_dir: str | Path | None = None, loss_fn: LossFn | None = None,
                 val_fn: Callable[[nn.Module], dict[str, float]] | None = None, resume: bool = False,
                 on_step: Callable[[Trainer], None] | None = None, on_save: Callable[[], Path] | None = None,
                 param_groups: ParamGroups | None = None, aux_modules: Mapping[str, nn.Module] | None = None,
                 started: float | None = None):
        config.validate()
        # When the run began (a time.perf_counter() value): --max-time counts from it, so the
        # recipe's setup (spooling the corpus, building the model) is inside the budget.
        self.started = started
        self.config = config
        # Under torchrun: this process's rank and device (see training/distributed.py); else a no-op.
        self.dist = distributed.context(config.device)
        self.device = self.dist.device or resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)
        self.aux = _prepare_aux(aux_modules or {}, self.model, self.device)
        self.train_data = self.dist.shard(_as_source(train_data))
        self.val_data = self.dist.shard_eval(val_data)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.loss_fn = loss_fn or default_loss_fn
        self.val_fn = val_fn
        self.resume = resume
        self.on_step = on_step
        self.on_save = on_save
        self.optimizer = build_optimizer(self.model, config, self.device, param_groups)
        # Each group's base rate, which _set_lr scales by the schedule (kept here, not in the group,
        # so the checkpoint's optimizer state is the same as without groups).
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.lr_scale = 1.0  # the schedule's factor of the last step
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16 and self.device.type == "cuda")
        self.step = 0
        self.tokens = 0
        self.elapsed_before = 0.0
        self.warmup_time: float | None = None
        self.best_val_loss: float | None = None
        self.best_value: float | None = None  # config.best_metric of the weights kept as best
        self.last_val_loss: float | None = None
        self.last_val_full: bool | None = None
        self.last_train_loss: float | None = None
        self.state: State = None
        self.stop_requested: str | None = None
        self._good_checkpoint_step: int | None = None
        self._start = 0.0
        # The averaged weights (config.ema_decay), one tensor per parameter of the model.
        self.averaged: list[torch.Tensor] | None = None
        # On CUDA the target counts stay on the device until the next log line (no sync per step):
        # those not yet read, and those read but not yet logged.
        self.defer_counts = self.device.type == "cuda"
        self._pending_tokens: torch.Tensor | None = None
        self._late_tokens = 0
        if self.dist.enabled:
            batch = getattr(self.train_data, "batch_size", None)
            per = f"--batch-size {batch} per process, global batch {batch * self.dist.world_size * config.grad_accum}" \
                if batch else f"global batch: {self.dist.world_size * config.grad_accum} batches"
            log(f"data parallel over {self.dist.world_size} processes ({self.dist.backend}, {self.device.type}): "
                f"{per}{f' (x --grad-accum {config.grad_accum})' if config.grad_accum > 1 and batch else ''} "
                "per step", quiet=config.quiet)
        # Measured costs that size the --max-time reserve (seconds): a training step (moving
        # average), a validation batch, a checkpoint save.
        self._step_seconds: float | None = None
        self._val_batch_seconds: float | None = None
        self._save_seconds: float | None = None

    @property
    def _writes(self) -> bool:
        """Whether this process writes the run's files (rank 0 alone, under torchrun)."""
        return self.out_dir is not None and self.dist.is_main

    # -- public API -------------------------------------------------------------------------------

    def request_stop(self, reason: str = "interrupt") -> None:
        """Ask the loop to stop after the current optimizer step (signal handlers call this)."""
        self.stop_requested = reason

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

    def budget_used(self) -> float:
        """Seconds of ``--max-time`` used: the training time so far plus this process's setup before it."""
        setup = self._start - self.started if self.started is not None and self._start else 0.0
        return self.elapsed + max(setup, 0.0)

    def reserve_seconds(self) -> float:
        """The time kept for the final validation and save (and one more step) out of ``--max-time``."""
        limit = self.config.max_time
        if limit is None:
            return 0.0
        step = self._step_seconds or 0.0
        if self.val_data is None and self.val_fn is None:
            validation = 0.0
        else:
            batches = _batch_count(self.val_data)
            per_batch = self._val_batch_seconds
            if per_batch is None:
                per_batch = EVAL_STEP_SHARE * step / self.config.grad_accum
            validation = per_batch * (batches if batches is not None else 100)
        save = self._save_seconds
        if save is None:
            size = sum(p.numel() * p.element_size() for p in self.model.parameters())
            save = 4 * size / SAVE_BYTES_PER_S + 0.1
        # a fifth more than measured: validation batches and disks vary
        return min(1.2 * (validation + save) + step, RESERVE_MAX_SHARE * limit)

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
            seed_everything(cfg.seed + self.dist.rank)  # each process its own dropout (rank 0: the seed)
        if self._writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.resume:
                _truncate_metrics(self.out_dir / METRICS_NAME, self.step)
        metrics = MetricsLog(self.out_dir, append=self.resume) if self._writes else None
        if cfg.ema_decay and self.averaged is None:
            self.averaged = [p.detach().clone() for p in self.model.parameters()]
        train_model = self.dist.wrap(torch.compile(self.model) if cfg.compile else self.model)
        total_steps = self.total_steps()
        self.model.train()
        for module in self.aux.values():
            module.eval()
        handlers = self._install_signal_handlers()
        stopped_by = "max_steps"
        self._start = time.perf_counter()
        budget = cfg.max_time - self.budget_used() if cfg.max_time is not None else None
        progress = Progress("training", total=total_steps, unit="step", rate_unit="tok", quiet=cfg.quiet,
                            budget=budget)
        running = torch.zeros((), device=self.device)
        running_n = 0
        log_tokens, log_time = 0, time.perf_counter()
        check_every_step = self.device.type != "cuda"  # .item() is free off-GPU; on CUDA it syncs
        # On CUDA the target counts stay on the device until the next log line (no sync per step).
        try:
            with progress:
                if self.step:  # resumed: the bar starts where the run was
                    progress.update(self.step, rate=0)
                while True:
                    reason = self.dist.agree(self._stop_reason(total_steps))
                    if reason:
                        stopped_by = reason
                        break
                    step_began = time.perf_counter()
                    self._set_lr(total_steps)
                    step_tokens = 0
                    for micro in range(cfg.grad_accum):
                        self.dist.set_grad_sync(train_model, micro == cfg.grad_accum - 1)  # DDP's no_sync
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
                        step_tokens = step_tokens + _count_tokens(batch, cfg.ignore_index)
                    if cfg.clip:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip, foreach=True)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.step += 1
                    step_tokens = self.dist.sum(step_tokens)  # every process's tokens
                    if self.averaged is not None:
                        self._update_average()
                    if torch.is_tensor(step_tokens) and self.defer_counts:
                        self._pending_tokens = step_tokens if self._pending_tokens is None \
                            else self._pending_tokens + step_tokens
                        step_tokens = 0
                    else:
                        step_tokens = int(step_tokens)
                        self.tokens += step_tokens
                    log_tokens += step_tokens
                    if cfg.warmup_steps and self.step == cfg.warmup_steps:
                        self.warmup_time = self.elapsed
                    if check_every_step:
                        self._check_finite(loss.detach().float().item(), "training")
                    now = time.perf_counter()
                    took = now - step_began
                    self._step_seconds = took if self._step_seconds is None else 0.8 * self._step_seconds + 0.2 * took
                    progress.update(1, rate=step_tokens)
                    if self.step % cfg.log_interval == 0:
                        self._flush_tokens()
                        if self._late_tokens:
                            log_tokens += self._late_tokens
                            progress.update(0, rate=self._late_tokens)
                            self._late_tokens = 0
                        mean = self.dist.mean(running / max(running_n, 1)).item()
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
                    stopping = self.dist.agree(self._stop_reason(total_steps))
                    if stopping is not None and stopping not in ("max_steps", "epochs", "max_time"):
                        continue  # a requested stop (Ctrl-C, SIGTERM, a hook): straight to the final save
                    if cfg.eval_interval and self.step % cfg.eval_interval == 0 and stopping is None:
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
            self._flush_tokens()
            if running_n:
                self.last_train_loss = self.dist.mean(running / running_n).item()
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
                           final_val_full=self.last_val_full, best_value=self.best_value)

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None, deadline: float | None = None) -> dict[str, float]:
        """Mean loss per target token over the validation data (all of it unless ``max_batches``, or
        the batches read until ``time.perf_counter()`` passes ``deadline``)."""
        if self.val_fn is not None:
            return self.dist.average_metrics(self.val_fn(self.model))
        if max_batches and self.dist.enabled:  # --eval-batches counts the batches of all the processes
            max_batches = -(-max_batches // self.dist.world_size)
        return self.dist.reduce_eval(evaluate_loss(
            self.model, self.val_data, self.device, self.dtype, self.loss_fn, max_batches, deadline=deadline,
            ignore_index=self.config.ignore_index, allow_empty=self.dist.enabled))

    @property
    def current_lr(self) -> float:
        """The rate of a parameter at ``config.lr`` (each group runs at its base rate x the same factor)."""
        return self.config.lr * self.lr_scale

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
        if cfg.max_time is not None and self.budget_used() + self.reserve_seconds() >= cfg.max_time:
            return "max_time"
        return None

    def _flush_tokens(self) -> None:
        """Add the target counts still on the device to ``self.tokens`` (one sync)."""
        if self._pending_tokens is not None:
            count = int(self._pending_tokens.item())
            self._pending_tokens = None
            self.tokens += count
            self._late_tokens += count

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
        self.lr_scale = lr_factor(cfg.schedule, self.step, cfg.warmup_steps, progress, cfg.min_lr_ratio)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.lr_scale

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
            began = time.perf_counter()
            result = dict(self.evaluate(max_batches, deadline=self._validation_deadline()))
            if result.get("val_batches"):
                self._val_batch_seconds = (time.perf_counter() - began) / int(result["val_batches"])
            cut = bool(result.pop("cut_short", False))
            full = max_batches is None and not cut
            self.last_val_full = full
            if cut:
                self._log_cut_validation(result)
            val_loss = float(result["val_loss"])
            self._check_finite(val_loss, "validation")
            self.last_val_loss = val_loss
            if self.best_val_loss is None or val_loss < self.best_val_loss:
                self.best_val_loss = val_loss
            value = self._best_metric_value(result)
            improved = self.best_value is None or (
                value < self.best_value if self.config.best_mode == "min" else value > self.best_value)
            if improved:
                self.best_value = value
                if self._writes:
                    save_weights(exported_weights(self.model), self.out_dir / WEIGHTS_NAME)
        if metrics:
            metrics.write(step=self.step, val_loss=val_loss, val_ppl=math.exp(min(val_loss, 700)),
                          best=improved, full=full, elapsed=round(self.elapsed, 3),
                          **{k: v for k, v in result.items() if k != "val_loss"})
        if progress is not None:
            progress.fields["val"] = round(val_loss, 4)

    def _best_metric_value(self, result: dict[str, Any]) -> float:
        name = self.config.best_metric
        if name not in result:
            raise DlnlpError(f"best_metric {name!r} is not among the validation results "
                             f"({', '.join(result)}); return it from val_fn or choose one of these")
        value = float(result[name])
        if not math.isfinite(value):
            raise NonFiniteLoss(f"the validation {name} became {value} at step {self.step}")
        return value

    def _validation_deadline(self) -> float | None:
        """When a validation must stop (``time.perf_counter()`` value), None without --max-time.

        One during training (no stop reason yet) leaves the reserve for the final validation and
        save; the final one (training has stopped) leaves the time the save takes. Either reads at
        least one batch.
        """
        limit = self.config.max_time
        if limit is None:
            return None
        left = limit - self.budget_used()
        if self._stop_reason(self.total_steps()) is None:
            left -= self.reserve_seconds()
        else:
            left -= self._save_seconds if self._save_seconds is not None else 0.0
        return time.perf_counter() + max(left, 0.0)

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
        began = time.perf_counter()
        self._flush_tokens()
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
        if not self._best_is_val_loss():  # else best_val_loss is the best value (the format as before)
            meta["best_value"] = self.best_value
        # Under torchrun: the world size, and the RNG and recurrent states of the other processes.
        rank_meta, rank_tensors = self.dist.gather_states(rng_meta, rng_tensors, structure, state_tensors)
        meta.update(rank_meta)
        tensors.update(rank_tensors)
        if self.dist.is_main:
            ckpt.save_checkpoint(self.out_dir, model_state, meta, tensors)
            if self.val_data is None and self.val_fn is None:
                with self.averaged_weights():
                    save_weights(exported_weights(self.model), self.out_dir / WEIGHTS_NAME)
        self._good_checkpoint_step = self.step
        if self.on_save is not None:
            self.out_dir = Path(self.on_save())
        self._save_seconds = time.perf_counter() - began
        self.dist.barrier()  # the checkpoint is whole before any process goes on

    def _load_checkpoint(self) -> None:
        if self.out_dir is None:
            raise DlnlpError("resume needs an output directory")
        model_state, meta, tensors = ckpt.load_checkpoint(self.out_dir, device=self.device)
        self.dist.check_resume(meta, self.out_dir)
        meta, tensors = self.dist.own_state(meta, tensors)  # this process's RNG and recurrent state
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
        self.best_value = self.best_val_loss if self._best_is_val_loss() else meta.get("best_value")
        self.last_val_loss = meta.get("last_val_loss")
        recurrent = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("recurrent/")}
        self.state = ckpt.unflatten_state(meta.get("recurrent"), recurrent, self.device)
        averaged = sorted((int(k.split("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("averaged/"))
        if averaged:
            self.averaged = [v.to(self.device, copy=True) for _, v in averaged]
        ckpt.set_rng_state(meta["rng"], tensors)
        self._good_checkpoint_step = self.step
        log(f"resuming from step {self.step} ({self.elapsed_before:.0f} s trained)", quiet=self.config.quiet)

    def _best_is_val_loss(self) -> bool:
        return self.config.best_metric == "val_loss" and self.config.best_mode == "min"

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


def _batch_count(data: Any) -> int | None:
    """Batches a validation source holds, when it says (``batches_per_epoch`` or ``len``)."""
    count = getattr(data, "batches_per_epoch", None)
    if isinstance(count, int):
        return count
    try:
        return len(data)
    except TypeError:
        return None


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
                  deadline: float | None = None, ignore_index: int | None = -100,
                  allow_empty: bool = False) -> dict[str, Any]:
    """Token-weighted mean loss over ``data`` (``iter_eval()`` or a re-iterable of batches).

    Each batch's loss (a mean over its targets) is weighted by its number of targets, integer targets
    equal to ``ignore_index`` left out as ``cross_entropy`` leaves them out of its mean, so the result
    is the mean over every counted target of the data; a batch with none counts for nothing.

    Recurrent state is carried from batch to batch (the data is read as continuous streams) and
    reset when a batch says so. With ``deadline`` (a ``time.perf_counter()`` value) it stops after
    the batch during which the deadline passes. Returns ``{"val_loss", "val_tokens", "val_batches"}``,
    and ``"cut_short": True`` when the deadline stopped it before the end of the data. ``allow_empty``
    (one process's share under torchrun, summed by the caller) returns zero counts for no data.
    """
    loss_fn = loss_fn or default_loss_fn
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count: int | torch.Tensor = 0
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
            weight = _count_targets(batch, ignore_index)
            if weight is None:
                weight = 1
            if torch.is_tensor(weight):  # on the device: no sync per batch
                # a batch with every target ignored has a NaN mean (0/0); it adds nothing
                total += torch.where(weight > 0, loss.double() * weight, 0.0)
            else:
                total += loss.double() * weight
            count = count + weight
            read += 1
            if deadline is not None and device.type == "cuda" and read % 16 == 0:
                torch.cuda.synchronize(device)  # the clock must see the work queued so far
    finally:
        model.train(was_training)
    count = int(count)
    if count == 0 and allow_empty:
        return {"val_loss": 0.0, "val_tokens": 0, "val_batches": read, **({"cut_short": True} if cut else {})}
    if count == 0:
        raise DlnlpError("the validation data is empty" if read == 0 else
                         f"every target of the validation data equals the ignore index {ignore_index}")
    result: dict[str, Any] = {"val_loss": (total / count).item(), "val_tokens": count, "val_batches": read}
    if cut:
        result["cut_short"] = True
    return result
