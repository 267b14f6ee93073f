"""Saving and loading torch models' weights: checked against the model config.json describes, tied
matrices stored once.

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


class TiedWeights:
    """A module whose tied matrices (an output layer sharing the input embedding) are saved once.

    ``tied_weights()`` names the parameters that are views of another one; ``state_dict_for_save``
    leaves them out and ``load_saved_state`` accepts their absence (strict about everything else).
    """

    def tied_weights(self) -> tuple[str, ...]:
        return ()

    def state_dict_for_save(self) -> dict[str, Any]:
        state = self.state_dict()
        for name in self.tied_weights():
            state.pop(name, None)
        return state

    def load_saved_state(self, state: Mapping[str, Any]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in self.tied_weights()]
        if missing or unexpected:
            raise KeyError(f"weights do not match the model: missing {missing}, unexpected {unexpected}")


def load_torch_model(directory: str | Path, kind: str, versions: tuple[int, ...], build: Any,
                     device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """(model in eval mode on ``device``, config.json) of a model directory of ``kind``: ``build(config["model"])``
    with the saved weights, every mismatch a one-line ModelDirError naming the file."""
    from dlnlp.io.modeldir import CONFIG_NAME, WEIGHTS_NAME, load_weights, read_config

    config = read_config(directory, kind, versions)
    if not (Path(directory) / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{directory}: no {WEIGHTS_NAME} yet (training saves it at the first validation)")
    model = model_from_config(Path(directory) / CONFIG_NAME, config, build)
    state = load_weights(directory)
    check_weights(model, state, Path(directory) / WEIGHTS_NAME, optional=model.tied_weights())
    model.load_saved_state(state)
    return model.to(device).eval(), config


def saved_text_codec(directory: Path, config: dict[str, Any], model: Any) -> Any:
    """The codec config.json's ``level`` names; without one (an HF import) the directory's tokenizer
    file, or plain ids."""
    from dlnlp.tokenization.text_codec import load_codec

    return load_codec(directory, config, model.config.vocab_size, guess=True)
