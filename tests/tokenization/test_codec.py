"""Streaming encode/decode: order across chunks, formats, parity with the engines, errors."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlnlp.errors import InputError
from dlnlp.tokenization import load_tokenizer
from dlnlp.tokenization.codec import decode_stream, encode_stream, iter_text_chunks, rechunk

LINES = ["def main():", "", "    return 42  ", "ünïcödé ✓ \r", "\t", "last line <|endoftext|>"] * 37


def encode(tok, lines, fmt="ids", chunk_chars=50):
    out = io.BytesIO()
    stats = encode_stream(tok, lines, out, fmt, chunk_chars=chunk_chars)
    return out.getvalue().decode("utf-8"), stats


def test_chunks_cover_the_lines_in_order():
    lines = [str(i) * (i % 7) for i in range(100)]
    chunks = list(iter_text_chunks(lines, chunk_chars=20))
    assert len(chunks) > 5
    assert [line for chunk in chunks for line in chunk] == lines
    assert list(iter_text_chunks([], 10)) == []


@pytest.mark.parametrize("fixture", ["bytelevel_path", "sp_bpe_path"])
def test_encode_ids_match_the_engine_line_by_line_across_many_chunks(request, fixture):
    tok = load_tokenizer(request.getfixturevalue(fixture))
    text, stats = encode(tok, LINES)
    out_lines = text.split("\n")
    assert out_lines[-1] == "" and len(out_lines) == len(LINES) + 1
    assert [list(map(int, line.split())) for line in out_lines[:-1]] == [tok.encode(x) for x in LINES]
    assert stats.lines == len(LINES) and stats.tokens == sum(len(tok.encode(x)) for x in LINES)


def test_bytelevel_encode_decode_stream_is_exact(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    text, _ = encode(tok, LINES)
    out = io.BytesIO()
    decode_stream(tok, text.split("\n")[:-1], out, chunk_chars=40)
    assert out.getvalue() == ("\n".join(LINES) + "\n").encode("utf-8")


def test_tokens_and_jsonl_formats_decode_back(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    tokens, _ = encode(tok, LINES[:6], "tokens")
    assert tokens.split("\n")[0] == " ".join(tok.tokens(LINES[0]))
    records, _ = encode(tok, LINES[:6], "jsonl")
    first = json.loads(records.split("\n")[0])
    assert first == {"ids": tok.encode(LINES[0]), "tokens": tok.tokens(LINES[0])}
    for fmt, data in (("tokens", tokens), ("jsonl", records)):
        out = io.BytesIO()
        decode_stream(tok, data.split("\n")[:-1], out, fmt)
        assert out.getvalue().decode("utf-8") == "\n".join(LINES[:6]) + "\n"


def test_decode_errors_name_the_line(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    with pytest.raises(InputError, match=r"in.ids:3: not a line of token ids"):
        decode_stream(tok, ["1 2", "", "3 x"], io.BytesIO(), where="in.ids")
    with pytest.raises(InputError, match="in.ids: token id 99999 is out of range"):
        decode_stream(tok, ["1 99999"], io.BytesIO(), where="in.ids")
    with pytest.raises(InputError, match=r"t:1: token 'not-a-token\\u2603'|t:1: token"):
        decode_stream(tok, ["not-a-token\u2603"], io.BytesIO(), "tokens", where="t")
    with pytest.raises(InputError, match='j:1: expected a JSON object with "ids"'):
        decode_stream(tok, ['{"tokens": []}'], io.BytesIO(), "jsonl", where="j")
    with pytest.raises(InputError, match="--format"):
        encode_stream(tok, ["a"], io.BytesIO(), "xml")


def test_bigger_bpe_cache_never_changes_the_ids(bytelevel_path):
    from tokenizers import Tokenizer as HF

    from tests.conftest import shared_path

    lines = shared_path("corpora/tinyshakespeare.txt").read_text(encoding="utf-8").split("\n")[:4000]
    hf = HF.from_file(bytelevel_path)
    tok = load_tokenizer(bytelevel_path)
    assert tok.encode_batch(lines) == [e.ids for e in hf.encode_batch(lines)]
    assert tok.encode_batch(lines) == [e.ids for e in hf.encode_batch(lines)]  # second pass: from the cache


def _chunks_line_by_line(lines, chunk_chars, max_lines):
    """The grouping rule written per line: a chunk ends at the line that brings it to chunk_chars
    characters (newlines counted) or max_lines lines."""
    chunks, chunk, size = [], [], 0
    for line in lines:
        chunk.append(line)
        size += len(line) + 1
        if size >= chunk_chars or len(chunk) >= max_lines:
            chunks.append(chunk)
            chunk, size = [], 0
    return chunks + ([chunk] if chunk else [])


@given(
    lines=st.lists(st.text(max_size=12), max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=6),
    chunk_chars=st.integers(1, 60),
    max_lines=st.integers(1, 9),
)
def test_rechunk_groups_blocks_exactly_as_line_by_line(lines, cuts, chunk_chars, max_lines):
    bounds = sorted([0, len(lines), *(c for c in cuts if c <= len(lines))])  # repeats give empty blocks
    blocks = [lines[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert list(rechunk(blocks, chunk_chars, max_lines)) == _chunks_line_by_line(lines, chunk_chars, max_lines)
