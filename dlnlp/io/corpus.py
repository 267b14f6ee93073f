"""Corpus input shared by every command.

A corpus is a list of input specs: file paths, globs, ``-`` (stdin), ``builtin:NAME``, or an HF
dataset. Text files are read line by line as UTF-8 (``.gz``, ``.bz2`` and ``.xz`` transparently);
jsonl/json, csv, tsv and parquet files are read through HF ``datasets`` in streaming mode and need a
``text_field``. Nothing here loads a whole corpus into memory: lines are yielded one at a time or in
chunks.

HF datasets: ``hf:NAME[:CONFIG]:SPLIT`` loads ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``
(``hf:wikitext:wikitext-103-raw-v1:train``; a split may be sliced, ``train[:10%]``), from the hub
cache as memory-mapped Arrow, or record by record without downloading it first with
``CorpusOptions.streaming`` (``--streaming``). A directory written by ``save_to_disk`` is read with
``datasets.load_from_disk``, given as it is or as ``hf:DIR[:SPLIT]`` (the split of a DatasetDict;
``train`` by default). Each record's ``text_field`` (default ``text``) is one line.

Over-long lines. A line is held whole in memory, and the engines that take it (HF ``tokenizers``,
sentencepiece) use about 150 bytes per character of a line, so one 50 MB line cost 7.5 GB. Lines are
therefore limited to :data:`MAX_LINE_CHARS` characters (1,048,576; the environment variable
``DLNLP_MAX_LINE_CHARS`` changes it), and what happens to a longer line is the reader's choice
(``long_lines``):

- ``"split"`` (the default, for training and evaluation): the line is cut into pieces of the limit,
  each read as a line of its own. Learning from pieces of a giant line loses next to nothing, and
  memory stays bounded without reading the line whole.
- ``"error"`` (for ``tokenize encode`` and ``decode``, whose output has one line per input line and
  must round-trip byte for byte): the reader stops with ``FILE:LINE: line of N characters is longer
  than the limit of M``, after counting N without keeping the line.

Lines up to the limit are yielded exactly as they are.
"""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import lzma
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dlnlp.errors import InputError, UsageError

STDIN = "-"
BUILTIN_PREFIX = "builtin:"
HF_PREFIX = "hf:"
# hf:NAME[:CONFIG]:SPLIT, the split possibly sliced (train[:10%], whose brackets may hold colons)
_HF_SPEC = re.compile(r"^(?P<name>[^:\[]+)(?::(?P<config>[^:\[]+))?:(?P<split>[^:\[]+(?:\[.*\])?)$")
BUILTIN_CORPORA = {
    "python-help": "the help topics of the Python standard library (pydoc_data.topics), about 465k characters",
}
STRUCTURED_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
COMPRESSED_SUFFIXES = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
ENCODING_ERRORS = ("strict", "replace", "ignore")
COMPRESSION_NAMES = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}

# The longest line (in characters) read whole; see the module docstring. DLNLP_MAX_LINE_CHARS overrides it.
MAX_LINE_CHARS = 1 << 20
LONG_LINES = ("split", "error")
MAX_LINE_CHARS_ENV = "DLNLP_MAX_LINE_CHARS"


def max_line_chars() -> int:
    """The line length limit in force: ``DLNLP_MAX_LINE_CHARS`` when set, else :data:`MAX_LINE_CHARS`."""
    value = os.environ.get(MAX_LINE_CHARS_ENV, "").strip()
    if not value:
        return MAX_LINE_CHARS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"{MAX_LINE_CHARS_ENV} must be a positive number of characters, got {value!r}")
    return limit


@dataclass(frozen=True)
class CorpusOptions:
    """How to read a corpus; built once by the CLI from the shared options."""

    text_field: str | None = None
    encoding_errors: str = "strict"
    label_field: str | None = None
    streaming: bool = False  # HF hub datasets: read record by record instead of downloading first


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
        elif spec.startswith(HF_PREFIX) or is_saved_dataset(spec):
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


def is_saved_dataset(spec: str) -> bool:
    """Whether ``spec`` is a directory written by ``datasets``' ``save_to_disk`` (a Dataset or DatasetDict)."""
    path = Path(spec)
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def input_kind(spec: str) -> str:
    """'text', 'json', 'csv', 'parquet' from the file name (compression suffixes ignored), or 'hf'."""
    if spec.startswith(HF_PREFIX) or is_saved_dataset(spec):
        return "hf"
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
        if spec == STDIN:  # stdin cannot be read again to find the line: the line reader says where
            raise _UndecodableStdin(exc) from exc
        line_no, where = _first_bad_line(spec)
        raise InputError(
            f"{name}:{line_no}: not valid UTF-8 ({where}); {_ENCODING_HINT}"
        ) from exc
    except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise _read_error(spec, name, exc) from exc
    finally:
        if spec != STDIN:
            binary.close()


_ENCODING_HINT = "use --encoding-errors replace to read it anyway"


class _UndecodableStdin(InputError):
    """Undecodable bytes on stdin; ``_iter_text_blocks`` adds the line number (it counts the lines)."""

    def __init__(self, error: UnicodeDecodeError):
        super().__init__(f"<stdin>: not valid UTF-8 ({error.reason}); {_ENCODING_HINT}")
        self.error = error

    def at(self, lines_before: int, line_start: bytes | None) -> InputError:
        """The error at its line: ``lines_before`` complete lines were read before the block that failed,
        ``line_start`` is the start of the line before that block (None: not known)."""
        exc = self.error
        head = exc.object[:exc.start]
        newlines = head.count(b"\n")
        column = len(head) - head.rfind(b"\n") if newlines else (
            len(line_start) + len(head) + 1 if line_start is not None else None)
        where = f"byte 0x{exc.object[exc.start]:02x}" + (f" at column {column}" if column else "")
        return InputError(f"<stdin>:{lines_before + newlines + 1}: not valid UTF-8 ({where}); {_ENCODING_HINT}")


def _read_error(spec: str, name: str, exc: BaseException) -> InputError:
    """One line for a failed read: a damaged or truncated compressed file says so and names the file."""
    kind = None if spec == STDIN else COMPRESSION_NAMES.get(Path(spec).suffix)
    if kind is not None:
        if isinstance(exc, EOFError):
            return InputError(f"{name}: not a valid {kind} file (truncated: it ends inside the compressed data)")
        if not isinstance(exc, OSError) or not exc.errno:  # zlib.error, LZMAError, BadGzipFile, bz2's OSError
            detail = str(exc).split(": ", 1)[-1] if isinstance(exc, zlib.error) else str(exc)
            if detail.startswith("Not a gzipped file"):
                detail = "no gzip header"
            detail = detail[:1].lower() + detail[1:] if detail[1:2].islower() else detail
            return InputError(f"{name}: not a valid {kind} file ({detail or type(exc).__name__})")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
    return InputError(f"{name}: cannot read: {detail}")


def _too_long(name: str, line_no: int, length: int, limit: int, what: str = "line") -> InputError:
    return InputError(
        f"{name}:{line_no}: {what} of {length:,} characters is longer than the limit of {limit:,} (this command "
        f"reads each {what} whole; split it into shorter lines, or raise {MAX_LINE_CHARS_ENV})"
    )


def _cut(line: str, limit: int) -> list[str]:
    """``line`` in pieces of ``limit`` characters (the last one shorter)."""
    return [line[start:start + limit] for start in range(0, len(line), limit)]


def _iter_text_blocks(spec: str, encoding_errors: str, limit: int | None = None,
                      long_lines: str = "split") -> Iterator[list[str]]:
    r"""Lines split on "\n" only; every other character, "\r" included, stays in its line, so joining
    the lines with "\n" gives the input back byte for byte. Yielded as one list of lines per decoded
    block, so that consumers that work in batches pay no per-line Python overhead.

    A line longer than ``limit`` characters is cut into pieces of ``limit`` (``long_lines="split"``)
    or raises InputError naming it (``"error"``); see the module docstring. Either way memory stays
    bounded by the limit, not by the line."""
    limit = limit or max_line_chars()
    name = "<stdin>" if spec == STDIN else spec
    parts: list[str] = []  # the line being read, in pieces (joined once, not once per block)
    size = 0  # its length so far
    done = 0  # the lines before it
    overflow = 0  # "error": the length counted so far of an over-long line that is no longer kept
    cut = False  # "split": the line being read was cut, its first pieces are gone
    try:
        for text in _iter_decoded(spec, encoding_errors, READ_BLOCK):
            end = text.find("\n")
            if overflow:
                if end < 0:
                    overflow += len(text)
                    continue
                raise _too_long(name, done + 1, overflow + end, limit)
            if end < 0:
                parts.append(text)
                size += len(text)
            else:
                lines = text.split("\n")
                if parts:
                    parts.append(lines[0])
                    lines[0] = "".join(parts)
                pending = lines.pop()
                parts, size, cut = ([pending], len(pending), False) if pending else ([], 0, False)
                first = done
                done += len(lines)
                if len(lines[0]) > limit or (len(text) > limit and max(map(len, lines)) > limit):
                    lines = _long_lines(lines, name, first, limit, long_lines)
                yield lines
            if size > limit:  # the unfinished line is already too long
                if long_lines == "error":
                    overflow = size
                    parts, size = [], 0
                    continue
                pieces = _cut("".join(parts), limit)
                parts, cut = [pieces.pop()], True
                size = len(parts[0])
                yield pieces
    except _UndecodableStdin as exc:
        known = not (overflow or cut)
        raise exc.at(done, "".join(parts).encode("utf-8", "surrogateescape") if known else None) from exc.error
    if overflow:
        raise _too_long(name, done + 1, overflow, limit)
    if parts:
        line = "".join(parts)
        yield _long_lines([line], name, done, limit, long_lines) if size > limit else [line]


def iter_file_lines(spec: str, encoding_errors: str = "strict", long_lines: str = "split") -> Iterator[str]:
    """The lines of one input (a path or ``-``) read as plain text whatever its suffix, with the errors of
    :func:`iter_line_blocks` (undecodable bytes and over-long lines name FILE:LINE, damaged compressed
    files name the file). For readers that parse the lines themselves (``io/labeled.py``)."""
    if encoding_errors not in ENCODING_ERRORS:
        raise UsageError(f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)}")
    for block in _iter_text_blocks(spec, encoding_errors, None, long_lines):
        yield from block


def _long_lines(lines: list[str], name: str, done: int, limit: int, long_lines: str, what: str = "line") -> list[str]:
    """``lines`` with each one over ``limit`` cut into pieces, or InputError for the first (``"error"``)."""
    if long_lines == "error":
        index = next(i for i, line in enumerate(lines) if len(line) > limit)
        raise _too_long(name, done + index + 1, len(lines[index]), limit, what)
    out: list[str] = []
    for line in lines:
        if len(line) > limit:
            out.extend(_cut(line, limit))
        else:
            out.append(line)
    return out


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


def _load_hf(spec: str, streaming: bool):
    """The dataset an HF spec names (see the module docstring)."""
    import datasets  # heavy: imported only when a dataset is read

    datasets.disable_progress_bars()
    rest = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    local, split = rest, None
    if not Path(local).is_dir() and ":" in rest:  # hf:DIR:SPLIT
        local, split = rest.rsplit(":", 1)
    if is_saved_dataset(local):
        dataset = datasets.load_from_disk(local)
        if isinstance(dataset, datasets.DatasetDict):
            split = split or ("train" if "train" in dataset else None)
            if split not in dataset:
                raise InputError(f"{spec}: the dataset has the splits {', '.join(dataset)}; name one "
                                 f"(hf:{local}:SPLIT)")
            dataset = dataset[split]
        elif split is not None:
            raise InputError(f"{spec}: {local} holds one split; give it without :{split}")
        return dataset
    match = _HF_SPEC.match(rest)
    if match is None:
        raise InputError(f"{spec}: expected hf:NAME[:CONFIG]:SPLIT (e.g. hf:wikitext:wikitext-2-raw-v1:train) "
                         "or a directory written by save_to_disk")
    return datasets.load_dataset(match["name"], match["config"], split=match["split"], streaming=streaming)


def _iter_hf(spec: str, field: str | None, streaming: bool) -> Iterator[list[str]]:
    """The ``field`` (default ``text``) of every record of an HF dataset, in lists of up to 4096."""
    try:
        dataset = _load_hf(spec, streaming)
        columns = list(dataset.column_names or []) if dataset.column_names is not None else None
        field = field or "text"
        if columns is not None and field not in columns:
            raise InputError(f"{spec}: no field {field!r} (fields: {', '.join(columns)}); choose one with --text-field")
        if columns is not None:
            dataset = dataset.select_columns([field])
        number = 0
        for batch in dataset.iter(batch_size=4096):
            values = batch[field]
            for offset, value in enumerate(values, start=1):
                if value is None:
                    raise InputError(f"{spec}: record {number + offset}: field {field!r} is empty")
            number += len(values)
            yield [str(v) for v in values]
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types (missing dataset, offline, bad split)
        raise InputError(f"{spec}: cannot load the dataset: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
            from exc


def iter_line_blocks(
    inputs: Sequence[str] | None,
    options: CorpusOptions | None = None,
    *,
    require_text: bool = True,
    long_lines: str = "split",
    max_chars: int | None = None,
) -> Iterator[list[str]]:
    """The lines (without terminators) of every input in order, in lists: one per decoded block of
    256 KiB for text files, of up to 4096 records for structured ones.

    A line (or record) longer than ``max_chars`` characters (default: :func:`max_line_chars`) is cut
    into pieces of that length with ``long_lines="split"`` and is an error naming it with
    ``long_lines="error"`` (see the module docstring).

    Raises InputError for a missing file, a directory, undecodable bytes (naming file and line),
    a damaged compressed file, a structured file without ``text_field``, and, with ``require_text``,
    an input with no non-blank line at all.
    """
    options = options or CorpusOptions()
    if options.encoding_errors not in ENCODING_ERRORS:
        raise UsageError(f"--encoding-errors must be one of {', '.join(ENCODING_ERRORS)}")
    if long_lines not in LONG_LINES:
        raise ValueError(f"long_lines must be one of {LONG_LINES}, not {long_lines!r}")
    limit = max_chars or max_line_chars()
    specs = resolve_inputs(inputs)
    has_text = False
    for spec in specs:
        kind = input_kind(spec)
        if kind == "text":
            blocks = _iter_text_blocks(spec, options.encoding_errors, limit, long_lines)
        elif kind == "hf":
            blocks = _limit_records(_iter_hf(spec, options.text_field, options.streaming), spec, limit, long_lines)
        else:
            blocks = _limit_records(iter_chunks(_iter_structured(spec, kind, options.text_field), 4096),
                                    spec, limit, long_lines)
        for block in blocks:
            if not has_text:
                has_text = any(line.strip() for line in block)
            yield block
    if require_text and not has_text:
        raise empty_input_error(specs)


def _limit_records(blocks: Iterable[list[str]], spec: str, limit: int, long_lines: str) -> Iterator[list[str]]:
    done = 0
    for block in blocks:
        first = done
        done += len(block)
        if max(map(len, block)) > limit:
            block = _long_lines(block, spec, first, limit, long_lines, what="record")
        yield block


def empty_input_error(specs: Sequence[str]) -> InputError:
    """The error for inputs with no text, naming them as the user gave them (``-`` as ``<stdin>``)."""
    names = ", ".join("<stdin>" if s == STDIN else s for s in specs)
    return InputError(f"{names}: the input is empty (no text)")


@dataclass(frozen=True)
class TextFileScan:
    """What one validating pass over plain text files found (lines counted as iter_line_blocks yields them
    when no line is longer than the limit)."""

    lines: int
    chars: int  # line terminators excluded
    has_carriage_return: bool
    has_long_line: bool = False  # a line longer than max_line_chars() (which iter_line_blocks would cut)


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


def scan_text_files(paths: Sequence[str], max_chars: int | None = None) -> TextFileScan:
    """Decode every file once without keeping it: the errors of :func:`iter_line_blocks` (undecodable
    bytes name file and line; no text at all is an error) and the counts it would yield, and whether a
    line is longer than ``max_chars`` (default :func:`max_line_chars`)."""
    limit = max_chars or max_line_chars()
    lines = chars = 0
    has_text = has_carriage_return = has_long_line = False
    for path in paths:
        last = ""
        current = 0  # the length so far of the line being read
        for text in _iter_decoded(path, "strict", SCAN_BLOCK):
            newlines = text.count("\n")
            lines += newlines
            chars += len(text) - newlines
            has_text = has_text or not text.isspace()
            has_carriage_return = has_carriage_return or "\r" in text
            last = text[-1]
            if not newlines:
                current += len(text)
            else:
                if not has_long_line:
                    has_long_line = current + text.find("\n") > limit or (
                        len(text) > limit and max(map(len, text.split("\n")[1:-1]), default=0) > limit)
                current = len(text) - text.rfind("\n") - 1
            has_long_line = has_long_line or current > limit
        if last and last != "\n":
            lines += 1  # a last line without a terminator
    if not has_text:
        raise empty_input_error(paths)
    return TextFileScan(lines, chars, has_carriage_return, has_long_line)


def iter_lines(
    inputs: Sequence[str] | None,
    options: CorpusOptions | None = None,
    *,
    require_text: bool = True,
    long_lines: str = "split",
    max_chars: int | None = None,
) -> Iterator[str]:
    """Yield the lines (without terminators) of every input in order (see :func:`iter_line_blocks`)."""
    for block in iter_line_blocks(inputs, options, require_text=require_text, long_lines=long_lines,
                                  max_chars=max_chars):
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


# Files up to this size are hashed whole; larger ones by FINGERPRINT_SAMPLES evenly spaced blocks of
# FINGERPRINT_BLOCK bytes (with their size, enough to tell an edited or replaced corpus apart
# without reading gigabytes at each start).
FINGERPRINT_WHOLE = 64 << 20
FINGERPRINT_BLOCK = 1 << 20
FINGERPRINT_SAMPLES = 16


def _file_digest(path: str, size: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FINGERPRINT_WHOLE:
            for block in iter(lambda: handle.read(FINGERPRINT_BLOCK), b""):
                digest.update(block)
        else:
            step = (size - FINGERPRINT_BLOCK) // (FINGERPRINT_SAMPLES - 1)
            for i in range(FINGERPRINT_SAMPLES):
                handle.seek(i * step)
                digest.update(handle.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()


def fingerprint_inputs(inputs: Sequence[str] | None) -> list[dict[str, Any]]:
    """What identifies a corpus (a run records it, ``--resume`` compares it): per input its absolute
    path, size and SHA-256 (sampled above 64 MiB); a directory (token shards, a saved dataset) by its
    index file; stdin, built-in and hf: corpora by name only."""
    records: list[dict[str, Any]] = []
    for spec in [str(spec) for spec in inputs or [STDIN]]:
        if os.path.isdir(spec):  # a token shard directory or a saved dataset: its index names its content
            record: dict[str, Any] = {"path": str(Path(spec).resolve())}
            index = next((Path(spec) / name for name in ("index.json", "state.json", "dataset_dict.json")
                          if (Path(spec) / name).is_file()), None)
            if index is not None:
                size = index.stat().st_size
                record.update(size=size, sha256=_file_digest(str(index), size))
            records.append(record)
            continue
        for path in resolve_inputs([spec]):
            if path == STDIN or path.startswith(BUILTIN_PREFIX) or path.startswith(HF_PREFIX):
                records.append({"path": "<stdin>" if path == STDIN else path})
                continue
            size = os.path.getsize(path)
            records.append({"path": str(Path(path).resolve()), "size": size, "sha256": _file_digest(path, size)})
    return records


def corpus_differences(inputs: Sequence[str] | None, recorded: list[dict[str, Any]]) -> str | None:
    """Why ``inputs`` are not the ``recorded`` corpus (:func:`fingerprint_inputs`), or None when they are
    (stdin matches stdin: it cannot be compared)."""
    given = fingerprint_inputs(inputs)
    paths = [record["path"] for record in given]
    saved = [record.get("path") for record in recorded]
    if paths != saved:
        return f"the corpus {describe_inputs(paths)} is not the run's ({describe_inputs(saved)})"
    for now, then in zip(given, recorded, strict=True):
        if "size" in now and (now["size"], now["sha256"]) != (then.get("size"), then.get("sha256")):
            return f"{now['path']} changed since the run started ({then.get('size')} bytes then, {now['size']} now)" \
                if now["size"] != then.get("size") else f"{now['path']} changed since the run started (its content)"
    return None
