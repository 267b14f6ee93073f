"""Streaming encode and decode: one line in, one line out, order kept, batched and parallel.

Lines are grouped into chunks of about a megabyte; each chunk is encoded by the engine's batch call
(``encode_batch_fast`` for HF, which runs on all cores in Rust and releases the GIL; sentencepiece's
multi-threaded list ``encode``). One background thread runs the engine on chunk *n + 1* while the main
thread formats and writes chunk *n* and reads the next one, so the Python work overlaps the encoding.
Output goes to a binary stream in one write per chunk.

Formats (``--format``):

- ``ids``: the token ids of each line separated by single spaces (see :mod:`dlnlp.tokenization.ids`);
- ``tokens``: the token strings separated by single spaces;
- ``jsonl``: ``{"ids": [...], "tokens": [...]}`` per line.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Any

from dlnlp.errors import InputError, OptionError, UsageError
from dlnlp.tokenization.tokenizer import Tokenizer

FORMATS = ("ids", "tokens", "jsonl")
CHUNK_CHARS = 1 << 20
CHUNK_MAX_LINES = 1 << 16
# decode reads lines up to this many times the text line limit (io.corpus.max_line_chars()), so that it
# decodes whatever encode writes for a line under that limit: a character is at most 4 tokens (one per
# UTF-8 byte), written in the ids format in at most 8 characters each (vocabularies under 10 million),
# in the tokens format in at most 7 (a byte piece "<0xAB>" and a space), and in jsonl in at most 24.
DECODE_LINE_FACTOR = {"ids": 32, "tokens": 32, "jsonl": 96}


def decode_line_chars(fmt: str = "ids") -> int:
    """The longest line (in characters) that decode reads in format ``fmt``: a multiple of the text limit."""
    from dlnlp.io.corpus import max_line_chars

    return DECODE_LINE_FACTOR.get(fmt, max(DECODE_LINE_FACTOR.values())) * max_line_chars()


@dataclass
class CodecStats:
    """What an encode or decode run processed."""

    lines: int = 0
    tokens: int = 0
    chars: int = 0

    def add(self, lines: int, tokens: int, chars: int,
            on_chunk: Callable[[int, int], None] | None = None) -> None:
        """Count one chunk and report it (lines, tokens) to ``on_chunk``."""
        self.lines += lines
        self.tokens += tokens
        self.chars += chars
        if on_chunk:
            on_chunk(lines, tokens)


def iter_text_chunks(lines: Iterable[str], chunk_chars: int = CHUNK_CHARS,
                     max_lines: int = CHUNK_MAX_LINES) -> Iterator[list[str]]:
    """Group lines into chunks of about ``chunk_chars`` characters (at most ``max_lines`` lines)."""
    from dlnlp.io.corpus import iter_chunks

    return rechunk(iter_chunks(lines, 4096), chunk_chars, max_lines)


def rechunk(blocks: Iterable[list[str]], chunk_chars: int = CHUNK_CHARS,
            max_lines: int = CHUNK_MAX_LINES) -> Iterator[list[str]]:
    """Regroup lists of lines (``iter_line_blocks``) into chunks of about ``chunk_chars`` characters,
    newlines counted, and at most ``max_lines`` lines, in order: a chunk ends at the first line that
    brings it to ``chunk_chars``. Lines are moved in slices, not one by one."""
    chunk: list[str] = []
    size = 0
    for block in blocks:
        ends = list(accumulate(len(line) + 1 for line in block))  # chunk size after each line
        start = 0
        while start < len(block):
            before = ends[start - 1] if start else 0
            stop = bisect_left(ends, chunk_chars - size + before, lo=start) + 1  # the line that fills it
            stop = min(stop, start + max_lines - len(chunk), len(block))
            chunk.extend(block[start:stop])
            size += ends[stop - 1] - before
            start = stop
            if size >= chunk_chars or len(chunk) >= max_lines:
                yield chunk
                chunk = []
                size = 0
    if chunk:
        yield chunk


def _encoder(tokenizer: Tokenizer, fmt: str) -> Callable[[list[str]], tuple[list, list | None]]:
    """A function from a chunk of lines to (ids per line, tokens per line or None)."""
    backend = tokenizer.backend
    if tokenizer.engine == "hf":
        if fmt == "ids":
            # encode_batch_fast skips offset tracking, which ids do not need.
            return lambda chunk: ([e.ids for e in backend.encode_batch_fast(chunk, add_special_tokens=False)], None)

        def encode_hf(chunk: list[str]) -> tuple[list, list]:
            encodings = backend.encode_batch(chunk, add_special_tokens=False)
            return [e.ids for e in encodings], [e.tokens for e in encodings]

        return encode_hf
    threads = tokenizer._threads
    if fmt == "ids":
        return lambda chunk: (backend.encode(chunk, out_type=int, num_threads=threads), None)

    def encode_sp(chunk: list[str]) -> tuple[list, list]:
        ids = backend.encode(chunk, out_type=int, num_threads=threads)
        return ids, [[backend.id_to_piece(i) for i in line] for line in ids]

    return encode_sp


def _formatter(tokenizer: Tokenizer, fmt: str) -> Callable[[list, list | None], str]:
    if fmt == "ids":
        # Indexing a table of decimal strings is about twice as fast as str() on every id.
        table = [str(i) for i in range(tokenizer.vocab_size)]
        lookup = table.__getitem__
        return lambda ids, _tokens: "\n".join([" ".join(map(lookup, line)) for line in ids]) + "\n"
    if fmt == "tokens":
        return lambda _ids, tokens: "\n".join([" ".join(line) for line in tokens]) + "\n"
    if fmt == "jsonl":
        dumps = json.dumps
        return lambda ids, tokens: "".join(
            dumps({"ids": i, "tokens": t}, ensure_ascii=False) + "\n" for i, t in zip(ids, tokens, strict=True)
        )
    raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def encode_stream(tokenizer: Tokenizer, lines: Iterable[str], out: IO[bytes], fmt: str = "ids",
                  *, chunk_chars: int = CHUNK_CHARS, on_chunk: Callable[[int, int], None] | None = None) -> CodecStats:
    """Encode ``lines`` to ``out`` (a binary stream), one output line per input line, in order."""
    return encode_chunks(tokenizer, iter_text_chunks(lines, chunk_chars), out, fmt, on_chunk=on_chunk)


def _framed(encode: Callable[[list[str]], tuple[list, list | None]], tokenizer: Tokenizer, bos: bool,
            eos: bool) -> Callable[[list[str]], tuple[list, list | None]]:
    """``encode`` with the tokenizer's beginning-of-text id before and/or end-of-text id after every line."""
    for wanted, token_id, option in ((bos, tokenizer.bos_id, "--add-bos"), (eos, tokenizer.eos_id, "--add-eos")):
        if wanted and token_id is None:
            kind = "beginning" if option == "--add-bos" else "end"
            raise OptionError(f"{option}: the tokenizer {tokenizer.path} has no {kind}-of-text token")
    if not (bos or eos):
        return encode
    head = [tokenizer.bos_id] if bos else []
    tail = [tokenizer.eos_id] if eos else []
    head_tokens = [tokenizer.id_to_token(i) for i in head]
    tail_tokens = [tokenizer.id_to_token(i) for i in tail]

    def framed(chunk: list[str]) -> tuple[list, list | None]:
        ids, tokens = encode(chunk)
        ids = [head + line + tail for line in ids]
        if tokens is not None:
            tokens = [head_tokens + line + tail_tokens for line in tokens]
        return ids, tokens

    return framed


def encode_chunks(tokenizer: Tokenizer, chunks: Iterable[list[str]], out: IO[bytes], fmt: str = "ids",
                  *, on_chunk: Callable[[int, int], None] | None = None, add_bos: bool = False,
                  add_eos: bool = False) -> CodecStats:
    """:func:`encode_stream` on lines already in chunks (``rechunk(iter_line_blocks(...))``); ``add_bos`` /
    ``add_eos`` put the tokenizer's beginning- / end-of-text id around every line."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    encode = _framed(_encoder(tokenizer, fmt), tokenizer, add_bos, add_eos)
    render = _formatter(tokenizer, fmt)
    stats = CodecStats()

    def finish(future: Future, chunk: list[str]) -> None:
        ids, tokens = future.result()
        out.write(render(ids, tokens).encode("utf-8"))
        stats.add(len(chunk), sum(map(len, ids)), sum(map(len, chunk)), on_chunk)

    _pipelined(chunks, encode, finish)
    return stats


def encode_to_shards(tokenizer: Tokenizer, chunks: Iterable[list[str]], writer: Any, *,
                     on_chunk: Callable[[int, int], None] | None = None, add_bos: bool = False,
                     add_eos: bool = False) -> CodecStats:
    """Encode chunks of lines into a :class:`~dlnlp.io.shards.ShardWriter` (``--format bin``): each line's
    ids are one document, exactly the ids ``--format ids`` prints for it. One chunk is encoded while
    the one before is written, as :func:`encode_chunks` does."""
    encode = _framed(_encoder(tokenizer, "ids"), tokenizer, add_bos, add_eos)
    stats = CodecStats()

    def finish(future: Future, chunk: list[str]) -> None:
        ids = future.result()[0]
        writer.write(ids)
        stats.add(len(chunk), sum(map(len, ids)), sum(map(len, chunk)), on_chunk)

    _pipelined(chunks, encode, finish)
    return stats


def _pipelined(chunks: Iterable[list[str]], encode: Callable[[list[str]], Any],
               finish: Callable[[Future, list[str]], None]) -> None:
    """``encode`` each chunk on a worker thread while the one before it is ``finish``ed (written)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlnlp-encode") as pool:
        pending: tuple[Future, list[str]] | None = None
        for chunk in chunks:
            future = pool.submit(encode, chunk)
            if pending is not None:
                finish(*pending)
            pending = (future, chunk)
        if pending is not None:
            finish(*pending)


def _parse_ids(chunk: list[str], first_line: int, where: str) -> list[list[int]]:
    try:
        return [list(map(int, line.split())) for line in chunk]
    except ValueError:
        from dlnlp.tokenization.ids import parse_id_line

        for offset, line in enumerate(chunk):
            parse_id_line(line, where=where, line_number=first_line + offset)
        raise


def _parse_tokens(tokenizer: Tokenizer, chunk: list[str], first_line: int, where: str) -> list[list[int]]:
    batch = []
    for offset, line in enumerate(chunk):
        ids = []
        for token in line.split(" ") if line else []:
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise InputError(f"{where}:{first_line + offset}: token {token[:30]!r} is not in the vocabulary")
            ids.append(token_id)
        batch.append(ids)
    return batch


def _parse_jsonl(chunk: list[str], first_line: int, where: str) -> list[list[int]]:
    batch = []
    for offset, line in enumerate(chunk):
        try:
            record = json.loads(line)
            ids = record["ids"] if isinstance(record, dict) else record
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                raise ValueError
        except (ValueError, KeyError):
            raise InputError(
                f'{where}:{first_line + offset}: expected a JSON object with "ids" (a list of integers)'
            ) from None
        batch.append(ids)
    return batch


def decode_stream(tokenizer: Tokenizer, lines: Iterable[str], out: IO[bytes], fmt: str = "ids",
                  *, where: str = "<input>", skip_special_tokens: bool = False,
                  chunk_chars: int = CHUNK_CHARS, on_chunk: Callable[[int, int], None] | None = None) -> CodecStats:
    """Decode lines of ids (or tokens, or jsonl records) to text, one line per line, in order."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    stats = CodecStats()
    for chunk in iter_text_chunks(lines, chunk_chars):
        first = stats.lines + 1
        if fmt == "ids":
            batch = _parse_ids(chunk, first, where)
        elif fmt == "tokens":
            batch = _parse_tokens(tokenizer, chunk, first, where)
        else:
            batch = _parse_jsonl(chunk, first, where)
        try:
            texts = tokenizer.decode_batch(batch, skip_special_tokens=skip_special_tokens)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        out.write(("\n".join(texts) + "\n").encode("utf-8", errors="surrogateescape"))
        stats.add(len(chunk), sum(map(len, batch)), sum(map(len, texts)), on_chunk)
    return stats
