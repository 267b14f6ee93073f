"""Character vocabulary for character-level language models (char-rnn style).

Ids are assigned to the characters of the training text in code-point order after the reserved
unknown symbol (id 0), so the same text always gives the same vocabulary. Characters that were
not in the training text encode to ``UNK_ID`` (``errors="replace"``, the default, counting them in
``unknown_count``) or raise ``InputError`` naming the character (``errors="strict"``); they decode
to U+FFFD. Saved as ``vocab.json`` in the model directory::

    {"type": "char", "unk": "<unk>", "chars": ["\\n", " ", "!", ...]}    # id = 1 + index
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from dlnlp.errors import InputError, ModelDirError
from dlnlp.io.atomic import atomic_write_text

VOCAB_NAME = "vocab.json"
UNK_ID = 0
UNK_TOKEN = "<unk>"
UNK_CHAR = "\ufffd"

__all__ = ["CharVocab", "VOCAB_NAME", "UNK_ID"]


class CharVocab:
    """Map characters to ids and back: ``CharVocab.build(text).encode("to be")``."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary needs distinct single characters")
        self.chars = chars
        self.stoi = {c: i + 1 for i, c in enumerate(chars)}
        self.itos = [UNK_CHAR, *chars]
        self.unknown_count = 0

    @classmethod
    def build(cls, texts: str | Iterable[str]) -> CharVocab:
        """The vocabulary of every character occurring in ``texts`` (a string or an iterable of them)."""
        seen: set[str] = set()
        for text in [texts] if isinstance(texts, str) else texts:
            seen.update(text)
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, errors: str = "replace") -> list[int]:
        """Ids of the characters of ``text``; unknown characters per ``errors`` ('replace' or 'strict')."""
        get = self.stoi.get
        ids = [get(c, UNK_ID) for c in text]
        if UNK_ID in ids:
            missing = sum(1 for i in ids if i == UNK_ID)
            if errors == "strict":
                char = next(c for c in text if c not in self.stoi)
                raise InputError(f"character {char!r} (U+{ord(char):04X}) is not in the model's vocabulary")
            self.unknown_count += missing
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        itos = self.itos
        size = len(itos)
        return "".join(itos[i] if 0 <= i < size else UNK_CHAR for i in ids)

    def to_json(self) -> str:
        return json.dumps({"type": "char", "unk": UNK_TOKEN, "chars": self.chars}, ensure_ascii=False) + "\n"

    def save(self, directory: str | os.PathLike, *, force: bool = True) -> Path:
        path = Path(directory) / VOCAB_NAME
        atomic_write_text(path, self.to_json(), force=force)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        """Load ``vocab.json`` (``path`` is the file or the model directory holding it)."""
        file = Path(path)
        if file.is_dir():
            file = file / VOCAB_NAME
        if not file.is_file():
            raise ModelDirError(f"{file}: no character vocabulary")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            if data.get("type") != "char":
                raise ValueError("not a character vocabulary")
            return cls(data["chars"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelDirError(f"{file}: not a valid character vocabulary ({exc})") from exc
