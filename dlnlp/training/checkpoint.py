"""Trainer checkpoints: tensors in safetensors, everything else in JSON; nothing is pickled.

``checkpoint/`` in the model directory holds the last state of a run::

    checkpoint/
      model.safetensors    model weights
      state.safetensors    optimizer tensors (optim/<param>/<name>), RNG states (rng/...),
                           recurrent state carried across windows (recurrent/<i>)
      trainer.json         step, data position, schedule/time, optimizer hyperparameters and scalar
                           state, GradScaler state, Python and NumPy RNG states, the TrainConfig

The directory is written beside the old one and swapped into place in one atomic step (where the
filesystem allows; elsewhere an interrupted swap is undone by the next run), so a crash while saving
keeps the previous checkpoint whole.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import ModelDirError
from dlnlp.io.atomic import atomic_directory
from dlnlp.io.modeldir import CHECKPOINT_DIR, load_weights, save_weights

CHECKPOINT_FORMAT = 1
TRAINER_JSON = "trainer.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"


# -- recurrent state (a tensor, a tuple of tensors such as LSTM's (h, c), or None) ----------------

def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(structure, tensors) for a recurrent state made of tensors and nested tuples/lists."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any) -> Any:
        if value is None:
            return None
        if torch.is_tensor(value):
            key = str(len(tensors))
            tensors[key] = value.detach()
            return {"tensor": key}
        if isinstance(value, (tuple, list)):
            return {"tuple": [walk(v) for v in value]}
        raise TypeError(f"cannot checkpoint a recurrent state of type {type(value).__name__}")

    return walk(state), tensors


def unflatten_state(structure: Any, tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    if structure is None:
        return None
    if "tensor" in structure:
        return tensors[structure["tensor"]].to(device)
    return tuple(unflatten_state(s, tensors, device) for s in structure["tuple"])


# -- RNG states -----------------------------------------------------------------------------------

def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    return meta, tensors


def set_rng_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(tensors["rng/torch"].cpu())
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/cuda/"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda[: torch.cuda.device_count()]])


# -- optimizer state ------------------------------------------------------------------------------

def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, values in state_dict["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return {"param_groups": state_dict["param_groups"], "scalars": scalars}, tensors


def unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# -- whole checkpoints ----------------------------------------------------------------------------

def save_checkpoint(out_dir: str | Path, model_state: dict[str, torch.Tensor], trainer_meta: dict[str, Any],
                    tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``out_dir/checkpoint`` atomically (replacing the previous one)."""
    target = Path(out_dir) / CHECKPOINT_DIR
    meta = {"checkpoint_format": CHECKPOINT_FORMAT, **trainer_meta}
    with atomic_directory(target, force=True, check=False) as tmp:
        save_weights(model_state, tmp / MODEL_FILE)
        save_weights(tensors or {"_": torch.zeros(0)}, tmp / STATE_FILE)
        (tmp / TRAINER_JSON).write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
    return target


def load_checkpoint(out_dir: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor]]:
    """(model state, trainer meta, other tensors) from ``out_dir/checkpoint``."""
    directory = Path(out_dir) / CHECKPOINT_DIR
    meta_path = directory / TRAINER_JSON
    if not meta_path.is_file():
        raise ModelDirError(f"{directory}: no checkpoint to resume from")
    meta = _read_meta(meta_path)
    if meta.get("checkpoint_format") != CHECKPOINT_FORMAT:
        raise ModelDirError(f"{directory}: checkpoint format {meta.get('checkpoint_format')} is not supported")
    model_state = load_weights(directory / MODEL_FILE, device=str(device))
    tensors = load_weights(directory / STATE_FILE, device="cpu")
    tensors.pop("_", None)
    return model_state, meta, tensors


def read_checkpoint_meta(out_dir: str | Path) -> dict[str, Any]:
    """Only ``trainer.json`` (for the CLI to recover the training options on --resume)."""
    path = Path(out_dir) / CHECKPOINT_DIR / TRAINER_JSON
    if not path.is_file():
        raise ModelDirError(f"{Path(out_dir)}: no checkpoint to resume from")
    return _read_meta(path)


def _read_meta(path: Path) -> dict[str, Any]:
    """``trainer.json``, checked: a JSON object with the trainer's sections."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc})") from None
    missing = [key for key in ("step", "config", "data", "optimizer", "rng") if not isinstance(meta, dict)
               or key not in meta]
    if missing:
        raise ModelDirError(f"{path}: not a dlnlp checkpoint (missing {', '.join(missing)})")
    return meta


def _json_default(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to a checkpoint")
