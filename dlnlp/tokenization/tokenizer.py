"""One tokenizer interface over the two engines: HF ``tokenizers`` (tokenizer.json) and ``sentencepiece`` (.model).

The files are the engines' own formats, unchanged: ``tokenizers.Tokenizer.from_file`` and
``sentencepiece.SentencePieceProcessor(model_file=...)`` load what ``dlnlp tokenize train`` writes, and
:func:`load_tokenizer` loads files written by either library. The wrapper is thin: it only makes
the two APIs look alike (ids in, ids out, special-token ids as ``None`` when absent) and keeps the
encode/decode settings that make byte-level BPE round trip exactly (no special tokens added,
none skipped on decode).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dlnlp.errors import InputError

# Conventional names of the special tokens, in the order they are looked up. GPT-2 style byte-level
# BPE has one special token, <|endoftext|>, that ends (and separates) documents: it is the eos.
EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]")
BOS_NAMES = ("<s>", "<bos>", "<|startoftext|>", "[CLS]")
PAD_NAMES = ("<pad>", "[PAD]", "<|pad|>")
UNK_NAMES = ("<unk>", "[UNK]", "<|unk|>")
MASK_NAMES = ("<mask>", "[MASK]")

SENTENCEPIECE_MAGIC_SUFFIXES = (".model", ".spm")


def _is_sentencepiece(path: Path) -> bool:
    """A .model/.spm file, or any file that is not JSON (sentencepiece models are protobuf)."""
    if path.suffix in SENTENCEPIECE_MAGIC_SUFFIXES:
        return True
    if path.suffix == ".json":
        return False
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    return not head.startswith(b"{")


class Tokenizer:
    """A loaded tokenizer: ``encode``/``decode`` ids, vocabulary look-ups and special-token ids.

    ``engine`` is ``"hf"`` or ``"sentencepiece"``; ``backend`` is the engine's own object
    (``tokenizers.Tokenizer`` or ``sentencepiece.SentencePieceProcessor``) for anything else.
    """

    def __init__(self, backend: Any, engine: str, path: str | None = None, source: str | None = None):
        self.backend = backend
        self.engine = engine
        self.path = path
        self._threads = os.cpu_count() or 1
        self._special_tokens: dict[str, int] | None = None
        if engine == "hf":
            self._model_type = type(backend.model).__name__
            if self._model_type == "BPE":
                _enlarge_bpe_cache(backend, source)
            self._special_tokens = {
                added.content: token_id
                for token_id, added in sorted(backend.get_added_tokens_decoder().items())
                if added.special
            }
            unk = getattr(backend.model, "unk_token", None)
            if self._model_type == "Unigram":
                unk_index = _unigram_unk_id(backend)
                unk = backend.id_to_token(unk_index) if unk_index is not None else None
            self.unk_id = backend.token_to_id(unk) if unk else self._find(UNK_NAMES)
            self.eos_id = self._find(EOS_NAMES)
            self.bos_id = self._find(BOS_NAMES)
            self.pad_id = self._find(PAD_NAMES)
            self.mask_id = self._find(MASK_NAMES)
        elif engine == "sentencepiece":
            self._model_type = "sentencepiece"
            sp = backend

            def optional(value: int) -> int | None:
                return None if value < 0 else value

            self.unk_id = optional(sp.unk_id())
            self.bos_id = optional(sp.bos_id())
            self.eos_id = optional(sp.eos_id())
            self.pad_id = optional(sp.pad_id())
            self.mask_id = None
        else:
            raise ValueError(f"unknown engine {engine!r}")

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token -> id (sentencepiece: control, unknown and user-defined pieces)."""
        if self._special_tokens is None:
            # Read from the model proto on first use, not at load: it takes tens of milliseconds, a
            # large share of a short `dlnlp tokenize encode` in a pipeline.
            self._special_tokens = _sentencepiece_specials(self.backend)
        return self._special_tokens

    def _find(self, names: Sequence[str]) -> int | None:
        for name in names:
            token_id = self.backend.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    # --- encoding -------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """The ids of one text (no special tokens added)."""
        if self.engine == "hf":
            return self.backend.encode(text, add_special_tokens=False).ids
        return self.backend.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of many texts, encoded in parallel by the engine."""
        if self.engine == "hf":
            return [e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]
        return self.backend.encode(list(texts), out_type=int, num_threads=self._threads)

    def tokens(self, text: str) -> list[str]:
        """The token strings (pieces) of one text."""
        return self.tokens_batch([text])[0]

    def tokens_batch(self, texts: Sequence[str]) -> list[list[str]]:
        if self.engine == "hf":
            return [e.tokens for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]
        return self.backend.encode(list(texts), out_type=str, num_threads=self._threads)

    # --- decoding -------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of ``ids``; special tokens are kept unless asked (so round trips are exact)."""
        self._check_ids(ids)
        if self.engine == "hf":
            return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return self.backend.decode(list(ids))

    def decode_batch(self, batch: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        for ids in batch:
            self._check_ids(ids)
        if self.engine == "hf":
            return self.backend.decode_batch([list(ids) for ids in batch], skip_special_tokens=skip_special_tokens)
        return self.backend.decode([list(ids) for ids in batch], num_threads=self._threads)

    def _check_ids(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        size = self.vocab_size
        low, high = min(ids), max(ids)
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise InputError(f"token id {bad} is out of range for a vocabulary of {size}")

    # --- vocabulary -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """The number of ids (special and added tokens included)."""
        if self.engine == "hf":
            return self.backend.get_vocab_size(with_added_tokens=True)
        return self.backend.get_piece_size()

    def token_to_id(self, token: str) -> int | None:
        if self.engine == "hf":
            return self.backend.token_to_id(token)
        token_id = self.backend.piece_to_id(token)
        # sentencepiece maps unknown pieces to unk_id; report "absent" as None like HF does.
        if token_id == self.unk_id and token != self.backend.id_to_piece(token_id):
            return None
        return token_id

    def id_to_token(self, token_id: int) -> str | None:
        if not 0 <= token_id < self.vocab_size:
            return None
        if self.engine == "hf":
            return self.backend.id_to_token(token_id)
        return self.backend.id_to_piece(token_id)

    def get_vocab(self) -> dict[str, int]:
        if self.engine == "hf":
            return self.backend.get_vocab(with_added_tokens=True)
        return {self.backend.id_to_piece(i): i for i in range(self.backend.get_piece_size())}

    @property
    def model_type(self) -> str:
        """BPE, WordPiece, Unigram, WordLevel (HF) or the sentencepiece model type (bpe, unigram, ...)."""
        if self.engine == "hf":
            return self._model_type
        return sentencepiece_model_type(self.backend)

    @property
    def is_byte_level(self) -> bool:
        """True for GPT-2 style byte-level BPE: every byte string round trips exactly."""
        if self.engine != "hf":
            return False
        pre = json.loads(self.backend.to_str()).get("pre_tokenizer") or {}
        kinds = [pre.get("type")] + [p.get("type") for p in pre.get("pretokenizers", [])]
        return "ByteLevel" in kinds

    def merges(self) -> list[tuple[str, str]]:
        """The BPE merges in order (empty for other models)."""
        if self.engine == "hf":
            model = json.loads(self.backend.to_str()).get("model", {})
            merges = model.get("merges") or []
            return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
        return []

    def __repr__(self) -> str:
        return f"Tokenizer(engine={self.engine!r}, model={self.model_type!r}, vocab_size={self.vocab_size})"


# HF's BPE memoizes the tokens of each word it has seen, 10,000 words by default; a corpus has many
# more word types (embed-train: 54k), so a bigger cache saves about a quarter of the encode time.
# The cache is not part of tokenizer.json: it only changes speed, never the ids.
BPE_CACHE_CAPACITY = 1 << 18


def _enlarge_bpe_cache(backend: Any, source: str | None = None, capacity: int = BPE_CACHE_CAPACITY) -> None:
    from tokenizers import models

    model = json.loads(source or backend.to_str()).get("model", {})
    if model.get("dropout") not in (None, 0.0):
        return  # with dropout the tokens of a word vary, so HF does not cache them anyway
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    options = {key: model[key] for key in ("unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                           "fuse_unk", "byte_fallback", "ignore_merges") if model.get(key) is not None}
    try:
        backend.model = models.BPE(model["vocab"], merges, cache_capacity=capacity, **options)
    except Exception:  # an unusual BPE file: keep the model as loaded
        return


def _unigram_unk_id(backend: Any) -> int | None:
    model = json.loads(backend.to_str()).get("model", {})
    return model.get("unk_id")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message; enough to read a sentencepiece model
    without depending on the protobuf package (sentencepiece does not require it)."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


# sentencepiece_model.proto: ModelProto.pieces = 1, ModelProto.trainer_spec = 2,
# SentencePiece.type = 3 (USER_DEFINED = 4), TrainerSpec.model_type = 3.
_SP_USER_DEFINED = 4
_SP_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _sentencepiece_specials(sp: Any) -> dict[str, int]:
    """Control, unknown and user-defined pieces (the processor has no is_user_defined)."""
    user_defined: set[int] = set()
    try:
        index = 0
        for number, _, value in _proto_fields(sp.serialized_model_proto()):
            if number == 1:
                piece_type = next((v for n, w, v in _proto_fields(value) if n == 3 and w == 0), 1)
                if piece_type == _SP_USER_DEFINED:
                    user_defined.add(index)
                index += 1
    except (ValueError, IndexError):  # an unusual model: report control and unknown pieces only
        pass
    return {
        sp.id_to_piece(i): i for i in range(sp.get_piece_size())
        if sp.is_control(i) or sp.is_unknown(i) or i in user_defined
    }


def sentencepiece_model_type(sp: Any) -> str:
    """The model type (unigram, bpe, word, char) stored in a sentencepiece model."""
    try:
        for number, _, value in _proto_fields(sp.serialized_model_proto()):
            if number == 2:
                for inner, wire, kind in _proto_fields(value):
                    if inner == 3 and wire == 0:
                        return _SP_MODEL_TYPES.get(kind, "unknown")
                return "unigram"  # the proto default
    except (ValueError, IndexError):
        pass
    return "unknown"


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a HF tokenizer.json or a sentencepiece .model file (a model directory's tokenizer too).

    A directory is searched for ``tokenizer.json`` then ``tokenizer.model``. Raises InputError with a
    one-line message for a missing, unreadable or corrupt file.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise InputError(f"{path}: directory holds no tokenizer.json or tokenizer.model")
    if not path.exists():
        raise InputError(f"{path}: no such tokenizer file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a tokenizer")
    try:
        sentencepiece = _is_sentencepiece(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read tokenizer: {exc.strerror or exc}") from exc
    if sentencepiece:
        import sentencepiece as spm

        try:
            sp = spm.SentencePieceProcessor(model_file=str(path))
        except Exception as exc:
            raise InputError(f"{path}: not a sentencepiece model or HF tokenizer.json") from exc
        return Tokenizer(sp, "sentencepiece", str(path))
    from tokenizers import Tokenizer as HFTokenizer

    try:
        source = path.read_text(encoding="utf-8")
        backend = HFTokenizer.from_str(source)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a valid tokenizer.json ({detail})") from exc
    return Tokenizer(backend, "hf", str(path), source)
