"""The ids text format: what ``dlnlp tokenize encode --format ids`` writes and training commands read.

One line per input line, the token ids of that line as decimal integers separated by single spaces;
a blank input line is an empty line. Nothing else: no header, no brackets. So
``dlnlp tokenize encode corpus.txt -t tok.json | dlnlp gpt train - --ids ...`` streams without a
tokenizer in the consumer, and ``wc -w`` counts tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from dlnlp.errors import InputError

# A vocabulary becomes rows of an embedding matrix and of a tokenizer's tables, so its size is bounded:
# 2^24 = 16,777,216 entries is 64 times the largest tokenizers in use (about 256k entries).
MAX_VOCAB_SIZE = 1 << 24


def format_id_line(ids: Sequence[int]) -> str:
    """``[5, 17, 2] -> "5 17 2"`` (no trailing newline)."""
    return " ".join(map(str, ids))


def format_id_lines(batch: Iterable[Sequence[int]]) -> str:
    """Many lines of ids, each terminated by a newline."""
    return "".join(" ".join(map(str, ids)) + "\n" for ids in batch)


def parse_id_line(line: str, *, where: str = "<ids>", line_number: int | None = None) -> list[int]:
    """``"5 17 2" -> [5, 17, 2]``; a blank line is ``[]``. Raises InputError naming the line if not ids."""
    try:
        return [int(field) for field in line.split()]
    except ValueError:
        place = f"{where}:{line_number}" if line_number is not None else where
        bad = next(f for f in line.split() if not is_int(f))
        raise InputError(
            f"{place}: not a line of token ids ({bad[:20]!r}); expected integers separated by spaces"
        ) from None


def is_int(text: str) -> bool:
    """Whether ``int(text)`` parses."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def iter_id_lines(lines: Iterable[str], *, where: str = "<ids>") -> Iterator[list[int]]:
    """Parse an iterable of ids-format lines (e.g. from :func:`dlnlp.io.corpus.iter_lines`)."""
    for number, line in enumerate(lines, start=1):
        yield parse_id_line(line, where=where, line_number=number)


def read_id_lines(inputs: Sequence[str] | None = None, options=None) -> Iterator[list[int]]:
    """The id lists of ids-format files (paths, globs, ``-`` for stdin, ``.gz`` etc.), streamed.

    ``inputs``/``options`` are as for :func:`dlnlp.io.corpus.iter_lines`; parse errors name the file
    and line.
    """
    from dlnlp.io.corpus import describe_inputs, iter_lines

    yield from iter_id_lines(iter_lines(inputs, options, require_text=False), where=describe_inputs(inputs))


def looks_like_ids(line: str) -> bool:
    """True when a line is in the ids format (so a command can accept either text or piped ids)."""
    fields = line.split()
    return bool(fields) and all(f.isdigit() for f in fields)
