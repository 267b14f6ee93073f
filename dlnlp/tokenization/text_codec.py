"""One text <-> ids codec for every language model: characters, a dlnlp tokenizer, or pre-encoded ids.

A model directory says how its text became ids with ``config.json``'s ``level``:

* ``char``: a :class:`~dlnlp.tokenization.char.CharVocab` (``vocab.json``); lines end with ``"\\n"``;
* ``tokenizer``: a dlnlp tokenizer (``tokenizer.json`` or ``tokenizer.model``); each line is encoded
  alone and followed by the end-of-text id when the tokenizer has one;
* ``ids``: the text already is ids (``dlnlp tokenize encode --format ids``), one line per line.

:class:`TextCodec` is the one place that knows these differences: ``encode`` (a prompt),
``encode_lines`` (text the way training encoded it), ``decode``, ``continuation`` and ``join`` (what
decoding prints after a prompt), ``stream`` (an incremental decoder for printing tokens as they come)
and ``save``. Everything else (training data, evaluation, ``generate``, ``rnn sample``) asks the codec.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import InputError, ModelDirError

LEVELS = ("char", "tokenizer", "ids")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

__all__ = ["LEVELS", "CharCodec", "IdsCodec", "StreamDecoder", "TextCodec", "TokenizerCodec", "codec_for",
           "load_codec"]


class TextCodec:
    """Text <-> ids for one model (see the module docstring); subclasses per level."""

    level: str = ""
    vocab_size: int = 0
    eos_id: int | None = None
    # how many characters a text line counts for bits per character (None: unknown, piped ids)
    counts_characters: bool = True
    token_is_character: bool = False  # one id per character: bits per character are the loss in bits

    def encode(self, text: str, where: str = "prompt") -> list[int]:
        """Ids of a prompt; an empty prompt starts from end-of-text (as GPT-2 does with <|endoftext|>)."""
        ids = self._encode_prompt(text, where)
        if not ids:
            if self.eos_id is None:
                raise InputError(f"empty {where}: this model has no end-of-text token to start from; give a prompt")
            ids = [self.eos_id]
        return ids

    def _encode_prompt(self, text: str, where: str) -> list[int]:
        raise NotImplementedError

    def encode_lines(self, lines: Iterable[str], where: str = "<text>") -> np.ndarray:
        """Ids of lines of text, the way training encoded them (int64); errors name ``where``."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; a final end-of-text token is dropped."""
        ids = list(ids)
        if self.eos_id is not None and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        return self._decode(ids)

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def continuation(self, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
        """The text ``new_ids`` add after the prompt."""
        return self.decode(new_ids)

    def join(self, prompt: str, continuation: str) -> str:
        """A prompt and its continuation as one printed text."""
        return prompt + continuation

    def stream(self, prompt_ids: Sequence[int]) -> StreamDecoder:
        """An incremental decoder of the tokens generated after ``prompt_ids``."""
        return StreamDecoder(self, prompt_ids)

    def save(self, directory: str | os.PathLike) -> None:
        """Store what reads text for this model in a model directory (nothing for ids)."""


class CharCodec(TextCodec):
    """Characters of a :class:`~dlnlp.tokenization.char.CharVocab`; unknown characters are <unk> in
    evaluation text (counted in ``unknown``) and an error in a prompt."""

    level = "char"
    token_is_character = True

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self.vocab_size = vocab.vocab_size

    @property
    def unknown(self) -> int:
        """Characters read by :meth:`encode_lines` that are not in the vocabulary."""
        return self.vocab.unknown_count

    def _encode_prompt(self, text: str, where: str) -> list[int]:
        # an empty prompt starts after a line break, the way every training line ends
        return self.vocab.encode(text or "\n", errors="strict")

    def encode_lines(self, lines: Iterable[str], where: str = "<text>") -> np.ndarray:
        return np.asarray(self.vocab.encode("".join(line + "\n" for line in lines)), dtype=np.int64)

    def _decode(self, ids: list[int]) -> str:
        return self.vocab.decode(ids)

    def save(self, directory: str | os.PathLike) -> None:
        self.vocab.save(directory)


class TokenizerCodec(TextCodec):
    """A dlnlp :class:`~dlnlp.tokenization.tokenizer.Tokenizer` (HF tokenizers or sentencepiece)."""

    level = "tokenizer"

    def __init__(self, tokenizer: Any, eos_id: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.eos_id = eos_id if eos_id is not None else getattr(tokenizer, "eos_id", None)

    unknown = 0

    def _encode_prompt(self, text: str, where: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_batch(self, lines: Sequence[str]) -> list[int]:
        """The ids of ``lines`` as one stream, each line followed by end-of-text when there is one."""
        tok = self.tokenizer
        encoded = tok.encode_batch(lines) if hasattr(tok, "encode_batch") else [tok.encode(line) for line in lines]
        flat: list[int] = []
        for ids in encoded:
            flat.extend(ids)
            if self.eos_id is not None:
                flat.append(self.eos_id)
        return flat

    def encode_lines(self, lines: Iterable[str], where: str = "<text>") -> np.ndarray:
        return np.asarray(self.encode_batch(list(lines)), dtype=np.int64)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def continuation(self, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
        # Decoded in context: a tokenizer may put spaces or merge bytes across the boundary
        # (WordPiece, sentencepiece, byte-level BPE).
        prefix = self.tokenizer.decode(list(prompt_ids))
        whole = self.decode(list(prompt_ids) + list(new_ids))
        return whole[len(prefix):] if whole.startswith(prefix) else self.decode(new_ids)

    def save(self, directory: str | os.PathLike) -> None:
        name = "tokenizer.model" if self.tokenizer.engine == "sentencepiece" else "tokenizer.json"
        shutil.copyfile(self.tokenizer.path, Path(directory) / name)


class IdsCodec(TextCodec):
    """Pre-encoded ids: a text is a line of decimal ids separated by spaces."""

    level = "ids"
    counts_characters = False
    unknown = 0

    def __init__(self, vocab_size: int, eos_id: int | None = None) -> None:
        self.vocab_size, self.eos_id = vocab_size, eos_id

    def _encode_prompt(self, text: str, where: str) -> list[int]:
        from dlnlp.tokenization.ids import parse_id_line

        ids = parse_id_line(text, where=where)
        if ids and max(ids) >= self.vocab_size:
            raise InputError(f"{where}: id {max(ids)} is outside the vocabulary ({self.vocab_size})")
        return ids

    def encode_lines(self, lines: Iterable[str], where: str = "<ids>") -> np.ndarray:
        from dlnlp.tokenization.ids import iter_id_lines

        ids = np.asarray([i for line in iter_id_lines(lines, where=where) for i in line], dtype=np.int64)
        if ids.size and ids.max() >= self.vocab_size:
            raise InputError(f"token id {int(ids.max())} is outside the model's vocabulary")
        return ids

    def _decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))

    def join(self, prompt: str, continuation: str) -> str:
        return f"{prompt} {continuation}" if prompt and continuation else prompt + continuation


class StreamDecoder:
    """Print a continuation as its tokens arrive: ``push(token)`` returns the text that is new.

    Subword pieces do not always decode alone (byte-level BPE splits characters, sentencepiece puts
    spaces), so the whole continuation is decoded in context at each token and only a stable new
    suffix is released: text that still ends in U+FFFD (an incomplete UTF-8 sequence) waits for the
    next token. ``finish()`` releases the rest. End-of-text tokens print nothing. The pieces joined
    equal ``codec.continuation(prompt_ids, tokens)``; for ids each token is `` <id>``.
    """

    def __init__(self, codec: TextCodec, prompt_ids: Sequence[int]) -> None:
        self.codec, self.prompt_ids = codec, list(prompt_ids)
        self.ids: list[int] = []
        self.printed = ""

    def push(self, token: int) -> str:
        if self.codec.eos_id is not None and token == self.codec.eos_id:
            return ""
        self.ids.append(token)
        if isinstance(self.codec, IdsCodec):
            return " " + str(token)
        text = self.codec.continuation(self.prompt_ids, self.ids)
        if text.startswith(self.printed) and not text.endswith("\ufffd"):
            new, self.printed = text[len(self.printed):], text
            return new
        return ""

    def finish(self) -> str:
        if isinstance(self.codec, IdsCodec):
            return ""
        text = self.codec.continuation(self.prompt_ids, self.ids)
        new = text[len(self.printed):] if text.startswith(self.printed) else ""
        self.printed = text
        return new


def codec_for(level: str, *, tokenizer: Any = None, vocab: Any = None, vocab_size: int | None = None,
              eos_id: int | None = None) -> TextCodec:
    """The codec of ``level`` over an already loaded tokenizer or CharVocab (ids: ``vocab_size``)."""
    if level == "char":
        return CharCodec(vocab)
    if level == "tokenizer":
        return TokenizerCodec(tokenizer, eos_id)
    if level == "ids":
        return IdsCodec(vocab_size or 0, eos_id)
    raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}")


def guess_level(directory: str | os.PathLike) -> str:
    """For directories without a ``level`` (imported HF checkpoints): a tokenizer file, else ids."""
    return "tokenizer" if any((Path(directory) / n).is_file() for n in TOKENIZER_FILES) else "ids"


def load_codec(directory: str | os.PathLike, config: dict[str, Any], vocab_size: int, *,
               guess: bool = False) -> TextCodec:
    """The codec a model directory's ``config.json`` names (``level``, ``eos_id``).

    Without a ``level`` the directory's files decide when ``guess`` (HF imports) and it is an error
    otherwise, naming config.json.
    """
    config_path = Path(directory) / "config.json"
    level = config.get("level")
    if level is None:
        if not guess:
            raise ModelDirError(f"{config_path}: no 'level' (one of {', '.join(LEVELS)})")
        level = guess_level(directory)
    if level not in LEVELS:
        raise ModelDirError(f"{config_path}: level {level!r} is not one of {', '.join(LEVELS)}")
    eos = config.get("eos_id")
    if level == "char":
        from dlnlp.tokenization.char import CharVocab

        return CharCodec(CharVocab.load(directory))
    if level == "tokenizer":
        from dlnlp.tokenization import load_tokenizer

        return TokenizerCodec(load_tokenizer(directory), eos)
    return IdsCodec(vocab_size, eos)
