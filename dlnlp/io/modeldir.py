"""The model directory every dlnlp model is saved in (see DESIGN.md, "Model directories").

    run/
      config.json        {"kind": ..., "format_version": 1, "dlnlp_version": ..., hyperparameters}
      model.safetensors  weights
      tokenizer.json     or whatever else the model needs to read raw text
      metrics.jsonl      one JSON line per log/eval step
      checkpoint/        trainer state for --resume

One-shot outputs are written whole with :func:`write_model_dir` (a temporary directory renamed into
place). Training writes into a directory prepared by :func:`prepare_model_dir` file by file, each
file atomically, so an interrupted run leaves readable files behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlnlp import __version__
from dlnlp.errors import ModelDirError
from dlnlp.io.atomic import atomic_directory, atomic_write_text, check_can_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"

# What a model directory writer may put beside the config: raw bytes, text, or a callable that
# writes the file itself given its final path inside the (temporary) directory.
FileContent = bytes | str | Callable[[Path], None]


def make_config(kind: str, format_version: int = 1, **hyperparameters: Any) -> dict[str, Any]:
    return {"kind": kind, "format_version": format_version, "dlnlp_version": __version__, **hyperparameters}


def _write_contents(directory: Path, config: Mapping[str, Any], weights: Mapping[str, Any] | None,
                    files: Mapping[str, FileContent] | None) -> None:
    (directory / CONFIG_NAME).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    if weights is not None:
        save_weights(weights, directory / WEIGHTS_NAME)
    for name, content in (files or {}).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def write_model_dir(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    weights: Mapping[str, Any] | None = None,
    files: Mapping[str, FileContent] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Write a complete model directory atomically. ``config`` must come from :func:`make_config`."""
    if "kind" not in config or "format_version" not in config:
        raise ValueError("config needs 'kind' and 'format_version' (use make_config)")
    with atomic_directory(path, force=force) as tmp:
        _write_contents(tmp, config, weights, files)
    return Path(path)


def prepare_model_dir(path: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Path:
    """Create ``path`` for a training run that writes into it as it goes.

    An existing directory is kept with ``resume``, emptied with ``force``, and otherwise refused.
    """
    target = Path(path)
    if resume:
        if not (target / CHECKPOINT_DIR).is_dir():
            raise ModelDirError(f"{target}: no checkpoint to resume from")
        return target
    check_can_write(target, force)
    if target.exists():
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    target.mkdir(parents=True)
    return target


def write_config(directory: str | os.PathLike, config: Mapping[str, Any]) -> None:
    atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(dict(config), indent=2, sort_keys=True) + "\n",
                      force=True)


def read_config(
    path: str | os.PathLike, kind: str | tuple[str, ...] | None = None, supported_versions: tuple[int, ...] = (1,)
) -> dict[str, Any]:
    """Read and check ``config.json``: the directory must exist and hold a model of ``kind``."""
    directory = Path(path)
    if not directory.exists():
        raise ModelDirError(f"{directory}: no such model directory")
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: is a file, expected a model directory")
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise ModelDirError(f"{directory}: not a dlnlp model directory (no {CONFIG_NAME})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "kind" not in config or "format_version" not in config:
        raise ModelDirError(f"{config_path}: missing 'kind' or 'format_version'")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and config["kind"] not in kinds:
        raise ModelDirError(
            f"{directory}: holds a {config['kind']!r} model, expected {' or '.join(repr(k) for k in kinds)}"
        )
    if config["format_version"] not in supported_versions:
        raise ModelDirError(
            f"{directory}: format_version {config['format_version']} is not supported "
            f"(this dlnlp {__version__} reads {', '.join(map(str, supported_versions))})"
        )
    return config


def save_weights(tensors: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Save torch tensors (or numpy arrays) as safetensors; shared storage is cloned first."""
    values = list(tensors.values())
    if values and type(values[0]).__module__.startswith("numpy"):
        from safetensors.numpy import save_file as save_numpy

        save_numpy({k: v for k, v in tensors.items()}, str(path))
        return
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, str(path))


def load_weights(path: str | os.PathLike, device: str = "cpu", framework: str = "pt") -> dict[str, Any]:
    """Load safetensors weights; never unpickles anything."""
    file = Path(path)
    if file.is_dir():
        file = file / WEIGHTS_NAME
    if not file.is_file():
        raise ModelDirError(f"{file}: no such weights file")
    try:
        if framework == "np":
            from safetensors.numpy import load_file as load_numpy

            return load_numpy(str(file))
        from safetensors.torch import load_file

        return load_file(str(file), device=device)
    except Exception as exc:
        raise ModelDirError(f"{file}: cannot read weights ({exc})") from exc


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``; each line is flushed as written."""

    def __init__(self, directory: str | os.PathLike, append: bool = False):
        self.path = Path(directory) / METRICS_NAME
        self._handle = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, **record: Any) -> None:
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
