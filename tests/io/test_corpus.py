import bz2
import gzip
import lzma
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnlp.errors import InputError
from dlnlp.io.corpus import (
    CorpusOptions,
    builtin_corpus_text,
    describe_inputs,
    input_kind,
    iter_chunks,
    iter_line_blocks,
    iter_lines,
    iter_token_lines,
    plain_text_files,
    resolve_inputs,
    scan_text_files,
)

TEXT = "first line\n\nthird  line with  spaces \nünïcödé ✓\r\nlast without newline"
LINES = ["first line", "", "third  line with  spaces ", "ünïcödé ✓\r", "last without newline"]


@pytest.mark.parametrize("read_block", [None, 7])  # 7: characters and lines split between reads
def test_plain_file_lines_keep_blank_lines_and_whitespace(tmp_path, monkeypatch, read_block):
    import dlnlp.io.corpus as corpus

    if read_block:
        monkeypatch.setattr(corpus, "READ_BLOCK", read_block)
    path = tmp_path / "c.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    assert list(iter_lines([str(path)])) == LINES


def test_carriage_returns_stay_in_their_line_so_round_trips_are_exact(tmp_path):
    path = tmp_path / "c.txt"
    data = b"a\rb\nc\r\n\nd"
    path.write_bytes(data)
    lines = list(iter_lines([str(path)]))
    assert lines == ["a\rb", "c\r", "", "d"]
    assert "\n".join(lines).encode() == data


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)])
def test_compressed_files_read_transparently(tmp_path, suffix, opener):
    path = tmp_path / f"c.txt{suffix}"
    with opener(path, "wb") as handle:
        handle.write(TEXT.encode("utf-8"))
    assert list(iter_lines([str(path)])) == LINES
    assert input_kind(str(path)) == "text"


def test_globs_expand_sorted_and_files_concatenate_in_order(tmp_path):
    for name, text in [("b.txt", "two\n"), ("a.txt", "one\n"), ("c.log", "skip\n")]:
        (tmp_path / name).write_text(text)
    assert list(iter_lines([str(tmp_path / "*.txt")])) == ["one", "two"]
    assert resolve_inputs([str(tmp_path / "*.txt")]) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_no_inputs_means_stdin(monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x y\nz\n")))
    assert list(iter_lines(None)) == ["x y", "z"]
    assert resolve_inputs([]) == ["-"]


def test_missing_file_directory_and_empty_glob_are_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_lines([str(tmp_path / "missing.txt")]))
    with pytest.raises(InputError, match="is a directory"):
        list(iter_lines([str(tmp_path)]))
    with pytest.raises(InputError, match="matches no file"):
        list(iter_lines([str(tmp_path / "*.nothing")]))


def test_undecodable_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\nstill ok\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"bad\.txt:3: not valid UTF-8 \(byte 0xff at column 5\)"):
        list(iter_lines([str(path)]))
    replaced = list(iter_lines([str(path)], CorpusOptions(encoding_errors="replace")))
    assert replaced[2] == "bad \ufffd byte"


def test_undecodable_bytes_far_into_a_large_file_report_the_right_line(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"line\n" * 100_000 + b"\xc3\x28\n")
    with pytest.raises(InputError, match=r":100001:"):
        list(iter_lines([str(path)]))


def test_empty_input_is_an_error_unless_allowed(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n  \n")
    with pytest.raises(InputError, match="empty"):
        list(iter_lines([str(path)]))
    assert list(iter_lines([str(path)], require_text=False)) == ["", "  "]


def test_jsonl_needs_text_field_and_reads_it(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "hello world", "label": 1}\n{"text": "second", "label": 0}\n')
    with pytest.raises(InputError, match="--text-field"):
        list(iter_lines([str(path)]))
    assert list(iter_lines([str(path)], CorpusOptions(text_field="text"))) == ["hello world", "second"]
    with pytest.raises(InputError, match="no field 'body'"):
        list(iter_lines([str(path)], CorpusOptions(text_field="body")))


def test_tsv_and_csv_through_datasets(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\na, b\t1\nc\t0\n")
    csv = tmp_path / "d.csv"
    csv.write_text('text,label\n"a, b",1\nc,0\n')
    options = CorpusOptions(text_field="text")
    assert list(iter_lines([str(tsv)], options)) == ["a, b", "c"]
    assert list(iter_lines([str(csv)], options)) == ["a, b", "c"]


def test_parquet_through_datasets(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"sentence": ["one two", "three"]}), path)
    assert list(iter_lines([str(path)], CorpusOptions(text_field="sentence"))) == ["one two", "three"]


def test_builtin_corpus_is_available_offline():
    text = builtin_corpus_text("python-help")
    assert len(text) > 100_000 and "def" in text
    lines = list(iter_lines(["builtin:python-help"]))
    assert "\n".join(lines) + "\n" == text
    with pytest.raises(InputError, match="no such built-in corpus"):
        resolve_inputs(["builtin:nope"])


def test_chunks_and_token_lines(tmp_path):
    assert list(iter_chunks(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    path = tmp_path / "t.txt"
    path.write_text("a b  c\n\n d \n")
    assert list(iter_token_lines([str(path)])) == [["a", "b", "c"], ["d"]]
    assert describe_inputs([str(path), "x"]).endswith("(+1 more)")


def test_bad_encoding_errors_option():
    with pytest.raises(InputError, match="--encoding-errors"):
        list(iter_lines(["builtin:python-help"], CorpusOptions(encoding_errors="bogus")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(["a", "é", "✓", " ", "\t", "\r", "\n", "\u2028"]), max_size=40),
                min_size=1, max_size=3))
def test_scan_counts_what_iter_line_blocks_yields(tmp_path_factory, texts):
    directory = tmp_path_factory.mktemp("scan")
    paths = []
    for number, text in enumerate(texts):
        path = directory / f"{number}.txt"
        path.write_bytes(text.encode("utf-8"))
        paths.append(str(path))
    try:
        blocks = list(iter_line_blocks(paths))
    except InputError as exc:  # no text at all: the scan refuses it with the same message
        with pytest.raises(InputError, match="empty"):
            scan_text_files(paths)
        assert "empty" in str(exc)
        return
    scan = scan_text_files(paths)
    lines = [line for block in blocks for line in block]
    assert scan.lines == len(lines)
    assert scan.chars == sum(map(len, lines))
    assert scan.has_carriage_return == any("\r" in line for line in lines)


def test_scan_counts_across_small_reads(tmp_path, monkeypatch):
    import dlnlp.io.corpus as corpus

    monkeypatch.setattr(corpus, "SCAN_BLOCK", 7)  # multi-byte characters split between reads
    path = tmp_path / "c.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    scan = scan_text_files([str(path)])
    assert (scan.lines, scan.chars, scan.has_carriage_return) == (len(LINES), sum(map(len, LINES)), True)


def test_scan_names_the_undecodable_line_and_refuses_empty_input(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nstill fine\nbad \xff here\n")
    with pytest.raises(InputError, match=r"bad.txt:3: not valid UTF-8"):
        scan_text_files([str(path)])
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n\t\n")
    with pytest.raises(InputError, match="empty"):
        scan_text_files([str(blank)])


def test_plain_text_files_only_for_regular_uncompressed_strict_text(tmp_path):
    import os

    plain = tmp_path / "a.txt"
    plain.write_text("x\n")
    assert plain_text_files([str(plain)]) == [str(plain)]
    assert plain_text_files([str(tmp_path / "*.txt")]) == [str(plain)]
    packed = tmp_path / "b.txt.gz"
    packed.write_bytes(gzip.compress(b"x\n"))
    comma = tmp_path / "c,d.txt"
    comma.write_text("x\n")
    records = tmp_path / "e.jsonl"
    records.write_text('{"text": "x"}\n')
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for inputs in ([str(plain), str(packed)], [str(comma)], [str(records)], [str(fifo)], ["-"], None,
                   ["builtin:python-help"]):
        assert plain_text_files(inputs) is None, inputs
    assert plain_text_files([str(plain)], CorpusOptions(encoding_errors="replace")) is None


# --- over-long lines (issue 19, item 7) ----------------------------------------------------------
def _lines_in(tmp_path, data: bytes, **kwargs):
    path = tmp_path / "long.txt"
    path.write_bytes(data)
    return list(iter_lines([str(path)], require_text=False, **kwargs))


@pytest.mark.parametrize("read_block", [None, 3, 7])  # lines longer than a read, and reads longer than lines
def test_long_lines_are_cut_into_pieces_of_the_limit(tmp_path, monkeypatch, read_block):
    import dlnlp.io.corpus as corpus

    if read_block:
        monkeypatch.setattr(corpus, "READ_BLOCK", read_block)
    data = b"short\n" + b"abcdefghijklm" + b"\nexact\n\n" + b"x" * 10 + b"\nlast without newline"
    assert _lines_in(tmp_path, data, max_chars=5) == [
        "short", "abcde", "fghij", "klm", "exact", "", "xxxxx", "xxxxx", "last ", "witho", "ut ne", "wline"]
    # up to the limit, lines are yielded exactly as they are
    assert _lines_in(tmp_path, data, max_chars=20) == data.decode().split("\n")


@pytest.mark.parametrize("read_block", [None, 3, 7])
def test_long_lines_are_refused_with_file_line_and_length(tmp_path, monkeypatch, read_block):
    import dlnlp.io.corpus as corpus

    if read_block:
        monkeypatch.setattr(corpus, "READ_BLOCK", read_block)
    data = "short\nünïcödé ✓ ok\n" + "é" * 23 + "\nnext\n"
    path = tmp_path / "long.txt"
    path.write_text(data, encoding="utf-8")
    assert _lines_in(tmp_path, data.encode(), max_chars=23, long_lines="error") == data.split("\n")[:-1]
    with pytest.raises(InputError, match=r"long\.txt:3: line of 23 characters is longer than the limit of 22 \(.*"
                                         r"split it into shorter lines, or raise DLNLP_MAX_LINE_CHARS\)$"):
        _lines_in(tmp_path, data.encode(), max_chars=22, long_lines="error")
    with pytest.raises(InputError, match=r"long\.txt:1: line of 1,000,000 characters is longer than the limit of 5"):
        _lines_in(tmp_path, b"a" * 1_000_000, max_chars=5, long_lines="error")


def test_line_limit_comes_from_the_environment(tmp_path, monkeypatch):
    from dlnlp.io.corpus import MAX_LINE_CHARS, max_line_chars

    assert max_line_chars() == MAX_LINE_CHARS == 1 << 20
    monkeypatch.setenv("DLNLP_MAX_LINE_CHARS", "4")
    assert _lines_in(tmp_path, b"abcdefghij\nabc\n") == ["abcd", "efgh", "ij", "abc"]
    monkeypatch.setenv("DLNLP_MAX_LINE_CHARS", "0")
    with pytest.raises(InputError, match="DLNLP_MAX_LINE_CHARS must be a positive number"):
        _lines_in(tmp_path, b"abc\n")


def test_long_stdin_lines_and_records(tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n" + b"z" * 12 + b"\n")))
    with pytest.raises(InputError, match=r"^<stdin>:2: line of 12 characters is longer than the limit of 10"):
        list(iter_lines(["-"], long_lines="error", max_chars=10))
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "short"}\n{"text": "a longer record"}\n')
    options = CorpusOptions(text_field="text")
    assert list(iter_lines([str(path)], options, max_chars=8)) == ["short", "a longer", " record"]
    with pytest.raises(InputError, match=r"d\.jsonl:2: record of 15 characters is longer than the limit of 8"):
        list(iter_lines([str(path)], options, max_chars=8, long_lines="error"))


def test_a_long_line_is_read_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "one.txt"
    path.write_bytes(b"word " * 4_000_000)  # one line of 20 MB
    tracemalloc.start()
    try:
        pieces = sum(1 for _ in iter_lines([str(path)], max_chars=1 << 16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pieces == 20_000_000 // (1 << 16) + 1
    assert peak < 8_000_000  # was the whole line, and a copy of it per read: over 40 MB


@pytest.mark.parametrize("scan_block", [None, 4])
def test_scan_says_whether_a_line_is_over_the_limit(tmp_path, monkeypatch, scan_block):
    import dlnlp.io.corpus as corpus

    if scan_block:
        monkeypatch.setattr(corpus, "SCAN_BLOCK", scan_block)
    path = tmp_path / "c.txt"
    for text, limit, expected in [("abc\nde\n", 3, False), ("abc\nde\n", 2, True), ("ab\nabcdefg", 6, True),
                                  ("abcdefg", 7, False), ("a\nbb\nccc\ndd\n", 2, True)]:
        path.write_text(text)
        assert scan_text_files([str(path)], max_chars=limit).has_long_line is expected, (text, limit)


# --- damaged compressed files and undecodable stdin (issue 19, item 12) ---------------------------
@pytest.mark.parametrize("suffix,compress", [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)])
def test_damaged_compressed_files_name_the_file_once(tmp_path, suffix, compress):
    import random

    text = "".join(f"line {i} {random.Random(i).random()}\n" for i in range(20000)).encode()
    data = compress(text)
    truncated = tmp_path / f"t.txt{suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        list(iter_lines([str(truncated)]))
    kind = suffix[1:].replace("gz", "gzip")
    assert str(info.value) == f"{truncated}: not a valid {kind} file (truncated: it ends inside the compressed data)"
    corrupt = tmp_path / f"c.txt{suffix}"
    corrupt.write_bytes(data[:2000] + bytes(b ^ 0x55 for b in data[2000:2400]) + data[2400:])
    with pytest.raises(InputError) as info:
        list(iter_lines([str(corrupt)]))
    message = str(info.value)
    assert message.startswith(f"{corrupt}: not a valid {kind} file (") and "error" not in message, message
    assert "\n" not in message


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"just text\n")
    with pytest.raises(InputError, match=r"^.*plain\.gz: not a valid gzip file \(no gzip header\)$"):
        list(iter_lines([str(path)]))


@pytest.mark.parametrize("read_block", [None, 3])
def test_undecodable_stdin_names_the_line_and_column(monkeypatch, read_block):
    import io

    import dlnlp.io.corpus as corpus

    if read_block:
        monkeypatch.setattr(corpus, "READ_BLOCK", read_block)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\nstill ok\nbad \xff byte\n")))
    with pytest.raises(InputError, match=r"^<stdin>:4: not valid UTF-8 \(byte 0xff at column 5\); "
                                         r"use --encoding-errors replace to read it anyway$"):
        list(iter_lines(["-"]))


def test_iter_file_lines_reads_any_suffix_as_plain_lines(tmp_path):
    from dlnlp.io.corpus import iter_file_lines

    path = tmp_path / "d.tsv"
    path.write_bytes(b"text\tlabel\r\na\t1\n")
    assert list(iter_file_lines(str(path))) == ["text\tlabel\r", "a\t1"]  # not parsed through datasets
    path.write_bytes(b"text\tlabel\r\na\t1\nbad \xff\n")
    with pytest.raises(InputError, match=r"d\.tsv:3: not valid UTF-8"):
        list(iter_file_lines(str(path)))
    with pytest.raises(InputError, match="--encoding-errors"):
        next(iter_file_lines(str(path), "lenient"))
