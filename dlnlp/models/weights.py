"""Checking saved weights against the model a config.json describes, before loading them.

``torch.nn.Module.load_state_dict`` reports a mismatch as a multi-line ``RuntimeError`` whose first
line ("Error(s) in loading state_dict for GPT:") says nothing; :func:`check_weights` says which
tensors are missing, unexpected or of another shape, in one line naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dlnlp.errors import ModelDirError


def _shape(tensor: Any) -> str:
    return "[" + ", ".join(str(int(n)) for n in tensor.shape) + "]"


def _names(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def weights_mismatch(expected: Mapping[str, Any], state: Mapping[str, Any], optional: Iterable[str] = ()) -> str:
    """What differs between a module's ``state_dict()`` and saved tensors ("" when they match)."""
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"shape of {k} is {_shape(state[k])}, config.json says {_shape(expected[k])}"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {_names(unexpected)}")
    parts.extend(shapes[:3])
    if len(shapes) > 3:
        parts.append(f"{len(shapes) - 3} more tensors of another shape")
    return "; ".join(parts)


def check_weights(module: Any, state: Mapping[str, Any], file: str | Path, optional: Iterable[str] = ()) -> None:
    """Raise ModelDirError naming ``file`` unless ``state`` fits ``module`` (``optional`` may be absent)."""
    problem = weights_mismatch(module.state_dict(), state, optional)
    if problem:
        raise ModelDirError(f"{file}: weights do not match config.json ({problem})")


def model_from_config(config_path: Any, config: dict[str, Any], build: Any) -> Any:
    """``build(config["model"])``, or a ModelDirError naming config.json when that section is missing or bad."""
    section = config.get("model")
    if not isinstance(section, dict):
        raise ModelDirError(f"{config_path}: " + ("no 'model' section" if section is None
                                                  else "'model' is not an object"))
    try:
        return build(section)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelDirError(f"{config_path}: invalid 'model' settings ({str(exc).splitlines()[0]})") from None
