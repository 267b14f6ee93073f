"""Subword tokenization over HF ``tokenizers`` and ``sentencepiece``.

Python API (the CLI ``dlnlp tokenize`` is a thin layer over it)::

    from dlnlp.tokenization import load_tokenizer, read_id_lines
    tok = load_tokenizer("tok.json")          # or a sentencepiece .model, or a model directory
    ids = tok.encode("Hello world")           # list[int], no special tokens added
    tok.decode(ids)                            # "Hello world"
    tok.vocab_size, tok.eos_id, tok.pad_id     # special-token ids are None when absent
    for ids in read_id_lines(["corpus.ids"]):  # the `dlnlp tokenize encode --format ids` format
        ...

Importing this package is cheap: the engines are imported when a tokenizer is loaded or trained.
"""

from __future__ import annotations

from dlnlp.tokenization.ids import (
    format_id_line,
    format_id_lines,
    iter_id_lines,
    looks_like_ids,
    parse_id_line,
    read_id_lines,
)
from dlnlp.tokenization.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "Tokenizer",
    "format_id_line",
    "format_id_lines",
    "iter_id_lines",
    "load_tokenizer",
    "looks_like_ids",
    "parse_id_line",
    "read_id_lines",
]
