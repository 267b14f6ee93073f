"""Data-parallel training over several processes: ``torch.distributed`` and DDP, launched by ``torchrun``.

Nothing here is home-made: ``torchrun`` starts one process per device and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`context` reads them,
initializes the process group (NCCL on CUDA, each process on ``cuda:LOCAL_RANK``; gloo on CPU) and
the trainer wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel`, which averages
the gradients of every backward pass over the processes (Li et al. 2020, "PyTorch Distributed").
Without those variables (or with ``WORLD_SIZE=1``) every function here is a no-op, and a run is
exactly the single-process run.

What the trainer does with it (the hooks are small, in ``training/trainer.py``):

* **Data.** ``--batch-size`` is per process; a step reads ``batch_size x world_size`` sequences (x
  ``--grad-accum``), logged once at the start. Each batch source splits itself without overlap
  (``source.shard(rank, world_size)``): random windows are drawn for the whole global batch from the
  one seeded generator, each process taking its own rows; BPTT streams are cut into ``batch_size x
  world_size`` streams, each process reading its own; other batch lists go round-robin. So two
  processes at ``--batch-size 4`` see exactly the batches of one process at ``--batch-size 8``, and
  the data position in the checkpoint is the same for every process.
* **Gradients.** Accumulation micro-steps before the last skip the all-reduce (DDP's ``no_sync``).
* **Agreement.** Every process must stop, validate and save at the same step, or the others would
  wait in a collective forever: stop reasons (``--max-time``, Ctrl-C, SIGTERM) are agreed by an
  all-reduce each step; validation losses are summed over the processes (each reads its share of
  the validation data) and training losses and token counts averaged / summed before logging.
* **Output.** Rank 0 alone writes the run directory (spooled data, config.json, checkpoints,
  metrics.jsonl, the model), through the same atomic :class:`~dlnlp.io.modeldir.RunOutput`; the
  others wait for it to prepare the run, then read the spooled data and, on ``--resume``, the
  checkpoint. Per-process state (RNG, a recurrent model's hidden state) is gathered into the one
  checkpoint, which records the world size: a run resumes at the same size only.
* **Logs.** Processes other than rank 0 print no progress, logs, warnings or ``--json``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlnlp.errors import DlnlpError

# The environment torchrun gives each process it starts.
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Stop reasons the processes agree on, in order of precedence (an interrupt wins).
STOP_REASONS = ("max_steps", "epochs", "max_time", "interrupt")


def launched() -> bool:
    """Whether this process is one of several started by torchrun (its environment variables are set)."""
    return all(v in os.environ for v in ENV_VARS) and int(os.environ["WORLD_SIZE"]) > 1


@dataclass
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size`` (1: not distributed), its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (identity without distribution) ------------------------------------------------

    def _tensor(self, values: list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        # gloo reduces CPU tensors; NCCL only device tensors
        return torch.tensor(values, dtype=dtype, device=self.device if self.backend == "nccl" else "cpu")

    def broadcast_object(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every process."""
        if not self.enabled:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` (picklable, CPU tensors) on rank 0, in rank order; None elsewhere."""
        if not self.enabled:
            return [value]
        out = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum(self, value: int | torch.Tensor) -> int | torch.Tensor:
        """The sum of ``value`` over the processes: a device tensor stays one (no wait for the device)."""
        if not self.enabled:
            return value
        if torch.is_tensor(value) and (self.backend == "nccl") == (value.device.type == "cuda"):
            total = value.detach().clone()
            torch.distributed.all_reduce(total)
            return total
        total = self._tensor([float(value)])
        torch.distributed.all_reduce(total)
        return int(total.item())

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over the processes (each process's own mean loss, equally weighted:
        every process reads batches of the same shape)."""
        if not self.enabled:
            return value
        total = self._tensor([float(value)])
        torch.distributed.all_reduce(total)
        return total[0] / self.world_size

    def agree(self, reason: str | None) -> str | None:
        """The stop reason every process acts on: any process's, the later in :data:`STOP_REASONS` first.
        ``--max-time`` runs out and signals arrive at different steps in different processes."""
        if not self.enabled:
            return reason
        code = (
            STOP_REASONS.index(reason) + 1 if reason in STOP_REASONS else (len(STOP_REASONS) if reason else 0)
        )
        flag = self._tensor([code], torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed == 0:
            return None
        if reason and code == agreed:
            return reason  # this process's own (another request than those named keeps its name)
        return STOP_REASONS[agreed - 1]

    def reduce_eval(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """One validation result from each process's share (:func:`~dlnlp.training.trainer.evaluate_loss`):
        the loss weighted by each share's targets, the counts summed, cut short if any was."""
        if not self.enabled:
            return dict(result)
        tokens = float(result["val_tokens"])
        loss = float(result["val_loss"]) if tokens else 0.0
        totals = self._tensor(
            [loss * tokens, tokens, float(result["val_batches"]), float(bool(result.get("cut_short")))]
        )
        torch.distributed.all_reduce(totals)
        weighted, tokens, batches, cut = totals.tolist()
        if tokens == 0:
            raise DlnlpError("the validation data is empty")
        out: dict[str, Any] = {
            "val_loss": weighted / tokens,
            "val_tokens": int(tokens),
            "val_batches": int(batches),
        }
        if cut:
            out["cut_short"] = True
        return out

    def average_metrics(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """A ``val_fn``'s numbers averaged over the processes (the same numbers when each read all the
        validation data, as a ``val_fn`` does unless it splits the data itself)."""
        if not self.enabled:
            return dict(result)
        keys = sorted(k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        values = self._tensor([float(result[k]) for k in keys])
        torch.distributed.all_reduce(values)
        return {**result, **{k: v / self.world_size for k, v in zip(keys, values.tolist(), strict=True)}}

    # -- model and data -----------------------------------------------------------------------------

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (its weights broadcast from rank 0), or as it is."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        # Buffers (masks, position tables) are the same in every process: no broadcast before each forward
        # (the option's name since torch 2.13; broadcast_buffers before).
        import inspect

        sync = (
            "forward_sync_buffers"
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else "broadcast_buffers"
        )
        return DistributedDataParallel(model, device_ids=device_ids, **{sync: False})

    @staticmethod
    def set_grad_sync(model: nn.Module, sync: bool) -> None:
        """Skip (``sync=False``) or do the gradient all-reduce of the next backward pass: what
        ``DistributedDataParallel.no_sync()`` sets, for accumulation micro-steps before the last."""
        if hasattr(model, "require_backward_grad_sync"):
            model.require_backward_grad_sync = sync

    def shard(self, source: Any) -> Any:
        """This process's share of a training batch source (``source.shard(rank, world)``), the source
        itself without distribution."""
        if not self.enabled or source is None:
            return source
        if hasattr(source, "shard"):
            return source.shard(self.rank, self.world_size)
        raise DlnlpError(
            f"the batch source {type(source).__name__} cannot be split across processes "
            "(give it a shard(rank, world_size) method, or pass a re-iterable of batches)"
        )

    def shard_eval(self, data: Any) -> Any:
        """This process's share of validation data: a source's own split, or every world_size-th batch."""
        if not self.enabled or data is None:
            return data
        if hasattr(data, "shard"):
            return data.shard(self.rank, self.world_size)
        return Strided(data, self.rank, self.world_size, whole=False)

    # -- checkpoints ----------------------------------------------------------------------------------

    def gather_states(
        self,
        rng_meta: dict[str, Any],
        rng_tensors: dict[str, torch.Tensor],
        recurrent: Any,
        recurrent_tensors: dict[str, torch.Tensor],
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What the checkpoint adds for a run of several processes: ``world_size``, and on rank 0 the
        RNG and recurrent states of ranks 1.. (``"ranks"`` in trainer.json, tensors under ``rank{r}/``)."""
        meta: dict[str, Any] = {"world_size": self.world_size}
        if not self.enabled:
            return meta, {}
        own = (
            rng_meta,
            {k: v.cpu() for k, v in rng_tensors.items()},
            recurrent,
            {k: v.detach().cpu() for k, v in recurrent_tensors.items()},
        )
        states = self.gather_objects(own)
        tensors: dict[str, torch.Tensor] = {}
        if states is not None:
            meta["ranks"] = []
            for r, (r_rng, r_rng_tensors, r_recurrent, r_tensors) in enumerate(states[1:], start=1):
                meta["ranks"].append({"rng": r_rng, "recurrent": r_recurrent})
                tensors.update({f"rank{r}/{k}": v for k, v in r_rng_tensors.items()})
                tensors.update({f"rank{r}/recurrent/{k}": v for k, v in r_tensors.items()})
        return meta, tensors

    def own_state(
        self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The checkpoint as this process resumes from it: ranks 1.. take their own RNG and recurrent
        state (:meth:`gather_states`) in place of rank 0's."""
        if not self.is_main:
            mine = meta["ranks"][self.rank - 1]
            prefix = f"rank{self.rank}/"
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)} | {
                k: v for k, v in tensors.items() if not k.startswith(("rng/", "recurrent/", "rank"))
            }
            meta = {**meta, "rng": mine["rng"], "recurrent": mine["recurrent"]}
        return meta, tensors

    def check_resume(self, meta: Mapping[str, Any], where: Path | None) -> None:
        """Refuse to resume a checkpoint written at another world size, naming both."""
        saved = int(meta.get("world_size", 1))
        if saved != self.world_size:
            how = (
                f"torchrun --nproc-per-node {saved} (or as many processes over several nodes)"
                if saved > 1
                else "one process (without torchrun)"
            )
            raise DlnlpError(
                f"{where or 'the run'}: the checkpoint was written by {saved} process"
                f"{'es' if saved != 1 else ''}, this run has {self.world_size}; resume it with {how}"
            )


class Strided:
    """Batches ``rank``, ``rank + world``, ... of a re-iterable of batches: a process's share.

    For training (``whole=True``) every process gets ``len // world`` batches (the rest is left out),
    so that all of them take the same number of steps per epoch.
    """

    def __init__(self, iterable: Iterable[Any], rank: int, world: int, *, whole: bool = True):
        self.iterable, self.rank, self.world, self.whole = iterable, rank, world, whole
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self._len = None if total is None else (total // world if whole else len(range(rank, total, world)))
        if whole and self._len == 0:
            raise DlnlpError(f"the training data has {total} batches, fewer than the {world} processes")

    def __iter__(self) -> Iterator[Any]:
        count = 0
        for i, item in enumerate(self.iterable):
            if self._len is not None and count >= self._len:
                return
            if i % self.world == self.rank:
                count += 1
                yield item

    def __len__(self) -> int:
        if self._len is None:
            raise TypeError("length unknown")
        return self._len


class FollowerOutput:
    """What a process other than rank 0 holds in place of the run's :class:`~dlnlp.io.modeldir.RunOutput`:
    where rank 0 prepares the run (read only) and its final place; it writes nothing."""

    def __init__(self, path: str | Path, target: str | Path):
        self.path = Path(path)
        self.target = Path(target)
        self.committed = self.path == self.target

    def commit(self) -> Path:
        """Rank 0 moves the run into place at its first checkpoint; from then on it is read there."""
        self.path = self.target
        self.committed = True
        return self.path


_CONTEXT: DistContext | None = None


def context(device: str = "auto") -> DistContext:
    """This process's :class:`DistContext`; the first call under torchrun initializes the process group.

    ``device`` (``--device``) picks the backend: NCCL on CUDA, each process on ``cuda:LOCAL_RANK``
    (an explicit ``cuda:N`` is replaced by it), gloo on CPU. The group is destroyed at exit.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    if not launched():
        _CONTEXT = DistContext()
        return _CONTEXT
    from dlnlp.kernels.device import resolve_device

    rank, world, local = (int(os.environ[v]) for v in ENV_VARS)
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DlnlpError(
                f"process {rank} (LOCAL_RANK {local}) has no GPU: this node has "
                f"{torch.cuda.device_count()}; start at most that many (--nproc-per-node)"
            )
        resolved = torch.device("cuda", local)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    elif resolved.type == "cpu":
        backend = "gloo"
    else:
        raise DlnlpError(f"--device {device}: distributed training runs on CUDA (NCCL) or the CPU (gloo)")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
        atexit.register(_destroy)
    _CONTEXT = DistContext(rank, world, local, backend, resolved)
    return _CONTEXT


def _destroy() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def reset() -> None:
    """Forget the context and destroy the process group (tests that run several setups in one process)."""
    global _CONTEXT
    _destroy()
    _CONTEXT = None
