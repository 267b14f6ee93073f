"""HF checkpoint directories, whatever the model: ``config.json``, safetensors weights, tokenizer files.

What is generic to HF directories lives here (reading and checking ``config.json``, loading the
safetensors shards and refusing pickled weights, writing a character vocabulary as a ``tokenizers``
``tokenizer.json``); each model family maps the tensors onto its own model beside its model file
(GPT-2: :mod:`dlnlp.models.gpt_hf`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dlnlp.errors import InputError

WEIGHT_FILES = ("model.safetensors",)


def read_hf_config(directory: str | os.PathLike, model_type: str | None = None) -> dict[str, Any]:
    """``config.json`` of a HF checkpoint directory, checked to be JSON (and of ``model_type`` if given)."""
    directory = Path(directory)
    path = directory / "config.json"
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    if not path.is_file():
        raise InputError(f"{directory}: not a HF checkpoint directory (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a HF config (a JSON object expected)")
    if model_type is not None and config.get("model_type") != model_type:
        raise InputError(f"{path}: model_type {config.get('model_type')!r} is not supported (only {model_type})")
    return config


def read_hf_weights(directory: str | os.PathLike) -> dict[str, Any]:
    """Every tensor of a HF checkpoint directory's safetensors files (sharded or not); never unpickles."""
    directory = Path(directory)
    from safetensors.torch import load_file

    files = sorted(directory.glob("model*.safetensors"))
    if not files:
        if any(directory.glob("*.bin")):
            raise InputError(f"{directory}: only pickled (.bin) weights found; dlnlp reads safetensors only")
        raise InputError(f"{directory}: no model.safetensors")
    state: dict[str, Any] = {}
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as exc:
            raise InputError(f"{file}: cannot read safetensors weights ({exc})") from exc
    return state


def char_tokenizer_json(chars: list[str]) -> str:
    """A HF ``tokenizers`` tokenizer.json giving the ids of :class:`~dlnlp.tokenization.char.CharVocab`.

    WordLevel over single code points (split by the regex ``[\\s\\S]``, no normalizer), id 0 =
    ``<unk>`` for characters outside the vocabulary; decoding maps ``<unk>`` to U+FFFD and joins
    the characters without spaces. ``<unk>`` is not an added token, so the text "<unk>" is five
    characters, as in dlnlp.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from dlnlp.tokenization.char import UNK_CHAR, UNK_ID, UNK_TOKEN

    vocab = {UNK_TOKEN: UNK_ID, **{c: i + 1 for i, c in enumerate(chars)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.Replace(UNK_TOKEN, UNK_CHAR), decoders.Fuse()])
    return tokenizer.to_str()
