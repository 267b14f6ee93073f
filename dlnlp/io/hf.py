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


def _tokenizer_config(directory: Path) -> dict[str, Any]:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    return config if isinstance(config, dict) else {}


def wordpiece_tokenizer_json(vocab_file: str | os.PathLike, *, lowercase: bool = True,
                             strip_accents: bool | None = None, chinese_chars: bool = True) -> str:
    """A ``tokenizers`` tokenizer.json for a BERT ``vocab.txt`` (one WordPiece token a line, the id is
    the line number), the pipeline of HF's ``BertTokenizerFast``: BertNormalizer (clean text, CJK
    characters spaced, lowercase and accent stripping as asked), BertPreTokenizer, WordPiece with
    ``##`` continuations and ``[UNK]``, ``[CLS] A [SEP] (B [SEP])`` when special tokens are added.
    The bracketed special tokens present in the vocabulary are registered as special."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    path = Path(vocab_file)
    try:
        tokens = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the vocabulary ({exc})") from exc
    if tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        token = token.rstrip("\r")
        vocab[token] = index  # a duplicated line keeps its last id, as HF's load_vocab does
    if "[UNK]" not in vocab:
        raise InputError(f"{path}: no [UNK] token in the vocabulary")
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=chinese_chars,
                                                      strip_accents=strip_accents, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    from dlnlp.tokenization.train import WORDPIECE_SPECIALS

    specials = [t for t in WORDPIECE_SPECIALS if t in vocab]
    tokenizer.add_special_tokens(specials)
    if "[CLS]" in vocab and "[SEP]" in vocab:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tokenizer.to_str()


def read_hf_tokenizer(directory: str | os.PathLike) -> str | None:
    """The tokenizer of a HF checkpoint directory as tokenizer.json text, or None when it has none.

    ``tokenizer.json`` is taken as is, apart from the fixed truncation and padding some checkpoints
    save in it (all-MiniLM-L6-v2: 128 tokens), which transformers overrides on every call and dlnlp
    would apply to every text; a directory with only ``vocab.txt`` gets the WordPiece tokenizer of
    :func:`wordpiece_tokenizer_json`, with ``do_lower_case``, ``strip_accents`` and
    ``tokenize_chinese_chars`` from ``tokenizer_config.json`` (HF's defaults: true, none, true).
    """
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        path = directory / "tokenizer.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or "model" not in data:
            raise InputError(f"{path}: not a HF tokenizers file (no 'model')")
        data["truncation"] = None
        data["padding"] = None
        return json.dumps(data, ensure_ascii=False)
    if (directory / "vocab.txt").is_file():
        config = _tokenizer_config(directory)
        return wordpiece_tokenizer_json(directory / "vocab.txt", lowercase=bool(config.get("do_lower_case", True)),
                                        strip_accents=config.get("strip_accents"),
                                        chinese_chars=bool(config.get("tokenize_chinese_chars", True)))
    return None
