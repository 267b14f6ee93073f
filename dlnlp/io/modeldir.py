"""The model directory every dlnlp model is saved in (see DESIGN.md, "Model directories").

    run/
      config.json        {"kind": ..., "format_version": 1, "dlnlp_version": ..., hyperparameters}
      model.safetensors  weights
      tokenizer.json     or whatever else the model needs to read raw text
      metrics.jsonl      one JSON line per log/eval step
      checkpoint/        trainer state for --resume

One-shot outputs are written whole with :func:`write_model_dir` (a temporary directory renamed into
place). Training writes through a :class:`RunOutput`: a staging directory beside the target, swapped
in when the run has saved its first checkpoint, so a run that fails or is killed before then leaves
the previous output (and nothing else) behind; the output is locked for the whole run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dlnlp import __version__
from dlnlp.errors import ModelDirError
from dlnlp.io.atomic import (
    OutputLock,
    atomic_directory,
    atomic_path,
    atomic_write_text,
    check_can_write,
    make_temp_dir,
    remove_stale_temps,
    swap_into_place,
)

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
    inputs: Iterable | None = None,
) -> Path:
    """Write a complete model directory atomically. ``config`` must come from :func:`make_config`;
    ``inputs`` (the command's input files) may not be the output or inside it."""
    if "kind" not in config or "format_version" not in config:
        raise ValueError("config needs 'kind' and 'format_version' (use make_config)")
    with atomic_directory(path, force=force, inputs=inputs) as tmp:
        _write_contents(tmp, config, weights, files)
    return Path(path)


class RunOutput:
    """The directory a training run writes into, safe against failures, kills and a second run.

    A new run writes into a staging directory beside ``target`` (``.NAME.PID.XXXX.tmp``, in
    :attr:`path`) and :meth:`commit` swaps it in once there is something worth keeping (the first
    checkpoint); until then the previous output is untouched, and a failure removes the staging
    directory. A resumed run writes into ``target`` itself. ``target`` is locked for the whole run.
    Use it as a context manager: leaving it with an exception discards an uncommitted run.
    """

    def __init__(self, target: str | os.PathLike, *, force: bool = False, resume: bool = False,
                 inputs: Iterable | None = None):
        self.target = Path(target)
        self.resume = resume
        if not resume:
            check_can_write(self.target, force, inputs=inputs, directory=True)
        self._lock = OutputLock(self.target)
        self._lock.acquire()
        try:
            remove_stale_temps(self.target)
            remove_stale_temps(self.target / CHECKPOINT_DIR)
            if resume:
                if not (self.target / CHECKPOINT_DIR).is_dir():
                    raise ModelDirError(f"{self.target}: no checkpoint to resume from")
                self.path = self.target
                self.committed = True
            else:
                check_can_write(self.target, force, inputs=inputs, directory=True)  # again, under the lock
                self.path = make_temp_dir(self.target)
                self.committed = False
        except BaseException:
            self._lock.release()
            raise

    def commit(self) -> Path:
        """Swap the staging directory in for ``target`` (once); returns where the run writes from now on."""
        if not self.committed:
            swap_into_place(self.path, self.target)
            self.path = self.target
            self.committed = True
        return self.path

    def close(self, failed: bool = False) -> None:
        """Release the lock; an uncommitted run is committed on success and discarded on failure."""
        try:
            if not self.committed:
                if failed:
                    shutil.rmtree(self.path, ignore_errors=True)
                else:
                    self.commit()
        finally:
            self._lock.release()

    def __enter__(self) -> RunOutput:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)


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
    """Save torch tensors (or numpy arrays) as safetensors, atomically (replacing ``path``) and with the
    umask's permissions (safetensors alone makes the file private); shared storage is cloned first."""
    values = list(tensors.values())
    with atomic_path(path, check=False) as tmp:
        if values and type(values[0]).__module__.startswith("numpy"):
            from safetensors.numpy import save_file as save_numpy

            save_numpy({k: v for k, v in tensors.items()}, str(tmp))
        else:
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, str(tmp))


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


def metrics_text(records: Iterable[Mapping[str, Any]]) -> str:
    """``metrics.jsonl`` content for records known at the end (word2vec and GloVe epochs), in the
    trainer's line format (one sorted JSON object per line), for :func:`write_model_dir`'s files."""
    return "".join(json.dumps(dict(record), sort_keys=True) + "\n" for record in records)


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
