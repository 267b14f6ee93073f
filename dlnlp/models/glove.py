"""GloVe: Global Vectors for word representation (Pennington, Socher and Manning, EMNLP 2014).

Word vectors ``w_i``, context vectors ``w~_j`` and biases are fit to the log co-occurrence counts::

    J = sum_{X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2
    f(x) = (x / x_max)^alpha if x < x_max else 1          (x_max = 100, alpha = 3/4)

The details follow Stanford's reference ``glove.c``: parameters initialized uniformly in
``[-0.5, 0.5) / dim`` (biases too), AdaGrad with initial rate 0.05 and squared-gradient
accumulators starting at 1 (``gradsq``), each entry's vector gradient clipped elementwise to
``[-100, 100]`` (``-grad-clip``), the co-occurrence entries visited in a new random order every
iteration, and the saved vectors ``W + W~`` (``-model 2``) or ``W`` alone (``-model 1``).

Two backends share one parameter layout. On a CPU, ``dlnlp.kernels.glove_native`` runs glove.c's
own loop: per-entry AdaGrad updates from lock-free ("Hogwild") threads, compiled once with the
system C compiler (per-entry work is two 100-dimensional dot/axpy passes, too small for a
framework step to pay off). On CUDA (or ``backend="torch"``, or without a compiler) the shuffled
entries go through the batched Torch kernels of ``dlnlp.kernels.glove_loss`` in mini-batches: a
batch's per-entry (clipped) gradients are summed per row, then one AdaGrad step, with the
accumulator updated before the step so a summed gradient cannot overshoot. glove.c's current
version applies its bias updates without the learning rate (an effective bias rate of 1, kept as
the AdaGrad default; ``bias_lr=lr`` gives the paper's and GloVe 1.0's update). Adam is available
as ``optimizer="adam"`` (Torch backend).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dlnlp.errors import DlnlpError, OptionError, UsageError, check_int
from dlnlp.kernels import glove_native
from dlnlp.kernels.glove_loss import adagrad_step_, adam_step_, glove_loss_and_grads, glove_weight
from dlnlp.kernels.memory import MAX_WIDTH
from dlnlp.models.ppmi_svd import corpus_cooccurrence  # noqa: F401  (GloVe's counting stage, shared)
from dlnlp.settings import DictConfig

OPTIMIZERS = ("adagrad", "adam")
OUTPUTS = ("sum", "word")
# Documented caps of the options (far beyond any useful setting: glove.c's defaults are 50-300
# dimensions, a window of 10-15 and 15-100 iterations).

MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 24
MAX_WORKERS = 1024


GloVeOptionError = OptionError  # the name earlier releases raised


class VectorsDiverged(DlnlpError):
    """Training made the cost or the vectors overflow (the learning rate is too high)."""


def check_options(*, window: int, min_count: int, max_vocab: int | None, memory: float, workers: int,
                  max_time: float | None) -> None:
    """The counting and run options of ``glove train`` (besides :class:`GloVeConfig`'s), before any work."""
    from dlnlp.models.ppmi_svd import check_counting_options

    check_counting_options(window, min_count, memory, max_vocab)
    check_int("--workers", workers, 0, MAX_WORKERS, " (0: all cores)")
    if max_time is not None and not (math.isfinite(max_time) and max_time > 0):
        raise OptionError(f"--max-time must be > 0 seconds, got {max_time:g}")


@dataclass
class GloVeConfig(DictConfig):
    """Training hyperparameters (defaults: glove.c's, except the batch size that glove.c lacks)."""

    dim: int = 100
    x_max: float = 100.0
    alpha: float = 0.75
    epochs: int = 25
    lr: float = 0.05
    bias_lr: float | None = None  # None: 1 with AdaGrad (glove.c's effective rate), lr with Adam
    optimizer: str = "adagrad"
    batch_size: int = 16384
    grad_clip: float | None = 100.0
    output: str = "sum"  # "sum": W + W~ (glove.c -model 2); "word": W (-model 1)
    seed: int = 0

    def validate(self) -> None:
        """Every option in a range that makes sense (one-line errors naming the option as typed).

        AdaGrad moves a component by at most about ``lr`` per entry, so rates above 1 only scatter
        the vectors; the caps on sizes keep the numbers the native loop gets 32-bit.
        """
        check_int("--dim", self.dim, 1, MAX_WIDTH)
        check_int("--epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("--batch-size", self.batch_size, 1, MAX_BATCH)
        check_int("--seed", self.seed, 0, 2**63 - 1)
        if not (math.isfinite(self.x_max) and self.x_max > 0):
            raise GloVeOptionError(f"--x-max must be > 0, got {self.x_max:g}")
        if not (math.isfinite(self.alpha) and 0 <= self.alpha <= 1):
            raise GloVeOptionError(f"--alpha must be in [0, 1] (the paper's 0.75), got {self.alpha:g}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise GloVeOptionError(f"--lr must be > 0 and <= 1, got {self.lr:g}")
        if self.bias_lr is not None and not (math.isfinite(self.bias_lr) and 0 <= self.bias_lr <= 1):
            raise GloVeOptionError(f"--bias-lr must be in [0, 1], got {self.bias_lr:g}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise GloVeOptionError(f"--grad-clip must be >= 0 (0: off), got {self.grad_clip:g}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer {self.optimizer}: expected {' or '.join(OPTIMIZERS)}")
        if self.output not in OUTPUTS:
            raise UsageError(f"--vectors {self.output}: expected {' or '.join(OUTPUTS)}")



class GloVe:
    """GloVe parameters and their training on a co-occurrence matrix.

    ``word`` rows are ``[w_i, b_i, 1]`` and ``context`` rows ``[w~_j, 1, b~_j]`` (see
    :mod:`dlnlp.kernels.glove_loss`), so a batch's prediction is one row-wise dot product.
    """

    def __init__(self, vocab_size: int, config: GloVeConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or GloVeConfig()
        self.config.validate()
        self.vocab_size = int(vocab_size)
        self.device = torch.device(device)
        dim = self.config.dim
        generator = torch.Generator().manual_seed(self.config.seed)
        # glove.c: W[a] = (rand() / RAND_MAX - 0.5) / vector_size for vectors and biases alike.
        init = (torch.rand(2, self.vocab_size, dim + 1, generator=generator, dtype=torch.float64) - 0.5) / dim
        word = torch.ones(self.vocab_size, dim + 2, dtype=torch.float32)
        context = torch.ones(self.vocab_size, dim + 2, dtype=torch.float32)
        word[:, :dim + 1] = init[0]
        context[:, :dim] = init[1, :, :dim]
        context[:, dim + 1] = init[1, :, dim]
        self.word = word.to(self.device)
        self.context = context.to(self.device)
        # Per-column learning rates: vectors lr, the bias slot bias_lr, the constant slot 0.
        bias_lr = self.config.bias_lr
        if bias_lr is None:
            bias_lr = 1.0 if self.config.optimizer == "adagrad" else self.config.lr
        self._bias_lr = bias_lr
        word_scale = torch.full((dim + 2,), self.config.lr)
        word_scale[dim], word_scale[dim + 1] = bias_lr, 0.0
        context_scale = word_scale.clone()
        context_scale[dim], context_scale[dim + 1] = 0.0, bias_lr
        self._scales = (word_scale.to(self.device), context_scale.to(self.device))
        if self.config.optimizer == "adagrad":
            # glove.c: gradsq initialized to 1 "so initial value of eta is equal to initial learning rate".
            self._state = [torch.ones_like(self.word), torch.ones_like(self.context)]
        else:
            self._state = [torch.zeros_like(self.word), torch.zeros_like(self.word),
                           torch.zeros_like(self.context), torch.zeros_like(self.context)]
        self._step = 0

    # -- parameters ------------------------------------------------------------------------------
    @property
    def W(self) -> torch.Tensor:  # noqa: N802 (the paper's name)
        return self.word[:, :self.config.dim]

    @property
    def W_tilde(self) -> torch.Tensor:  # noqa: N802
        return self.context[:, :self.config.dim]

    @property
    def b(self) -> torch.Tensor:
        return self.word[:, self.config.dim]

    @property
    def b_tilde(self) -> torch.Tensor:
        return self.context[:, self.config.dim + 1]

    def is_finite(self) -> bool:
        """Whether every parameter (vectors and biases) is a finite number."""
        return bool(torch.isfinite(self.word).all() and torch.isfinite(self.context).all())

    def vectors(self, output: str | None = None) -> np.ndarray:
        """The word vectors to save: ``W + W~`` (``"sum"``) or ``W`` (``"word"``), float32 on the CPU."""
        output = output or self.config.output
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}")
        if not self.is_finite():
            raise VectorsDiverged("the GloVe parameters hold nan or inf; not writing them (try a lower --lr)")
        result = self.W + self.W_tilde if output == "sum" else self.W
        return result.detach().to("cpu", torch.float32).numpy().copy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named tensors for safetensors: W, W_tilde, b, b_tilde."""
        return {name: t.detach().to("cpu").contiguous().clone()
                for name, t in (("W", self.W), ("W_tilde", self.W_tilde), ("b", self.b), ("b_tilde", self.b_tilde))}

    # -- training --------------------------------------------------------------------------------
    def loss(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> float:
        """``0.5 * J`` (glove.c's cost) over the given entries, without updating anything."""
        rows, cols = rows.to(self.device).long(), cols.to(self.device).long()
        values = values.to(self.device, torch.float32)
        with torch.no_grad():
            diff = torch.linalg.vecdot(self.word[rows], self.context[cols]) - values.log()
            return float(0.5 * (glove_weight(values, self.config.x_max, self.config.alpha) * diff * diff).sum())

    def train_step(self, rows: torch.Tensor, cols: torch.Tensor, log_x: torch.Tensor, weight: torch.Tensor) -> float:
        """One optimizer step on a batch of entries (on this model's device); returns the batch loss."""
        word_rows = self.word.index_select(0, rows)
        context_rows = self.context.index_select(0, cols)
        loss, grad_word_rows, grad_context_rows = glove_loss_and_grads(
            word_rows, context_rows, log_x, weight, self.config.grad_clip)
        # Sum each row's per-entry gradients (a word appears many times in a batch).
        grad_word = torch.zeros_like(self.word).index_add_(0, rows, grad_word_rows)
        grad_context = torch.zeros_like(self.context).index_add_(0, cols, grad_context_rows)
        word_scale, context_scale = self._scales
        self._step += 1
        if self.config.optimizer == "adagrad":
            adagrad_step_(self.word, self._state[0], grad_word, word_scale)
            adagrad_step_(self.context, self._state[1], grad_context, context_scale)
        else:
            adam_step_(self.word, self._state[0], self._state[1], grad_word, word_scale, self._step)
            adam_step_(self.context, self._state[2], self._state[3], grad_context, context_scale, self._step)
        return float(loss)

    def fit(self, rows: np.ndarray | torch.Tensor, cols: np.ndarray | torch.Tensor, values: np.ndarray | torch.Tensor,
            *, epochs: int | None = None, backend: str = "auto", threads: int = 0,
            callback: Callable[[dict], None] | None = None, max_time: float | None = None,
            on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train on the non-zero entries (``rows``, ``cols``, ``values`` = X_ij); returns one record per epoch.

        Each epoch visits every entry once in a fresh random order (seeded). ``backend``: ``native``
        (glove.c's per-entry loop on ``threads`` lock-free CPU threads, 0: all cores), ``torch``
        (batched kernels on this model's device) or ``auto`` (native on a CPU when the C kernel
        builds and the optimizer is AdaGrad, else torch). ``callback`` gets ``{"epoch", "entries"}``
        as entries are done, ``on_epoch`` each epoch's record as it ends; ``max_time`` stops cleanly
        after that many seconds.
        """
        cfg = self.config
        epochs = cfg.epochs if epochs is None else epochs
        backend = self.resolve_backend(backend)
        rows_np = np.ascontiguousarray(np.asarray(rows.cpu() if torch.is_tensor(rows) else rows), dtype=np.int32)
        cols_np = np.ascontiguousarray(np.asarray(cols.cpu() if torch.is_tensor(cols) else cols), dtype=np.int32)
        x = np.asarray(values.cpu() if torch.is_tensor(values) else values, dtype=np.float64)
        if len(x) and (x <= 0).any():
            raise ValueError("co-occurrence values must be positive")
        if len(rows_np) and (min(rows_np.min(), cols_np.min()) < 0
                             or max(rows_np.max(), cols_np.max()) >= self.vocab_size):
            raise ValueError("co-occurrence indices out of range")
        # log X and f(X) once, in float64 like glove.c, then float32 for the passes.
        log_x = np.log(x).astype(np.float32)
        weight = glove_weight(torch.from_numpy(x), cfg.x_max, cfg.alpha).numpy().astype(np.float32)
        del x
        n = len(log_x)
        rng = np.random.default_rng(cfg.seed + 1)
        history: list[dict] = []
        start = time.perf_counter()
        for epoch in range(epochs):
            epoch_start = time.perf_counter()
            order = rng.permutation(n)
            r, c, lx, w = rows_np[order], cols_np[order], log_x[order], weight[order]
            del order
            remaining = None if max_time is None else max_time - (time.perf_counter() - start)
            if remaining is not None and remaining <= 0 and history:  # the budget is spent between iterations
                break
            if backend == "native":
                total, done = self._epoch_native(r, c, lx, w, threads, epoch, callback, remaining)
            else:
                total, done = self._epoch_torch(r, c, lx, w, epoch, callback, remaining)
            if not math.isfinite(total) or not self.is_finite():
                what = f"the cost became {total}" if not math.isfinite(total) else "the vectors became nan or inf"
                raise VectorsDiverged(f"training diverged: {what} in iteration {epoch + 1}; stopped, nothing "
                                      f"written (try a lower --lr than {cfg.lr:g})")
            record = {"epoch": epoch + 1, "cost": total / max(done, 1), "entries": done,
                      "seconds": time.perf_counter() - epoch_start, "complete": done == n, "backend": backend}
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if done < n:
                break
        return history

    def resolve_backend(self, backend: str = "auto") -> str:
        """``native`` or ``torch`` for the requested backend on this model's device and optimizer."""
        if backend not in ("auto", "native", "torch"):
            raise ValueError("backend must be auto, native or torch")
        native_ok = self.device.type == "cpu" and self.config.optimizer == "adagrad"
        if backend == "native":
            if not native_ok:
                raise ValueError("the native backend runs AdaGrad on a CPU only")
            if glove_native.load_library() is None:
                raise RuntimeError(f"native GloVe kernel unavailable: {glove_native.failure_reason()}")
            return "native"
        if backend == "auto" and native_ok:
            if glove_native.load_library() is not None:
                return "native"
            reason = glove_native.failure_reason()
            if reason and "DLNLP_NO_NATIVE" not in reason:
                from dlnlp.progress import warn

                warn(f"{reason}; using the (slower) batched Torch kernels")
        return "torch"

    def _epoch_native(self, rows, cols, log_x, weight, threads, epoch, callback, remaining) -> tuple[float, int]:
        threads = threads if threads > 0 else (os.cpu_count() or 1)
        progress = np.zeros(2, dtype=np.int64)
        result: dict = {}

        def run() -> None:
            try:
                result["cost"] = glove_native.train_epoch_native(
                    rows=rows, cols=cols, log_x=log_x, weight=weight, word=self.word.numpy(),
                    context=self.context.numpy(), gsq_word=self._state[0].numpy(),
                    gsq_context=self._state[1].numpy(), dim=self.config.dim, lr=self.config.lr,
                    bias_lr=self._bias_lr, clip=self.config.grad_clip, threads=threads, progress=progress)
            except BaseException as exc:  # re-raised in the caller's thread
                result["error"] = exc

        worker = threading.Thread(target=run, daemon=True)
        started = time.perf_counter()
        worker.start()
        reported = 0
        try:
            while worker.is_alive():
                worker.join(0.2)
                done = int(progress[0])
                if callback is not None and done > reported:
                    callback({"epoch": epoch + 1, "entries": done - reported})
                    reported = done
                if remaining is not None and time.perf_counter() - started > remaining:
                    progress[1] = 1
        except KeyboardInterrupt:
            progress[1] = 1
            worker.join()
            raise
        if "error" in result:
            raise result["error"]
        done = int(progress[0])
        if callback is not None and done > reported:
            callback({"epoch": epoch + 1, "entries": done - reported})
        return result["cost"], done

    def _epoch_torch(self, rows, cols, log_x, weight, epoch, callback, remaining) -> tuple[float, int]:
        device = self.device
        r = torch.from_numpy(rows).to(device, torch.int64)
        c = torch.from_numpy(cols).to(device, torch.int64)
        lx = torch.from_numpy(log_x).to(device)
        w = torch.from_numpy(weight).to(device)
        n = len(r)
        total = 0.0
        done = 0
        started = time.perf_counter()
        batch = self.config.batch_size
        for s in range(0, n, batch):
            e = min(n, s + batch)
            total += self.train_step(r[s:e], c[s:e], lx[s:e], w[s:e])
            done = e
            if callback is not None:
                callback({"epoch": epoch + 1, "entries": e - s})
            if remaining is not None and time.perf_counter() - started > remaining:
                break
        return total, done
