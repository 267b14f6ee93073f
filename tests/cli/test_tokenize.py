"""`dlnlp tokenize` through real subprocess pipes (run_cli) and typer's CliRunner; bad inputs."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from dlnlp.cli.main import app
from tests.conftest import run_cli, shared_path

CORPUS = "builtin:python-help"
TRICKY = "plain line\n\n  leading and trailing  \nünïcödé ✓ 😀\r\nCR inside\rthe line\n\t\nend <|endoftext|> here\n"


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tok.json"
    result = run_cli("tokenize", "train", CORPUS, "--model", "bpe", "--vocab-size", "1200", "--out", str(path),
                     "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["vocab_size"] == 1200 and info["lines"] > 1000 and info["model"] == "bpe"
    return str(path)


def assert_fails(result, *needles, code: int = 1):
    assert result.returncode == code, (result.stdout, result.stderr)
    stderr = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlnlp: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_trained_file_loads_in_tokenizers_unchanged(tok):
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(tok).get_vocab_size() == 1200


def test_pipe_round_trip_is_byte_identical(tok):
    ids = run_cli("tokenize", "encode", "-t", tok, input=TRICKY.encode())
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.count(b"\n") == TRICKY.count("\n")
    back = run_cli("tokenize", "decode", "-t", tok, input=ids.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout == TRICKY.encode()


def test_tinyshakespeare_round_trip_through_files(tok, tmp_path):
    corpus = shared_path("corpora/tinyshakespeare.txt")
    ids, text = tmp_path / "s.ids", tmp_path / "s.txt"
    run_cli("tokenize", "encode", str(corpus), "-t", tok, "--output", str(ids), check=True)
    run_cli("tokenize", "decode", str(ids), "-t", tok, "--output", str(text), check=True)
    assert text.read_bytes() == corpus.read_bytes()


def test_encode_matches_the_library_and_formats(tok):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(tok)
    lines = TRICKY.split("\n")[:-1]
    out = run_cli("tokenize", "encode", "-t", tok, input=TRICKY.encode()).stdout.decode()
    assert [list(map(int, x.split())) for x in out.split("\n")[:-1]] == [hf.encode(x).ids for x in lines]
    tokens = run_cli("tokenize", "encode", "-t", tok, "--format", "tokens", input="hello world\n").stdout
    assert tokens.split() == hf.encode("hello world").tokens
    records = run_cli("tokenize", "encode", "-t", tok, "--format", "jsonl", input="hello\n").stdout
    assert json.loads(records) == {"ids": hf.encode("hello").ids, "tokens": hf.encode("hello").tokens}
    back = run_cli("tokenize", "decode", "-t", tok, "--format", "jsonl", input=records)
    assert back.stdout == "hello\n"


def test_cli_runner_encode_decode_and_inspect(tok, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", "encode", "-t", tok], input="a b\n\nc\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 3 and result.stdout.split("\n")[1] == ""
    result = runner.invoke(app, ["tokenize", "decode", "-t", tok], input=result.stdout)
    assert result.stdout == "a b\n\nc\n"
    result = runner.invoke(app, ["tokenize", "inspect", tok, "--sample", "def main(): return 42",
                                 "--corpus", CORPUS, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["vocab_size"] == 1200 and info["merges"] == 1200 - 1 - 256 and info["eos_id"] == 0
    assert "".join(info["sample"]["tokens"]).replace("\u0120", " ") == "def main(): return 42"
    assert 1.0 < info["corpus"]["fertility"] < 3.0
    text = runner.invoke(app, ["tokenize", "inspect", tok, "--sample", "hi"]).stdout
    assert "vocab size     1200" in text and "merges         943" in text


@pytest.mark.parametrize("args,suffix", [
    (["--model", "char-bpe"], ".json"), (["--model", "wordpiece"], ".json"), (["--model", "unigram"], ".json"),
    (["--engine", "sentencepiece", "--model", "bpe"], ".model"),
    (["--engine", "sentencepiece", "--model", "unigram", "--special", "<mask>"], ".model"),
])
def test_train_every_model(tmp_path, args, suffix):
    out = tmp_path / f"t{suffix}"
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", "train", CORPUS, *args, "--vocab-size", "500", "--out", str(out),
                                 "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["vocab_size"] == 500
    if suffix == ".model":
        import sentencepiece as spm

        assert spm.SentencePieceProcessor(model_file=str(out)).get_piece_size() == 500
    else:
        from tokenizers import Tokenizer

        assert Tokenizer.from_file(str(out)).get_vocab_size() == 500


def test_train_refuses_to_overwrite_and_force(tok, tmp_path):
    out = tmp_path / "t.json"
    out.write_text("keep me")
    assert_fails(run_cli("tokenize", "train", CORPUS, "--vocab-size", "300", "--out", str(out)), "--force")
    assert out.read_text() == "keep me"
    run_cli("tokenize", "train", CORPUS, "--vocab-size", "300", "--out", str(out), "--force", "-q", check=True)
    assert json.loads(out.read_text())["model"]["type"] == "BPE"


def test_encode_output_refuses_to_overwrite(tok, tmp_path):
    out = tmp_path / "o.ids"
    out.write_text("old")
    assert_fails(run_cli("tokenize", "encode", "-t", tok, "--output", str(out), input="x\n"), "--force")
    assert out.read_text() == "old"


# --- the foundation's corpus input, through the tokenize commands --------------------------------
def test_gz_glob_and_jsonl_inputs(tok, tmp_path):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(tok)
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("first file\n")
    (tmp_path / "b.txt").write_text("second file\n")
    out = run_cli("tokenize", "encode", str(tmp_path / "*.txt*"), "-t", tok, check=True).stdout
    assert out == f"{' '.join(map(str, hf.encode('first file').ids))}\n{' '.join(map(str, hf.encode('second file').ids))}\n"
    records = tmp_path / "d.jsonl"
    records.write_text(json.dumps({"text": "from json", "n": 1}) + "\n" + json.dumps({"text": "", "n": 2}) + "\n")
    out = run_cli("tokenize", "encode", str(records), "--text-field", "text", "-t", tok, check=True).stdout
    assert out == " ".join(map(str, hf.encode("from json").ids)) + "\n\n"
    model = tmp_path / "j.json"
    result = CliRunner().invoke(app, ["tokenize", "train", str(records), "--text-field", "text", "--vocab-size",
                                      "270", "--out", str(model), "-q"])
    assert result.exit_code == 0 and model.exists()


# --- bad inputs: exit 1, one line on stderr, nothing written -------------------------------------
def test_bad_inputs_for_train(tmp_path):
    out = tmp_path / "t.json"
    train = ("tokenize", "train")
    assert_fails(run_cli(*train, str(tmp_path / "missing.txt"), "--out", str(out)), "missing.txt", "no such file")
    assert_fails(run_cli(*train, str(tmp_path), "--out", str(out)), "is a directory")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff byte\n")
    assert_fails(run_cli(*train, str(bad), "--out", str(out)), "bad.txt:2", "--encoding-errors replace")
    assert_fails(run_cli(*train, "--out", str(out), input=b""), "empty")
    records = tmp_path / "r.jsonl"
    records.write_text('{"text": "a"}\n')
    assert_fails(run_cli(*train, str(records), "--out", str(out)), "--text-field")
    assert_fails(run_cli(*train, CORPUS, "--out", str(out), "--model", "nope"), "--model", code=2)
    assert_fails(run_cli(*train, str(records), "--text-field", "text", "--engine", "sentencepiece",
                         "--model", "unigram", "--vocab-size", "500", "--out", str(out), "-q"),
                 "sentencepiece: Vocabulary size too high")
    # plain files that sentencepiece would read itself are checked first, with the same messages
    sp_out = tmp_path / "t.model"
    sp_train = (*train, "--engine", "sentencepiece", "--out", str(sp_out))
    assert_fails(run_cli(*sp_train, str(bad)), "bad.txt:2", "--encoding-errors replace")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\t\n")
    assert_fails(run_cli(*sp_train, str(blank)), "blank.txt", "empty")
    small = tmp_path / "small.txt"
    small.write_text("a few words\n")
    assert_fails(run_cli(*sp_train, str(small), "--vocab-size", "5000", "-q"), "sentencepiece: Vocabulary size")
    assert not out.exists() and not list(tmp_path.glob(".t.json*"))
    assert not sp_out.exists() and not list(tmp_path.glob(".t.model*"))
    run_cli(*train, str(bad), "--encoding-errors", "replace", "--vocab-size", "260", "--out", str(out), "-q",
            check=True)
    assert out.exists()


def test_sentencepiece_learns_the_same_from_a_file_as_from_stdin(tmp_path):
    import sentencepiece as spm

    from dlnlp.io.corpus import builtin_corpus_text

    lines = builtin_corpus_text("python-help").split("\n")[:3000]
    text = "\n".join(lines) + "\n"
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    summaries, models = [], []
    for name, source, stdin in (("file", str(path), None), ("stdin", "-", text)):
        out = tmp_path / f"{name}.model"
        result = run_cli("tokenize", "train", source, "--engine", "sentencepiece", "--vocab-size", "500",
                         "--out", str(out), "--json", input=stdin, check=True)
        summaries.append({k: v for k, v in json.loads(result.stdout).items() if k in ("lines", "chars", "vocab_size")})
        assert "training sentencepiece bpe" in result.stderr
        processor = spm.SentencePieceProcessor(model_file=str(out))
        models.append([(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())])
    assert summaries[0] == summaries[1] == {"lines": 3000, "chars": sum(map(len, lines)), "vocab_size": 500}
    assert models[0] == models[1]


def test_bad_inputs_for_encode_and_decode(tok, tmp_path):
    out = tmp_path / "o.ids"
    enc = ("tokenize", "encode", "-t", tok, "--output", str(out))
    assert_fails(run_cli(*enc, str(tmp_path / "missing.txt")), "no such file")
    assert_fails(run_cli(*enc, str(tmp_path)), "is a directory")
    assert_fails(run_cli(*enc, input=b"ok\nbad \xfe\n"), "<stdin>:2: not valid UTF-8 (byte 0xfe at column 5)",
                 "--encoding-errors replace")
    records = tmp_path / "r.jsonl"
    records.write_text('{"text": "a"}\n')
    assert_fails(run_cli(*enc, str(records)), "--text-field")
    assert_fails(run_cli("tokenize", "encode", "-t", str(tmp_path / "none.json"), input="a\n"), "no such tokenizer")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"version": "1.0", "truncated')
    assert_fails(run_cli("tokenize", "encode", "-t", str(corrupt), input="a\n"), "not a valid tokenizer.json")
    assert_fails(run_cli("tokenize", "encode", "-t", tok, "--format", "xml", input="a\n"), "--format", code=2)
    assert not out.exists() and not list(tmp_path.glob(".o.ids*"))
    replaced = run_cli("tokenize", "encode", "-t", tok, "--encoding-errors", "replace", input=b"bad \xfe\n")
    assert replaced.returncode == 0
    back = run_cli("tokenize", "decode", "-t", tok, input=replaced.stdout)
    assert back.stdout.decode() == "bad \ufffd\n"

    dec = ("tokenize", "decode", "-t", tok, "--output", str(out))
    assert_fails(run_cli(*dec, input="1 2\nhello\n"), "<stdin>:2", "not a line of token ids")
    assert_fails(run_cli(*dec, input="5 100000\n"), "out of range")
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "\n", "\n\n", " \n\t\n\n"])
def test_empty_and_blank_input_round_trip(tok, tmp_path, text):
    # Empty input is no lines (no output, exit 0); each blank line is one empty line of ids.
    ids = run_cli("tokenize", "encode", "-t", tok, "-q", input=text.encode())
    assert ids.returncode == 0 and ids.stderr == b"", ids.stderr
    assert ids.stdout.count(b"\n") == text.count("\n")
    back = run_cli("tokenize", "decode", "-t", tok, "-q", input=ids.stdout)
    assert (back.returncode, back.stderr, back.stdout) == (0, b"", text.encode())
    empty = tmp_path / "empty.txt"
    empty.write_bytes(text.encode())
    out = tmp_path / "out.ids"
    run_cli("tokenize", "encode", str(empty), "-t", tok, "-q", "--output", str(out), check=True)
    assert out.read_bytes() == ids.stdout


def test_usage_error_is_exit_2(tok):
    result = run_cli("tokenize", "encode", input="a\n")  # no -t
    assert result.returncode == 2 and "--tokenizer" in result.stderr


def test_reader_going_away_is_not_an_error(tok):
    import subprocess
    import sys

    corpus = shared_path("corpora/tinyshakespeare.txt")
    proc = subprocess.Popen([sys.executable, "-m", "dlnlp", "tokenize", "encode", str(corpus), "-t", tok, "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=120) == 0
    assert first.split() and proc.stderr.read() == b""


# --- over-long lines (issue 19, item 7): encode refuses them, training cuts them --------------------
def test_encode_refuses_a_line_over_the_limit_and_round_trips_lines_up_to_it(tok, tmp_path):
    limit = {"DLNLP_MAX_LINE_CHARS": "40"}
    text = "a line well under the limit\n" + "ü" * 40 + "\n\n" + "x" * 39 + "\r\n" + "😀\x00" * 20 + "\n"
    for fmt in ("ids", "tokens", "jsonl"):  # decode reads what encode writes for lines up to the limit
        ids = run_cli("tokenize", "encode", "-t", tok, "-q", "--format", fmt, input=text.encode(), env=limit)
        assert ids.returncode == 0, ids.stderr
        back = run_cli("tokenize", "decode", "-t", tok, "-q", "--format", fmt, input=ids.stdout, env=limit)
        assert (back.returncode, back.stderr, back.stdout) == (0, b"", text.encode())
    assert_fails(run_cli("tokenize", "decode", "-t", tok, input="1 " * 700 + "\n", env=limit),
                 "<stdin>:1: line of 1,400 characters is longer than the limit of 1,280")
    long = tmp_path / "long.txt"
    long.write_text("short\n" + "word " * 20 + "\nafter\n", encoding="utf-8")
    out = tmp_path / "long.ids"
    assert_fails(run_cli("tokenize", "encode", str(long), "-t", tok, "--output", str(out), env=limit),
                 f"{long}:2: line of 100 characters is longer than the limit of 40", "DLNLP_MAX_LINE_CHARS")
    assert not out.exists()


def test_training_cuts_a_line_over_the_limit_into_pieces(tmp_path):
    long = tmp_path / "long.txt"
    long.write_text("short line\n" + "word " * 30 + "\n", encoding="utf-8")  # 150 characters
    for engine, out in (("hf", tmp_path / "t.json"), ("sentencepiece", tmp_path / "t.model")):
        result = run_cli("tokenize", "train", str(long), "--engine", engine, "--vocab-size", "270" if engine == "hf"
                         else "16", "--out", str(out), "--json", "-q", env={"DLNLP_MAX_LINE_CHARS": "40"})
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["lines"] == 1 + 4  # 150 characters in pieces of 40


def test_sentencepiece_option_errors_are_one_clear_line(tmp_path):
    train = ("tokenize", "train", CORPUS, "--engine", "sentencepiece", "--out", str(tmp_path / "t.model"))
    assert_fails(run_cli(*train, "--vocab-size", "2"), "--vocab-size must be more than 3 for sentencepiece")
    assert_fails(run_cli(*train, "--character-coverage", "0.5"), "--character-coverage must be between 0.98 and 1")
    assert_fails(run_cli(*train, "--special", ""), "--special must not be empty")


def test_sentencepiece_log_is_silenced_unless_verbose(tmp_path):
    pytest.importorskip("sentencepiece")
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"the quick brown fox {i} jumps over the lazy dog\n" for i in range(300)))
    args = ["tokenize", "train", str(corpus), "--engine", "sentencepiece", "--model", "unigram", "--vocab-size",
            "60", "--workers", "1"]
    quiet = run_cli(*args, "--out", str(tmp_path / "a.model"), check=True)
    verbose = run_cli(*args, "--out", str(tmp_path / "b.model"), "--verbose", check=True)
    assert "trainer_interface" not in quiet.stderr and "wrote" in quiet.stderr
    assert "trainer_interface" in verbose.stderr
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_the_progress_line_ticks_while_a_silent_trainer_runs():
    import io
    import time

    from dlnlp.tokenization.train import _ticking

    stream = io.StringIO()
    import dlnlp.progress as progress

    original = progress.Progress.__init__

    def into_stream(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "stream": stream})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress.Progress, "__init__", into_stream)
        with _ticking("training x", quiet=False, fields=lambda: {"lines": 7}):
            time.sleep(1.3)
    assert "training x: 1 s" in stream.getvalue() and "lines=7" in stream.getvalue()
