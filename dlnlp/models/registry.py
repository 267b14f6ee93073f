"""The model families, keyed by ``config.json``'s ``kind``: one :func:`load_model` for every model directory.

Each family registers a :class:`Family` from its own model file (``register(Family(...))`` at the end
of ``dlnlp/models/gpt.py``, ``rnn_lm.py``, ...). The registry imports those files only when a kind
is first looked up (:data:`FAMILY_MODULES`), so importing the CLI loads no model code::

    from dlnlp.models.registry import load_model
    loaded = load_model("run", device="cuda")
    loaded.model, loaded.config, loaded.codec, loaded.family.kind
    lm = loaded.next_token()            # a dlnlp.decoding NextTokenModel, for families that decode

A new family adds its module to :data:`FAMILY_MODULES` (or is registered by code that imported it,
as a test's toy family is) and needs no other file to change.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlnlp.errors import ModelDirError

# kind -> the module whose import registers it (imported on first lookup)
FAMILY_MODULES = {
    "gpt": "dlnlp.models.gpt",
    "rnn_lm": "dlnlp.models.rnn_lm",
    "ngram": "dlnlp.models.ngram",
    "word2vec": "dlnlp.models.word2vec",
    "vectors": "dlnlp.models.vectors",
    "bert": "dlnlp.models.bert",
    "elmo": "dlnlp.models.elmo",
    "bilstm": "dlnlp.models.bilstm",
}

__all__ = ["FAMILY_MODULES", "Family", "LoadedModel", "get_family", "kinds", "load_model", "register"]


@dataclass(frozen=True)
class Family:
    """What dlnlp knows about one kind of model directory.

    ``load(directory, device) -> (model, config)`` reads weights and ``config.json`` (the kind and
    format version are checked before it is called). ``codec(directory, config, model)`` returns the
    :class:`~dlnlp.tokenization.text_codec.TextCodec` that reads text for the model, or None.
    ``hf_converter`` and ``next_token`` are ``"module:attribute"`` references, resolved when used:
    decoding adapters live in :mod:`dlnlp.decoding`, which sits above the models, so a model file
    names its adapter without importing it. ``next_token(model)`` returns a NextTokenModel.
    """

    kind: str
    load: Callable[[Path, Any], tuple[Any, dict[str, Any]]]
    format_versions: tuple[int, ...] = (1,)
    config_class: type | None = None
    build: Callable[..., Any] | None = None
    save: Callable[..., Any] | None = None
    codec: Callable[[Path, dict[str, Any], Any], Any] | None = None
    hf_converter: str | None = None
    next_token: str | None = None
    description: str = ""

    def resolve(self, name: str) -> Any:
        """The object behind the ``"module:attribute"`` reference in field ``name`` (None when unset)."""
        ref = getattr(self, name)
        if ref is None:
            return None
        module, _, attribute = ref.partition(":")
        return getattr(importlib.import_module(module), attribute)


@dataclass
class LoadedModel:
    """A model read from its directory, with its ``config.json``, its codec and its family."""

    model: Any
    config: dict[str, Any]
    codec: Any
    family: Family
    directory: Path = field(default_factory=Path)

    def next_token(self) -> Any:
        """The model seen by :mod:`dlnlp.decoding` (a NextTokenModel)."""
        adapter = self.family.resolve("next_token")
        if adapter is None:
            raise ModelDirError(f"{self.directory}: a {self.family.kind!r} model does not decode token by token "
                                f"(models that do: {', '.join(kinds(decodes=True))})")
        return adapter(self.model)


_FAMILIES: dict[str, Family] = {}


class _EveryVersion(tuple):
    def __contains__(self, version: object) -> bool:
        return True


_EVERY_VERSION = _EveryVersion()


def register(family: Family) -> Family:
    """Add (or replace) the family of ``family.kind``."""
    _FAMILIES[family.kind] = family
    return family


def _import_known(kind: str | None = None) -> None:
    for name, module in FAMILY_MODULES.items():
        if (kind is None or name == kind) and name not in _FAMILIES:
            importlib.import_module(module)


def kinds(decodes: bool = False) -> list[str]:
    """Every registered kind (sorted); with ``decodes`` only those with a decoding adapter."""
    _import_known()
    return sorted(k for k, f in _FAMILIES.items() if not decodes or f.next_token is not None)


def get_family(kind: str, where: str | os.PathLike = "") -> Family:
    """The family of ``kind``; a ModelDirError naming the kind and the supported ones otherwise."""
    _import_known(kind)
    if kind not in _FAMILIES:
        prefix = f"{where}: " if where else ""
        raise ModelDirError(f"{prefix}kind {kind!r} is not a model dlnlp knows (supported: {', '.join(kinds())})")
    return _FAMILIES[kind]


def read_family(directory: str | os.PathLike, expected: str | tuple[str, ...] | None = None
                ) -> tuple[Family, dict[str, Any]]:
    """(family, config.json) of a model directory, its kind and format version checked."""
    from dlnlp.io.modeldir import CONFIG_NAME, read_config

    directory = Path(directory)
    # read_config checks the directory, the file, its JSON and that 'kind' and 'format_version' exist;
    # the version is checked against the family's below, so that the message names what it supports
    config = read_config(directory, supported_versions=_EVERY_VERSION)
    wanted = (expected,) if isinstance(expected, str) else expected
    if wanted and config["kind"] not in wanted:
        raise ModelDirError(f"{directory}: holds a {config['kind']!r} model, expected "
                            f"{' or '.join(repr(k) for k in wanted)}")
    family = get_family(config["kind"], directory / CONFIG_NAME)
    version = config["format_version"]
    if version not in family.format_versions:
        raise ModelDirError(f"{directory / CONFIG_NAME}: format_version {version!r} of kind {family.kind!r} is not "
                            f"supported (supported: {', '.join(map(str, family.format_versions))})")
    return family, config


def load_model(directory: str | os.PathLike, device: Any = "cpu", *,
               kind: str | tuple[str, ...] | None = None) -> LoadedModel:
    """Load any model directory: the model (eval mode for torch models) on ``device``, config and codec.

    ``kind`` restricts the kinds accepted (``rnn eval`` takes ``rnn_lm`` only).
    """
    directory = Path(directory)
    family, _ = read_family(directory, kind)
    model, config = family.load(directory, device)
    codec = family.codec(directory, config, model) if family.codec is not None else None
    return LoadedModel(model, config, codec, family, directory)
