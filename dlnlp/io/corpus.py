"""Corpus input shared by every command.

A corpus is a list of input specs: file paths, globs, ``-`` (stdin), or ``builtin:NAME``. Text files
are read line by line as UTF-8 (``.gz``, ``.bz2`` and ``.xz`` transparently); jsonl/json, csv, tsv
and parquet files are read through HF ``datasets`` in streaming mode and need a ``text_field``.
Nothing here loads a whole corpus into memory: lines are yielded one at a time or in chunks.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import lzma
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dlnlp.errors import InputError

STDIN = "-"
BUILTIN_PREFIX = "builtin:"
BUILTIN_CORPORA = {
    "python-help": "the help topics of the Python standard library (pydoc_data.topics), about 465k characters",
}
STRUCTURED_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
ENCODING_ERRORS = ("strict", "replace", "ignore")


@dataclass(frozen=True)
class CorpusOptions:
    """How to read a corpus; built once by the CLI from the shared options."""

    text_field: str | None = None
    encoding_errors: str = "strict"
    label_field: str | None = None


def resolve_inputs(inputs: Sequence[str] | None) -> list[str]:
    """Expand globs and check that every input exists and is a file. No inputs means stdin."""
    if not inputs:
        return [STDIN]
    resolved: list[str] = []
    for spec in inputs:
        spec = str(spec)
        if spec == STDIN:
            resolved.append(spec)
        elif spec.startswith(BUILTIN_PREFIX):
            name = spec[len(BUILTIN_PREFIX):]
            if name not in BUILTIN_CORPORA:
                known = ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_CORPORA)
                raise InputError(f"{spec}: no such built-in corpus (known: {known})")
            resolved.append(spec)
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                raise InputError(f"{spec}: the pattern matches no file")
            resolved.extend(files)
        else:
            path = Path(spec)
            if not path.exists():
                raise InputError(f"{spec}: no such file")
            if path.is_dir():
                raise InputError(f"{spec}: is a directory, expected a text file")
            resolved.append(spec)
    return resolved


def input_kind(spec: str) -> str:
    """'text', 'json', 'csv' or 'parquet' from the file name (compression suffixes ignored)."""
    if spec == STDIN or spec.startswith(BUILTIN_PREFIX):
        return "text"
    suffixes = Path(spec).suffixes
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    return STRUCTURED_SUFFIXES.get(suffixes[-1], "text") if suffixes else "text"


def open_binary(spec: str) -> IO[bytes]:
    """Open an input for binary reading, decompressing by suffix."""
    if spec == STDIN:
        return sys.stdin.buffer
    opener = COMPRESSED_SUFFIXES.get(Path(spec).suffix)
    try:
        return opener(spec, "rb") if opener else open(spec, "rb")  # noqa: SIM115
    except PermissionError as exc:
        raise InputError(f"{spec}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{spec}: {exc.strerror or exc}") from exc


def builtin_corpus_text(name: str) -> str:
    """The text of a built-in corpus; every Python installation has it, so demos need no network."""
    if name != "python-help":
        raise InputError(f"{BUILTIN_PREFIX}{name}: no such built-in corpus")
    from pydoc_data.topics import topics

    return "\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def _first_bad_line(spec: str) -> tuple[int, str]:
    with open_binary(spec) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return number, f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
    return 0, "unknown position"


# Blocks of 1 MiB made a fresh process 2-3x slower to read a corpus (each decoded block was new memory to
# fault in); smaller ones reuse warm memory. Lines go out in lists of 256 KiB, as HF training wants long
# lists (64 KiB ones cost it 2%); the scan, which keeps nothing, reads 64 KiB at a time.
READ_BLOCK = 1 << 18
SCAN_BLOCK = 1 << 16


def _iter_decoded(spec: str, encoding_errors: str, block_size: int) -> Iterator[str]:
    """The decoded text of one input, in pieces of ``block_size`` bytes (much faster than decoding line by line).
    Undecodable bytes raise InputError naming the file and line."""
    if spec.startswith(BUILTIN_PREFIX):
        yield builtin_corpus_text(spec[len(BUILTIN_PREFIX):])
        return
    name = "<stdin>" if spec == STDIN else spec
    decoder = codecs.getincrementaldecoder("utf-8")(errors=encoding_errors)
    binary = open_binary(spec)
    try:
        while True:
            block = binary.read(block_size)
            text = decoder.decode(block, final=not block)
            if text:
                yield text
            if not block:
                break
    except UnicodeDecodeError as exc:
        if spec == STDIN:
            raise InputError(
                f"{name}: not valid UTF-8 ({exc.reason}); use --encoding-errors replace to read it anyway"
            ) from exc
        line_no, where = _first_bad_line(spec)
        raise InputError(
            f"{name}:{line_no}: not valid UTF-8 ({where}); use --encoding-errors replace to read it anyway"
        ) from exc
    except (EOFError, OSError, lzma.LZMAError) as exc:
        raise InputError(f"{name}: cannot read: {exc}") from exc
    finally:
        if spec != STDIN:
            binary.close()


def _iter_text_blocks(spec: str, encoding_errors: str) -> Iterator[list[str]]:
    r"""Lines split on "\n" only; every other character, "\r" included, stays in its line, so joining
    the lines with "\n" gives the input back byte for byte. Yielded as one list of lines per decoded
    block, so that consumers that work in batches pay no per-line Python overhead."""
    pending = ""
    for text in _iter_decoded(spec, encoding_errors, READ_BLOCK):
        lines = (pending + text).split("\n")
        pending = lines.pop()
        if lines:
            yield lines
    if pending:
        yield [pending]


def _iter_structured(spec: str, kind: str, field: str | None) -> Iterator[str]:
    if not field:
        raise InputError(f"{spec}: a {kind} file needs --text-field to name the column that holds the text")
    import datasets  # heavy: imported only when a structured file is read

    datasets.disable_progress_bars()
    options: dict = {}
    if kind == "csv" and Path(spec).suffixes[-1:] != [".csv"]:
        options["delimiter"] = "\t"
    try:
        dataset = datasets.load_dataset(kind, data_files=spec, split="train", streaming=True, **options)
        for number, record in enumerate(dataset, start=1):
            if field not in record:
                raise InputError(f"{spec}: no field {field!r} (fields: {', '.join(record)})")
            value = record[field]
            if value is None:
                raise InputError(f"{spec}: record {number}: field {field!r} is empty")
            yield str(value)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types for malformed files
        raise InputError(f"{spec}: cannot read as {kind}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc


def iter_line_blocks(
    inputs: Sequence[str] | None,
    options: CorpusOptions | None = None,
    *,
    require_text: bool = True,
) -> Iterator[list[str]]:
    """The lines (without terminators) of every input in order, in lists: one per decoded block of
    256 KiB for text files, of up to 4096 records for structured ones.

    Raises InputError for a missing file, a directory, undecodable bytes (naming file and line),
    a structured file without ``text_field``, and, with ``require_text``, an input with no
    non-blank line at all.
    """
    options = options or CorpusOptions()
    if options.encoding_errors not in ENCODING_ERRORS:
        raise InputError(f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)}")
    specs = resolve_inputs(inputs)
    has_text = False
    for spec in specs:
        kind = input_kind(spec)
        blocks = (
            _iter_text_blocks(spec, options.encoding_errors)
            if kind == "text"
            else iter_chunks(_iter_structured(spec, kind, options.text_field), 4096)
        )
        for block in blocks:
            if not has_text:
                has_text = any(line.strip() for line in block)
            yield block
    if require_text and not has_text:
        raise _empty_input(specs)


def _empty_input(specs: Sequence[str]) -> InputError:
    names = ", ".join("<stdin>" if s == STDIN else s for s in specs)
    return InputError(f"{names}: the input is empty (no text)")


@dataclass(frozen=True)
class TextFileScan:
    """What one validating pass over plain text files found (lines counted as iter_line_blocks yields them)."""

    lines: int
    chars: int  # line terminators excluded
    has_carriage_return: bool


def plain_text_files(inputs: Sequence[str] | None, options: CorpusOptions | None = None) -> list[str] | None:
    """The resolved inputs when every one is a regular, uncompressed text file read with strict UTF-8,
    so that a library with its own file reader may read them after :func:`scan_text_files`; None when
    any is stdin, a pipe, a built-in corpus, compressed or structured, or has a comma in its path
    (sentencepiece splits its file list on commas)."""
    options = options or CorpusOptions()
    if options.encoding_errors != "strict":
        return None
    specs = resolve_inputs(inputs)
    for spec in specs:
        if (spec == STDIN or spec.startswith(BUILTIN_PREFIX) or "," in spec or input_kind(spec) != "text"
                or Path(spec).suffix in COMPRESSED_SUFFIXES or not os.path.isfile(spec)):
            return None
    return specs


def scan_text_files(paths: Sequence[str]) -> TextFileScan:
    """Decode every file once without keeping it: the errors of :func:`iter_line_blocks` (undecodable
    bytes name file and line; no text at all is an error) and the counts it would yield."""
    lines = chars = 0
    has_text = has_carriage_return = False
    for path in paths:
        last = ""
        for text in _iter_decoded(path, "strict", SCAN_BLOCK):
            newlines = text.count("\n")
            lines += newlines
            chars += len(text) - newlines
            has_text = has_text or not text.isspace()
            has_carriage_return = has_carriage_return or "\r" in text
            last = text[-1]
        if last and last != "\n":
            lines += 1  # a last line without a terminator
    if not has_text:
        raise _empty_input(paths)
    return TextFileScan(lines, chars, has_carriage_return)


def iter_lines(
    inputs: Sequence[str] | None,
    options: CorpusOptions | None = None,
    *,
    require_text: bool = True,
) -> Iterator[str]:
    """Yield the lines (without terminators) of every input in order (see :func:`iter_line_blocks`)."""
    for block in iter_line_blocks(inputs, options, require_text=require_text):
        yield from block


def iter_chunks(lines: Iterable[str], chunk_size: int = 8192) -> Iterator[list[str]]:
    """Group an iterator of lines into lists of at most ``chunk_size`` lines."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def iter_token_lines(inputs: Sequence[str] | None, options: CorpusOptions | None = None) -> Iterator[list[str]]:
    """Whitespace-tokenized sentences, one list per non-blank line (the word-level models' input)."""
    for line in iter_lines(inputs, options):
        tokens = line.split()
        if tokens:
            yield tokens


def describe_inputs(inputs: Sequence[str] | None) -> str:
    """A short human-readable name for a list of inputs, for logs and config files."""
    specs = list(inputs) if inputs else [STDIN]
    names = ["<stdin>" if s == STDIN else s for s in specs]
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"
