"""Labeled data: text (and text-pair) classification examples, and CoNLL-style token-tag columns.

Formats, chosen by the file name as in :mod:`dlnlp.io.corpus` (``.gz``/``.bz2``/``.xz`` read transparently):

- ``.tsv``, and any other name (stdin included): tab-separated rows, no quoting. A ``"`` is a character
  like any other, as in the GLUE and SentEval TSVs (the MR corpus has lines that start with one);
  csv-style quoting would merge such rows.
- ``.csv``: RFC 4180 (quoted fields may hold commas, quotes and line breaks).
- ``.jsonl`` (and ``.json``: one object per line, or one array of objects): fields by key.
- ``.parquet``: columns by name, read in batches through pyarrow (a dependency of HF ``datasets``).
- An HF ``datasets.Dataset`` or ``IterableDataset`` object (or any iterable of dicts) in place of the
  file list: fields by column name.

Fields. A field is a name or a 0-based column number (``"1"``, ``-1`` for the last). In TSV and CSV
files the rule is: **names mean the first row is a header; numbers mean there is none**
(``text_field=0, label_field=1`` reads a headerless ``text<TAB>label`` file); ``header=True`` or
``False`` overrides it. Nothing is guessed, so a header row is never read as an example and no
example is ever taken for a header. The text, pair and label fields are the options', else
``text``, none and ``label``.

The TSV/CSV/JSONL readers parse the lines themselves rather than through HF ``datasets`` (which
:mod:`dlnlp.io.corpus` uses for plain text fields) so that a missing field or a ragged row is named
by its file and line: ``FILE:LINE: expected 2 columns, got 3``.

Labels are kept as strings (JSON ``1`` and TSV ``1`` both read ``"1"``). :class:`LabelMap` gives them
ids in sorted order (numerically when every label is an integer), so the map depends only on the set
of labels, not on the order of the file, and integer labels ``0..K-1`` keep their own values as ids.
HF ``datasets``' ``class_encode_column`` sorts the same way for string labels.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from dlnlp.errors import InputError
from dlnlp.io.corpus import (
    STDIN,
    CorpusOptions,
    empty_input_error,
    input_kind,
    iter_file_lines,
    max_line_chars,
    open_binary,
    resolve_inputs,
)
from dlnlp.tokenization.ids import is_int

Field = Union[str, int]
DOCSTART = "-DOCSTART-"
PARQUET_BATCH = 1024


@dataclass(frozen=True)
class Example:
    """One classification example; ``where`` (``FILE:LINE``) lets later stages name it in errors."""

    text: str
    label: str | None
    text_pair: str | None = None
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a column file: its tokens and their tags (None when no tag column is read)."""

    tokens: list[str]
    tags: list[str] | None
    where: str = field(default="", compare=False)


class LabelMap:
    """A fixed label <-> id map: labels sorted, numerically when all are integers (see the module doc)."""

    def __init__(self, labels: Iterable[str]):
        unique = set(labels)
        if not unique:
            raise InputError("no labels: a classifier needs at least one labeled example")
        numeric = all(is_int(label) for label in unique)
        self.labels: tuple[str, ...] = tuple(sorted(unique, key=(lambda s: (int(s), s)) if numeric else None))
        self._ids = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_examples(cls, examples: Iterable[Example | Sentence]) -> LabelMap:
        """The labels of classification examples, or the tags of sentences."""
        labels: set[str] = set()
        for example in examples:
            if isinstance(example, Sentence):
                labels.update(example.tags or ())
            elif example.label is not None:
                labels.add(example.label)
        return cls(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and other.labels == self.labels

    def __repr__(self) -> str:
        return f"LabelMap({list(self.labels)!r})"

    def id(self, label: str, where: str = "") -> int:
        """The id of ``label``; a label the map has never seen (a dev file's) is an error naming it."""
        try:
            return self._ids[label]
        except KeyError:
            known = ", ".join(repr(s) for s in self.labels[:20]) + (", ..." if len(self.labels) > 20 else "")
            raise InputError(f"{where + ': ' if where else ''}label {label!r} is not one of the {len(self)} "
                             f"known labels ({known})") from None

    def label(self, index: int) -> str:
        return self.labels[index]

    def to_list(self) -> list[str]:
        """The labels in id order, for a model's config.json (``LabelMap(saved)`` rebuilds the map)."""
        return list(self.labels)


def _column(value: Field | None) -> int | None:
    """The column number a field names, or None for a name."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _name(spec: str) -> str:
    return "<stdin>" if spec == STDIN else spec


def _scalar(value: Any, what: str, where: str) -> str | None:
    """A field's value as a string (JSON ``1`` -> ``"1"``, ``true`` -> ``"true"``); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict, tuple)):
        raise InputError(f"{where}: {what} is a {type(value).__name__}, expected a single value")
    return str(value)


class _Fields:
    """The text, pair and label fields to read, resolved against one file's columns or records."""

    def __init__(self, text: Field, pair: Field | None, label: Field | None):
        roles = {"text": text, "pair": pair, "label": label}
        self.named: dict[str, Field] = {role: f for role, f in roles.items() if f is not None}

    def all_columns(self) -> bool:
        return all(_column(f) is not None for f in self.named.values())

    def indexes(self, columns: Sequence[str] | int, name: str, table: bool = False) -> dict[str, int]:
        """Each role's column number, from a header row (names) or a column count (numbers only)."""
        width = columns if isinstance(columns, int) else len(columns)
        out: dict[str, int] = {}
        for role, f in self.named.items():
            number = _column(f)
            if number is not None:
                if not -width <= number < width:
                    raise InputError(f"{name}: no column {number} (the rows have {width} columns, numbered from 0)")
                out[role] = number % width
            elif isinstance(columns, int):
                raise InputError(f"{name}: field {f!r} is a name but the file is read without a header row")
            elif f in columns:
                out[role] = list(columns).index(f)
            else:
                raise self.missing(name, f, columns, table)
        return out

    def missing(self, name: str, f: Field, fields: Iterable[str], table: bool = False) -> InputError:
        present = ", ".join(repr(str(x)) for x in fields) or "none"
        hint = ("; a file without a header row takes column numbers, e.g. --text-field 0 --label-field 1"
                if table else "")
        return InputError(f"{name}: no field {f!r} (fields: {present}){hint}")

    def example(self, values: Mapping[str, Any], where: str) -> Example:
        """An Example from a record keyed by role; a missing text or label is an error naming it."""
        text = _scalar(values.get("text"), f"field {self.named['text']!r}", where)
        if text is None:
            raise InputError(f"{where}: field {self.named['text']!r} is empty (null)")
        pair = None
        if "pair" in self.named:
            pair = _scalar(values.get("pair"), f"field {self.named['pair']!r}", where)
            if pair is None:
                raise InputError(f"{where}: field {self.named['pair']!r} is empty (null)")
        label = None
        if "label" in self.named:
            label = _scalar(values.get("label"), f"label field {self.named['label']!r}", where)
            if label is None or not label.strip():
                raise InputError(f"{where}: empty label (field {self.named['label']!r})")
        return Example(text, label, pair, where)


def read_labeled(
    inputs: Sequence[str] | Any | None,
    text_field: Field | None = None,
    pair_field: Field | None = None,
    label_field: Field | None = None,
    options: CorpusOptions | None = None,
    *,
    labeled: bool = True,
    header: bool | None = None,
) -> Iterator[Example]:
    """Classification examples from files, globs, ``-``, or an HF dataset object (see the module doc).

    ``text_field`` / ``label_field`` default to the options' fields, else ``"text"`` / ``"label"``;
    ``labeled=False`` reads text only (inputs to predict on). ``header`` overrides the TSV/CSV header
    rule (names: a header row; numbers: none). Raises InputError naming the file (and line) for a
    missing field, a ragged row, an empty label, undecodable bytes, and for inputs with no example.
    """
    options = options or CorpusOptions()
    text = text_field if text_field is not None else (options.text_field or "text")
    label = (label_field if label_field is not None else (options.label_field or "label")) if labeled else None
    fields = _Fields(text, pair_field, label)
    if inputs is not None and not isinstance(inputs, (str, os.PathLike)) and not _is_spec_list(inputs):
        yield from _read_dataset(inputs, fields)
        return
    specs = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    count = 0
    for spec in specs:
        kind = input_kind(spec)
        if kind == "parquet":
            examples = _read_parquet(spec, fields)
        elif kind == "json":
            examples = _read_json(spec, fields, options.encoding_errors)
        else:
            tsv = kind == "text" or not spec.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.xz"))
            examples = _read_table(spec, fields, options.encoding_errors, "\t" if tsv else ",", header)
        for example in examples:
            count += 1
            yield example
    if not count:
        raise empty_input_error(specs)


def _is_spec_list(inputs: Any) -> bool:
    return isinstance(inputs, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in inputs)


def _read_table(spec: str, fields: _Fields, encoding_errors: str, delimiter: str,
                header: bool | None) -> Iterator[Example]:
    """TSV (split on tabs, no quoting) or CSV (RFC 4180) rows; every row as wide as the first."""
    name = _name(spec)
    lines = iter_file_lines(spec, encoding_errors, long_lines="error")
    if delimiter == "\t":
        rows = ((number, line.rstrip("\r").split("\t")) for number, line in enumerate(lines, start=1)
                if line.rstrip("\r"))
    else:
        rows = _csv_rows(lines, name)
    has_header = not fields.all_columns() if header is None else header
    indexes: dict[str, int] | None = None
    width = 0
    for number, row in rows:
        if indexes is None:
            if row and row[0].startswith("\ufeff"):  # a byte-order mark (Excel's CSVs) is not part of the name
                row[0] = row[0][1:]
            width = len(row)
            indexes = fields.indexes(row if has_header else width, name, table=True)
            if has_header:
                continue
        if len(row) != width:
            raise InputError(f"{name}:{number}: expected {width} columns, got {len(row)}"
                             + (" (a tab inside a field?)" if delimiter == "\t" and len(row) > width else ""))
        yield fields.example({role: row[i] for role, i in indexes.items()}, f"{name}:{number}")


def _csv_rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """CSV records with the line each starts on (a quoted field may span lines); blank lines skipped."""
    # The default limit (128 Ki characters a field) is below the line limit the readers keep; only raised.
    csv.field_size_limit(max(csv.field_size_limit(), max_line_chars()))
    reader = csv.reader((line + "\n" for line in lines), strict=True)
    start = 1
    try:
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from exc


def _read_json(spec: str, fields: _Fields, encoding_errors: str) -> Iterator[Example]:
    """JSON lines (one object per non-blank line), or a ``.json`` file holding one array of objects."""
    name = _name(spec)
    lines = iter_file_lines(spec, encoding_errors, long_lines="error")
    first = True
    for number, line in enumerate(lines, start=1):
        if first and line.startswith("\ufeff"):
            line = line[1:]
        if not line.strip():
            continue
        if first and line.lstrip().startswith("["):  # a JSON array: read whole (json has no streaming parser)
            text = "\n".join([line, *lines])
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}:{number + exc.lineno - 1}: not valid JSON ({exc.msg})") from exc
            for index, record in enumerate(records, start=1):
                yield _record_example(record, fields, name, f"{name}: record {index}")
            return
        first = False
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        yield _record_example(record, fields, name, f"{name}:{number}")


def _record_example(record: Any, fields: _Fields, name: str, where: str) -> Example:
    """An Example from a dict record; a missing key names the keys the record has."""
    if not isinstance(record, Mapping):
        raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
    values = {}
    for role, f in fields.named.items():
        key = str(f)
        if key not in record:
            raise fields.missing(where, f, record)
        values[role] = record[key]
    return fields.example(values, where)


def _read_parquet(spec: str, fields: _Fields) -> Iterator[Example]:
    """Parquet rows in batches of PARQUET_BATCH; fields by column name or number."""
    import pyarrow.parquet as pq  # a dependency of datasets; heavy, so imported only here

    name = _name(spec)
    with open_binary(spec) as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError for damaged files
            raise InputError(f"{name}: cannot read as parquet: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
                from exc
        columns = parquet.schema_arrow.names
        indexes = fields.indexes(columns, name)
        wanted = sorted({columns[i] for i in indexes.values()})
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
            data = batch.to_pydict()
            for offset in range(batch.num_rows):
                values = {role: data[columns[i]][offset] for role, i in indexes.items()}
                yield fields.example(values, f"{name}: row {row + offset + 1}")
            row += batch.num_rows


def _read_dataset(dataset: Any, fields: _Fields) -> Iterator[Example]:
    """Rows of an HF ``Dataset`` / ``IterableDataset`` (or any iterable of dicts), fields by column name."""
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names") or _is_dataset_dict(dataset):
        splits = ", ".join(map(str, dataset.keys()))
        raise InputError(f"a dataset with several splits ({splits}): pass one of them, e.g. dataset['train']")
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) or "<dataset>"
    columns = getattr(dataset, "column_names", None)
    if columns:  # numbers name columns by position; names are checked once, not per row
        resolved = fields.indexes(list(columns), name)
        keyed = _Fields(*(columns[resolved[r]] if r in resolved else None for r in ("text", "pair", "label")))
    else:
        keyed = fields
    count = 0
    for count, record in enumerate(dataset, start=1):
        yield _record_example(record, keyed, name, f"{name}: row {count}")
    if not count:
        raise InputError(f"{name}: the dataset is empty (no rows)")


def _is_dataset_dict(dataset: Any) -> bool:
    return type(dataset).__name__ in ("DatasetDict", "IterableDatasetDict")


def read_conll(
    inputs: Sequence[str] | str | None,
    token_column: int = 0,
    tag_column: int | None = -1,
    options: CorpusOptions | None = None,
    *,
    delimiter: str | None = None,
) -> Iterator[Sentence]:
    """Sentences of CoNLL-style column files: a token per line, columns split on whitespace (or on
    ``delimiter``, e.g. ``"\\t"`` for CoNLL-U, whose forms may hold spaces), a blank line between
    sentences. ``tag_column`` picks the tag (-1: the last; CoNLL-2000 ``word POS chunk`` gives
    chunks, 1 gives POS tags); None reads tokens only. ``-DOCSTART-`` lines (CoNLL-2003) are skipped.

    Every row of a file must have as many columns as its first row: a row with more or fewer is an
    InputError ``FILE:LINE: expected N columns, got M`` (usually a token holding a space).
    """
    options = options or CorpusOptions()
    specs = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    count = 0
    for spec in specs:
        for sentence in _read_columns(spec, token_column, tag_column, options.encoding_errors, delimiter):
            count += 1
            yield sentence
    if not count:
        raise empty_input_error(specs)


def _read_columns(spec: str, token_column: int, tag_column: int | None, encoding_errors: str,
                  delimiter: str | None) -> Iterator[Sentence]:
    name = _name(spec)
    width = 0
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in enumerate(iter_file_lines(spec, encoding_errors, long_lines="error"), start=1):
        line = line.rstrip("\r\n") if delimiter else line
        row = line.split(delimiter) if delimiter else line.split()
        if not row or (delimiter and not line.strip()):
            if tokens:
                yield Sentence(tokens, tags if tag_column is not None else None, f"{name}:{start}")
                tokens, tags = [], []
            continue
        if row[0] == DOCSTART:
            continue
        if not width:
            width = len(row)
            for option, column in (("token column", token_column), ("tag column", tag_column)):
                if column is not None and not -width <= column < width:
                    raise InputError(f"{name}:{number}: no {option} {column} (the rows have {width} columns, "
                                     "numbered from 0)")
        if len(row) != width:
            raise InputError(f"{name}:{number}: expected {width} columns, got {len(row)}")
        if not tokens:
            start = number
        tokens.append(row[token_column])
        if tag_column is not None:
            tag = row[tag_column]
            if not tag.strip():
                raise InputError(f"{name}:{number}: empty tag (column {tag_column})")
            tags.append(tag)
    if tokens:
        yield Sentence(tokens, tags if tag_column is not None else None, f"{name}:{start}")
