"""The bad-input matrix (issue #19 item 13): every command group against the inputs an adversarial user
gives it, asserting the rules of the CLI conventions on each case.

- A failure is exit code 1 with one line on stderr, ``dlnlp: error: ...`` (warnings aside), no
  traceback and no Python exception class name; a usage error is exit code 2.
- Input that is legitimately acceptable (CRLF text; empty or blank input to a line-for-line filter)
  is exit code 0.
- A failed run changes nothing that existed before: the previous output (a real output of the same
  command, so ``--force`` would have been allowed to replace it) keeps its bytes and mtime, with and
  without ``--force``, and nothing new is left beside it (no half-written directory, no ``.NAME.*.tmp``).
- No output may be the current directory, an ancestor of it, a directory that is not a dlnlp output
  or one of the inputs, whatever ``--force`` says.

Most cases run in-process (``run_main``: no interpreter start or torch import per case); the cases that
need a real process run ``python -m dlnlp``: absurd sizes (under an address-space limit, so that a
regression fails the test instead of swapping the machine, and a crash by signal is caught), peak
memory on an over-long line, and two ``--force`` runs at once.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_main

# --- inputs ------------------------------------------------------------------------------------------

WORDS = ("the", "cat", "dog", "cow", "horse", "bird", "fish", "ran", "sat", "ate", "saw", "big", "small", "red",
         "blue", "green", "old", "new", "one", "two", "a", "of", "and", "in", "on", "with", "at", "by")


def _corpus_text(lines: int = 240) -> str:
    out = []
    for i in range(lines):
        n = 5 + i % 7
        out.append(" ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(n)) + " .")
    return "\n".join(out) + "\n"


CORPUS = _corpus_text()
LONG_LINE_BYTES = 1 << 20  # one 1 MiB line among normal ones (a light version of the 50 MB line of item 7)


def _gzip_corrupt(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    middle = len(packed) // 2
    for i in range(middle, middle + 16):  # damage the deflate stream, keep the header
        packed[i] ^= 0x5A
    return bytes(packed)


def _input_bytes(kind: str, text: str) -> bytes | None:
    """The bytes of a bad input of ``kind`` built from the good ``text`` (None: no file)."""
    data = text.encode()
    if kind == "empty":
        return b""
    if kind == "blank":
        return b"\n \n\t\n\n"
    if kind == "binary":
        return bytes(range(256)) * 16 + b"\x00" * 64
    if kind == "invalid-utf8":
        lines = data.split(b"\n")
        lines[2] = lines[2] + b" caf\xe9 \xff\xfe"
        return b"\n".join(lines)
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "gz-truncated":
        packed = gzip.compress(data)
        return packed[: len(packed) // 2]
    if kind == "gz-corrupt":
        return _gzip_corrupt(data)
    if kind == "long-line":
        unit = data.split(b"\n")[0].rstrip(b" .") + b" "
        long = (unit * (LONG_LINE_BYTES // len(unit) + 1))[:LONG_LINE_BYTES].rstrip() + b"\n"
        return data + long + data
    raise AssertionError(kind)


def make_input(root: Path, kind: str, text: str) -> Path:
    """A file (or directory, or nothing) at a fresh path under ``root`` holding input of ``kind``."""
    suffix = ".txt.gz" if kind.startswith("gz-") else ".txt"
    path = root / f"input-{kind}{suffix}"
    if kind == "missing":
        return path
    if kind == "directory":
        path = root / "input-directory"
        path.mkdir()
        (path / "part.txt").write_text(text)  # a directory with text in it is still not a file
        return path
    path.write_bytes(_input_bytes(kind, text))
    return path


# --- what a run may and may not do ---------------------------------------------------------------

EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Interrupt|Exit)\b(?!\w)")
MESSAGE = "dlnlp: error: "


def error_line(result) -> str:
    """The one error line of a failed run (warnings may precede it; nothing else may)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    other = [line for line in lines if not line.startswith("dlnlp: warning: ")]
    assert len(other) == 1 and other[0].startswith(MESSAGE), f"not one error line: {result.stderr!r}"
    line = other[0]
    assert not EXCEPTION_NAME.search(line), f"a Python exception name reaches the user: {line!r}"
    assert "error: error:" not in line, line
    return line[len(MESSAGE):]


def assert_fails(result, *needles: str, code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    message = error_line(result)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def assert_refused(result) -> str:
    """A refusal of an output (or of an option value): exit 1 with one line, or a usage error (2)."""
    assert result.returncode in (1, 2), (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 1:
        return error_line(result)
    return result.stderr


def assert_ok(result) -> None:
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and MESSAGE not in result.stderr, result.stderr


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, mtime and bytes, to compare before and after a run."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir",)
        else:
            stat = path.stat()
            state[rel] = ("file", stat.st_size, stat.st_mtime_ns, path.read_bytes())
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    lost = sorted(set(before) - set(after))
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (lost or added or changed), f"lost {lost}, left behind {added}, changed {changed}"


# --- what the commands work on ------------------------------------------------------------------

TOKENIZE = ["--vocab-size", "300", "-q"]
NGRAM = ["--order", "2", "-q"]
RNN = ["--cell", "gru", "--layers", "1", "--hidden", "8", "--embed", "8", "--seq-len", "8", "--batch-size", "2",
       "--max-steps", "1", "--eval-interval", "0", "--device", "cpu", "-q"]
GPT = ["--layers", "1", "--heads", "2", "--dim", "8", "--block-size", "8", "--batch-size", "2", "--max-steps", "1",
       "--warmup", "0", "--eval-interval", "0", "--device", "cpu", "-q"]
WORD2VEC = ["--dim", "8", "--epochs", "1", "--min-count", "1", "--workers", "1", "--device", "cpu", "-q"]
GLOVE = ["--dim", "8", "--epochs", "1", "--min-count", "1", "--window", "3", "--workers", "1", "--device", "cpu",
         "-q"]
PPMI = ["--dim", "4", "--min-count", "1", "--window", "2", "-q"]
FINETUNE = ["--max-steps", "1", "--batch-size", "4", "--device", "cpu", "-q"]
DISTILL = [*FINETUNE, "--student", "bert:layers=1"]
ELMO = ["--dim", "4", "--hidden", "8", "--layers", "1", "--filters", "1:2,2:2", "--char-dim", "2", "--highway", "0",
        "--max-chars", "8", "--seq-len", "8", "--batch-size", "2", "--max-steps", "1", "--eval-interval", "0",
        "--min-count", "1", "--device", "cpu", "-q"]
BERT = ["--layers", "1", "--heads", "2", "--dim", "8", "--intermediate", "16", "--max-len", "16", "--batch-size", "2",
        "--max-steps", "1", "--warmup", "0", "--eval-interval", "0", "--device", "cpu", "-q"]


def _run_ok(*args, input=None):
    result = run_main(*args, input=input)
    assert result.returncode == 0, (args, result.stderr)
    return result


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    """Good artifacts of every command, built once: corpus, tokenizer, ids, models, vectors, ARPA, HF dir."""
    root = tmp_path_factory.mktemp("artifacts")
    a = {"root": root, "corpus": root / "corpus.txt", "tok": root / "tok.json", "ids": root / "corpus.ids",
         "ngram": root / "ngram", "arpa": root / "ngram.arpa", "rnn": root / "rnn", "gpt": root / "gpt",
         "hf": root / "hf", "vec": root / "vec.txt", "glove": root / "glove.txt", "ppmi": root / "ppmi.txt",
         "plot": root / "plot.png", "val": root / "val.txt", "sim": root / "sim.tsv", "wp": root / "wp.json",
         "bert": root / "bert", "lab": root / "labeled.tsv", "ft": root / "ft", "elmo": root / "elmo"}
    a["sim"].write_text("cat\tdog\t7.5\ncow\thorse\t6.0\nred\tblue\t5.0\n")
    a["corpus"].write_text(CORPUS)
    a["val"].write_text("".join(CORPUS.splitlines(keepends=True)[:20]))
    _run_ok("tokenize", "train", a["corpus"], *TOKENIZE, "--out", a["tok"])
    _run_ok("tokenize", "encode", a["corpus"], "-t", a["tok"], "-q", "--output", a["ids"])
    _run_ok("ngram", "train", a["corpus"], *NGRAM, "--out", a["ngram"])
    _run_ok("ngram", "export", a["ngram"], a["arpa"])
    _run_ok("rnn", "train", a["corpus"], *RNN, "--out", a["rnn"])
    _run_ok("gpt", "train", a["corpus"], *GPT, "-t", a["tok"], "--out", a["gpt"])
    _run_ok("gpt", "export", a["gpt"], a["hf"])
    _run_ok("word2vec", "train", a["corpus"], *WORD2VEC, "--out", a["vec"])
    _run_ok("glove", "train", a["corpus"], *GLOVE, "--out", a["glove"])
    _run_ok("vectors", "ppmi-svd", a["corpus"], *PPMI, "--out", a["ppmi"])
    _run_ok("vectors", "plot", a["vec"], "cat", "dog", "cow", "--out", a["plot"])
    _run_ok("tokenize", "train", a["corpus"], "--model", "wordpiece", *TOKENIZE, "--out", a["wp"])
    _run_ok("bert", "pretrain", a["corpus"], *BERT, "-t", a["wp"], "--out", a["bert"])
    lines = [line for line in CORPUS.splitlines() if line.strip()][:16]
    a["lab"].write_text("text\tlabel\n" + "".join(f"{line}\t{i % 2}\n" for i, line in enumerate(lines)))
    _run_ok("finetune", a["bert"], a["lab"], *FINETUNE, "--out", a["ft"])
    _run_ok("elmo", "train", a["corpus"], *ELMO, "--out", a["elmo"])
    return a


# --- text inputs ---------------------------------------------------------------------------------
# name: (argv builder (artifacts, input, output or None), the previous output to pre-create or None,
#        kind of command: "train" (needs text), "eval" (needs text), "filter" (line for line: empty is fine),
#        which good text the input is made of)

TEXT_COMMANDS = {
    "tokenize-train": (lambda a, i, o: ["tokenize", "train", i, *TOKENIZE, "--out", o], "tok", "train", "corpus"),
    "tokenize-encode": (lambda a, i, o: ["tokenize", "encode", i, "-t", a["tok"], "-q", "--output", o], "ids",
                        "filter", "corpus"),
    "tokenize-decode": (lambda a, i, o: ["tokenize", "decode", i, "-t", a["tok"], "-q", "--output", o], "corpus",
                        "filter", "ids"),
    "tokenize-inspect": (lambda a, i, o: ["tokenize", "inspect", a["tok"], "--corpus", i, "--json"], None, "eval",
                         "corpus"),
    "ngram-train": (lambda a, i, o: ["ngram", "train", i, *NGRAM, "--out", o], "ngram", "train", "corpus"),
    "ngram-eval": (lambda a, i, o: ["ngram", "eval", a["ngram"], i, "--json"], None, "eval", "corpus"),
    "ngram-score": (lambda a, i, o: ["ngram", "score", a["ngram"], i], None, "filter", "corpus"),
    # --val: a small validation file, so that the final validation does not dominate (item 6 is elsewhere)
    "rnn-train": (lambda a, i, o: ["rnn", "train", i, *RNN, "--val", a["val"], "--out", o], "rnn", "train",
                  "corpus"),
    "rnn-eval": (lambda a, i, o: ["rnn", "eval", a["rnn"], i, "--batch-size", "512", "--device", "cpu", "--json"],
                 None, "eval", "corpus"),
    "gpt-train": (lambda a, i, o: ["gpt", "train", i, *GPT, "--val", a["val"], "--out", o], "gpt", "train",
                  "corpus"),
    "gpt-eval": (lambda a, i, o: ["gpt", "eval", a["gpt"], i, "--batch-size", "512", "--device", "cpu", "--json"],
                 None, "eval", "corpus"),
    "word2vec-train": (lambda a, i, o: ["word2vec", "train", i, *WORD2VEC, "--out", o], "vec", "train", "corpus"),
    "glove-train": (lambda a, i, o: ["glove", "train", i, *GLOVE, "--out", o], "glove", "train", "corpus"),
    "vectors-ppmi-svd": (lambda a, i, o: ["vectors", "ppmi-svd", i, *PPMI, "--out", o], "ppmi", "train",
                         "corpus"),
    "bert-pretrain": (lambda a, i, o: ["bert", "pretrain", i, *BERT, "-t", a["wp"], "--val", a["val"], "--out", o],
                      "bert", "train", "corpus"),
    "bert-eval": (lambda a, i, o: ["bert", "eval", a["bert"], i, "--device", "cpu", "--json"], None, "eval",
                  "corpus"),
    "predict": (lambda a, i, o: ["predict", a["ft"], i, "--device", "cpu"], None, "filter", "corpus"),
    "elmo-train": (lambda a, i, o: ["elmo", "train", i, *ELMO, "--val", a["val"], "--out", o], "elmo", "train",
                   "corpus"),
    "elmo-eval": (lambda a, i, o: ["elmo", "eval", a["elmo"], i, "--device", "cpu", "--json"], None, "eval",
                  "corpus"),
}

TEXT_KINDS = ["missing", "directory", "empty", "blank", "binary", "invalid-utf8", "crlf", "gz-truncated",
              "gz-corrupt", "long-line", "stdin-empty"]


def _good_text(a, which: str) -> str:
    return a[which].read_text() if which == "ids" else CORPUS


def _previous_output(a, key: str, where: Path) -> Path:
    """A copy of a real output of the command (what ``--force`` would legitimately replace)."""
    source = a[key]
    target = where / ("previous-" + source.name)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    past = time.time() - 3600  # an old mtime, so that a rewrite with the same bytes still shows
    for path in [target, *target.rglob("*")]:
        os.utime(path, (past, past))
    return target


def _expected_code(role: str, kind: str) -> int:
    if kind == "crlf":
        return 0
    if role == "filter" and kind in ("empty", "blank", "stdin-empty"):
        return 0
    return 1


@pytest.mark.parametrize("kind", TEXT_KINDS)
@pytest.mark.parametrize("command", list(TEXT_COMMANDS))
def test_text_input(command, kind, art, tmp_path, monkeypatch):
    build, previous, role, which = TEXT_COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    good = _good_text(art, which)
    stdin = None
    if kind == "stdin-empty":
        source, stdin = "-", b""
    else:
        source = make_input(tmp_path, kind, good)
    out = None
    if previous is not None:
        out = _previous_output(art, previous, tmp_path)
    expected = _expected_code(role, kind)

    if kind == "long-line":
        # Split at a documented limit (exit 0) or refused naming the line (exit 1): never a crash.
        result = run_main(*build(art, source, _fresh(out)), input=stdin)
        assert result.returncode in (0, 1), result.stderr[-2000:]
        if result.returncode == 1:
            message = error_line(result)
            assert source.name in message and re.search(r"\b(line )?\d+\b", message), message
        else:
            assert_ok(result)
        return

    if expected == 0:
        result = run_main(*build(art, source, _fresh(out)), input=stdin)
        assert_ok(result)
        if role == "filter" and kind in ("empty", "stdin-empty", "blank"):
            written = Path(_fresh(out)).read_bytes() if out is not None else result.stdout.encode()
            lines_in = 0 if kind != "blank" else _input_bytes("blank", "").count(b"\n")
            assert written.count(b"\n") == lines_in, written
        return

    # A failure: one line naming the input, and nothing that existed before is touched.
    runs = [False] if out is None else [False, True]
    for force in runs:
        before = snapshot(tmp_path)
        args = build(art, source, out if out is not None else None)
        result = run_main(*args, *(["--force"] if force else []), input=stdin)
        if out is not None and not force:  # refusing to overwrite is as good as naming the input
            assert_fails(result)
            assert_unchanged(before, snapshot(tmp_path))
            continue
        message = assert_fails(result, *([source.name] if kind != "stdin-empty" else ["stdin"]))
        if kind == "invalid-utf8":
            assert re.search(r"(:|line )3\b", message), f"the bad line (3) is not named: {message!r}"
        if kind == "stdin-empty":
            assert str(tmp_path) not in message and ".tmp" not in message, message
        assert_unchanged(before, snapshot(tmp_path))


def _fresh(previous: Path | None) -> Path | None:
    """An output path beside the previous output that does not exist yet."""
    if previous is None:
        return None
    return previous.with_name("fresh-" + previous.name.removeprefix("previous-"))


# --- damaged models, tokenizers and vectors ------------------------------------------------------
# name: (argv builder (artifacts, model, fresh output), the artifact the command reads, its kind of input)

MODEL_COMMANDS = {
    "tokenize-encode": (lambda a, m, o: ["tokenize", "encode", a["corpus"], "-t", m, "-q"], "tok"),
    "tokenize-decode": (lambda a, m, o: ["tokenize", "decode", a["ids"], "-t", m, "-q"], "tok"),
    "tokenize-inspect": (lambda a, m, o: ["tokenize", "inspect", m, "--json"], "tok"),
    "ngram-eval": (lambda a, m, o: ["ngram", "eval", m, a["corpus"], "--json"], "ngram"),
    "ngram-score": (lambda a, m, o: ["ngram", "score", m, a["val"]], "ngram"),
    "ngram-generate": (lambda a, m, o: ["ngram", "generate", m, "--num", "2"], "ngram"),
    "ngram-export": (lambda a, m, o: ["ngram", "export", m, o / "lm.arpa"], "ngram"),
    "ngram-import": (lambda a, m, o: ["ngram", "import", m, "--out", o / "lm"], "arpa"),
    "rnn-eval": (lambda a, m, o: ["rnn", "eval", m, a["val"], "--device", "cpu"], "rnn"),
    "rnn-sample": (lambda a, m, o: ["rnn", "sample", m, "--length", "5", "--device", "cpu"], "rnn"),
    "rnn-train-resume": (lambda a, m, o: ["rnn", "train", a["val"], *RNN, "--resume", "--out", m], "rnn"),
    "gpt-eval": (lambda a, m, o: ["gpt", "eval", m, a["val"], "--device", "cpu"], "gpt"),
    "gpt-export": (lambda a, m, o: ["gpt", "export", m, o / "hf"], "gpt"),
    "gpt-import": (lambda a, m, o: ["gpt", "import", m, "--out", o / "dl"], "hf"),
    "generate": (lambda a, m, o: ["generate", m, "--prompt", "the cat", "--max-new-tokens", "3", "--device", "cpu"],
                 "gpt"),
    "vectors-eval": (lambda a, m, o: ["vectors", "eval", m, "--similarity", a["sim"]], "vec"),
    "vectors-neighbors": (lambda a, m, o: ["vectors", "neighbors", m, "cat"], "vec"),
    "vectors-analogy": (lambda a, m, o: ["vectors", "analogy", m, "cat", "dog", "cow"], "vec"),
    "vectors-convert": (lambda a, m, o: ["vectors", "convert", m, "--to", "word2vec-binary", "--out", o / "v.bin"],
                        "vec"),
    "vectors-plot": (lambda a, m, o: ["vectors", "plot", m, "cat", "dog", "cow", "--out", o / "p.png"], "vec"),
    "bert-eval": (lambda a, m, o: ["bert", "eval", m, a["val"], "--device", "cpu"], "bert"),
    "bert-embed": (lambda a, m, o: ["bert", "embed", m, a["val"], "--device", "cpu", "--out", o / "v.npy"], "bert"),
    "bert-export": (lambda a, m, o: ["bert", "export", m, o / "hf"], "bert"),
    "finetune": (lambda a, m, o: ["finetune", m, a["lab"], *FINETUNE, "--out", o / "ft"], "bert"),
    "predict": (lambda a, m, o: ["predict", m, a["val"], "--device", "cpu"], "ft"),
    "evaluate": (lambda a, m, o: ["evaluate", m, a["lab"], "--device", "cpu"], "ft"),
    "distill": (lambda a, m, o: ["distill", m, a["lab"], *DISTILL, "--cache-dir", o / "cache", "--out", o / "st"],
                "ft"),
}
# The same artifact of another family, for "wrong-kind".
OTHER_KIND = {"tok": "arpa", "ngram": "rnn", "arpa": "tok", "rnn": "ngram", "gpt": "rnn", "hf": "rnn",
              "vec": "rnn", "bert": "ngram", "ft": "bert", "elmo": "rnn"}
MODEL_KINDS = ["missing", "empty", "binary", "truncated", "text", "wrong-kind"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_model(a, key: str, kind: str, root: Path) -> Path:
    """A damaged copy of artifact ``key``: missing, empty, binary, truncated, plain text or another kind."""
    source = a[key]
    target = root / ("damaged-" + source.name)
    if kind == "missing":
        return target
    if kind == "text":
        target = root / "damaged-text.txt"
        target.write_text(CORPUS)
        return target
    if kind == "wrong-kind":
        other = a[OTHER_KIND[key]]
        target = root / ("other-" + other.name)
        (shutil.copytree if other.is_dir() else shutil.copy2)(other, target)
        return target
    if source.is_dir():
        if kind == "empty":
            target.mkdir()
            return target
        shutil.copytree(source, target)
        if kind == "binary":
            (target / "config.json").write_bytes(_input_bytes("binary", ""))
        else:  # truncated: the weights (those of the checkpoint too) cut in half
            for weights in target.rglob("*.safetensors"):
                _truncate(weights)
        return target
    if kind == "empty":
        target.write_bytes(b"")
    elif kind == "binary":
        target.write_bytes(_input_bytes("binary", ""))
    else:
        shutil.copy2(source, target)
        _truncate(target)
    return target


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_damaged_model(command, kind, art, tmp_path, monkeypatch):
    build, key = MODEL_COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    if kind == "wrong-kind" and command == "generate":  # generate takes gpt and rnn models alike
        art = {**art, "rnn": art["ngram"]}
    model = make_model(art, key, kind, tmp_path)
    out = tmp_path / "outputs"
    out.mkdir()
    before = snapshot(tmp_path)
    result = run_main(*build(art, model, out))
    assert_fails(result, model.name)
    assert_unchanged(before, snapshot(tmp_path))


# --- outputs that must be refused, with or without --force -------------------------------------
# name: (argv builder (artifacts, input, output), the artifact copied in as the input)

OUTPUT_COMMANDS = {
    "tokenize-train": (lambda a, i, o: ["tokenize", "train", i, *TOKENIZE, "--out", o], "corpus"),
    "tokenize-encode": (lambda a, i, o: ["tokenize", "encode", i, "-t", a["tok"], "-q", "--output", o], "corpus"),
    "tokenize-decode": (lambda a, i, o: ["tokenize", "decode", i, "-t", a["tok"], "-q", "--output", o], "ids"),
    "ngram-train": (lambda a, i, o: ["ngram", "train", i, *NGRAM, "--out", o], "corpus"),
    "ngram-export": (lambda a, i, o: ["ngram", "export", i, o], "ngram"),
    "ngram-import": (lambda a, i, o: ["ngram", "import", i, "--out", o], "arpa"),
    "rnn-train": (lambda a, i, o: ["rnn", "train", i, *RNN, "--val", a["val"], "--out", o], "corpus"),
    "gpt-train": (lambda a, i, o: ["gpt", "train", i, *GPT, "--val", a["val"], "--out", o], "corpus"),
    "gpt-export": (lambda a, i, o: ["gpt", "export", i, o], "gpt"),
    "word2vec-train": (lambda a, i, o: ["word2vec", "train", i, *WORD2VEC, "--out", o], "corpus"),
    "glove-train": (lambda a, i, o: ["glove", "train", i, *GLOVE, "--out", o], "corpus"),
    "vectors-ppmi-svd": (lambda a, i, o: ["vectors", "ppmi-svd", i, *PPMI, "--out", o], "corpus"),
    "vectors-convert": (lambda a, i, o: ["vectors", "convert", i, "--to", "dlnlp", "--out", o], "vec"),
    "vectors-plot": (lambda a, i, o: ["vectors", "plot", i, "cat", "dog", "--out", o], "vec"),
    "bert-pretrain": (lambda a, i, o: ["bert", "pretrain", i, *BERT, "-t", a["wp"], "--out", o], "corpus"),
    "bert-export": (lambda a, i, o: ["bert", "export", i, o], "bert"),
    "finetune": (lambda a, i, o: ["finetune", a["bert"], i, *FINETUNE, "--out", o], "lab"),
    "distill": (lambda a, i, o: ["distill", a["ft"], i, *DISTILL, "--out", o], "lab"),
    "elmo-train": (lambda a, i, o: ["elmo", "train", i, *ELMO, "--val", a["val"], "--out", o], "corpus"),
    "elmo-embed": (lambda a, i, o: ["elmo", "embed", a["elmo"], i, "-o", o, "--device", "cpu"], "corpus"),
}
OUTPUT_KINDS = ["out-dot", "out-parent", "out-input", "out-foreign-dir"]


@pytest.mark.parametrize("kind", OUTPUT_KINDS)
@pytest.mark.parametrize("command", list(OUTPUT_COMMANDS))
def test_refused_output(command, kind, art, tmp_path, monkeypatch):
    """Item 1: the current directory, an ancestor of it, a user's directory or an input is never an output."""
    build, key = OUTPUT_COMMANDS[command]
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "notes.txt").write_text("the user's notes\n")
    (work / "notes.txt").write_text("more notes\n")
    source = art[key]
    given = work / source.name
    (shutil.copytree if source.is_dir() else shutil.copy2)(source, given)
    cwd = work
    if kind == "out-dot":
        out = "."
    elif kind == "out-parent":
        cwd = work / "sub"
        cwd.mkdir()
        out = ".."
    elif kind == "out-input":
        out = given
    else:
        out = work / "mine"
        out.mkdir()
        (out / "thesis.tex").write_text("years of work\n")
    monkeypatch.chdir(cwd)
    for force in (False, True):
        before = snapshot(tmp_path)
        result = run_main(*build(art, given, out), *(["--force"] if force else []))
        assert_refused(result)
        assert_unchanged(before, snapshot(tmp_path))


# --- prompts on stdin to generate ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["empty", "blank", "binary", "invalid-utf8", "crlf", "long-line"])
def test_generate_prompts_on_stdin(kind, art):
    stdin = _input_bytes(kind, "".join(CORPUS.splitlines(keepends=True)[:4]))
    result = run_main("generate", art["gpt"], "--max-new-tokens", "2", "--strategy", "greedy", "--device", "cpu",
                      input=stdin)
    if kind == "crlf":
        assert_ok(result)
        assert "\r" not in result.stdout
    elif kind in ("blank", "long-line"):  # prompts that are blank or long: generated from, or one clear line
        assert result.returncode in (0, 1), result.stderr[-2000:]
        (assert_ok if result.returncode == 0 else error_line)(result)
    else:
        message = assert_fails(result, "stdin")
        if kind == "invalid-utf8":  # item 12: the encoding error other commands give, naming the line
            assert "UTF-8" in message and re.search(r"(:|line )3\b", message), message


# --- absurd sizes: a real process under an address-space limit ---------------------------------

MEMORY_LIMIT = 4 << 30
ABSURD_TIMEOUT_S = 30  # failing fast takes seconds; a regression must not hold CI for long


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args, cwd: Path, timeout: float = ABSURD_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m dlnlp ARGS`` under a 4 GiB address-space limit: a size the machine cannot hold fails
    the test (a MemoryError line, a signal or the timeout) instead of swapping the machine."""
    env = {k: v for k, v in os.environ.items() if k != "DLNLP_DEBUG"}
    try:
        return subprocess.run([sys.executable, "-m", "dlnlp", *map(str, args)], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout, preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dlnlp {' '.join(map(str, args))} ran past {timeout} s instead of failing fast")


# name: (argv builder (artifacts, fresh output), the option the message must name)
ABSURD = {
    "tokenize-train-vocab-size": (lambda a, o: ["tokenize", "train", a["corpus"], "-q", "--vocab-size",
                                                str(10**12), "--out", o / "tok.json"], "--vocab-size"),
    "ngram-train-order": (lambda a, o: ["ngram", "train", a["corpus"], "-q", "--order", "100000000",
                                        "--out", o / "lm"], "--order"),
    "rnn-train-hidden": (lambda a, o: ["rnn", "train", a["corpus"], *RNN, "--hidden", "10000000",
                                       "--out", o / "rnn"], "--hidden"),
    "rnn-train-batch-size": (lambda a, o: ["rnn", "train", a["corpus"], *RNN, "--batch-size", "1000000",
                                           "--out", o / "rnn"], "--batch-size"),
    "gpt-train-block-size": (lambda a, o: ["gpt", "train", a["corpus"], *GPT, "--block-size", "100000000",
                                           "--out", o / "gpt"], "--block-size"),
    "gpt-train-dim": (lambda a, o: ["gpt", "train", a["corpus"], *GPT, "--dim", "10000000", "--out", o / "gpt"],
                      "--dim"),
    "generate-num-beams": (lambda a, o: ["generate", a["gpt"], "--prompt", "the cat", "--strategy", "beam",
                                         "--num-beams", "100000", "--max-new-tokens", "3", "--device", "cpu"],
                           "--num-beams"),
    "word2vec-train-negative": (lambda a, o: ["word2vec", "train", a["corpus"], *WORD2VEC, "--negative", "1000000",
                                              "--out", o / "v.txt"], "--negative"),
    "word2vec-train-dim": (lambda a, o: ["word2vec", "train", a["corpus"], *WORD2VEC, "--dim", "100000000",
                                         "--out", o / "v.txt"], "--dim"),
    "word2vec-train-lr": (lambda a, o: ["word2vec", "train", a["corpus"], *WORD2VEC, "--lr", "1000000",
                                        "--out", o / "v.txt"], "--lr"),
    "glove-train-dim": (lambda a, o: ["glove", "train", a["corpus"], *GLOVE, "--dim", "100000000",
                                      "--out", o / "g.txt"], "--dim"),
    "vectors-ppmi-svd-dim": (lambda a, o: ["vectors", "ppmi-svd", a["corpus"], *PPMI, "--dim", "10000000",
                                           "--out", o / "p.txt"], "--dim"),
    "bert-pretrain-dim": (lambda a, o: ["bert", "pretrain", a["corpus"], *BERT, "-t", a["wp"], "--dim", "10000000",
                                        "--out", o / "bert"], "--dim"),
    "bert-pretrain-layers": (lambda a, o: ["bert", "pretrain", a["corpus"], *BERT, "-t", a["wp"], "--dim", "8192",
                                           "--layers", "48", "--out", o / "bert"], "--layers"),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_size(case, art, tmp_path):
    """Items 2, 5 and 8: a size the data or the machine cannot hold fails fast, names the option, leaves nothing."""
    build, option = ABSURD[case]
    before = snapshot(tmp_path)
    result = run_limited(*build(art, tmp_path), cwd=tmp_path)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]}"
    assert_fails(result, option)
    assert_unchanged(before, snapshot(tmp_path))


# --- an over-long line: memory stays bounded (item 7) --------------------------------------------

LONG_MEMORY_LINE = 8 << 20
LONG_MEMORY_LIMIT_MB = 600  # 50 MB of normal lines take 171 MB; one 8 MB line took over 1 GB


@pytest.mark.parametrize("command", ["tokenize-encode", "tokenize-train"])
def test_over_long_line_memory(command, art, tmp_path):
    line = ("the cat sat on the mat " * (LONG_MEMORY_LINE // 23 + 1))[:LONG_MEMORY_LINE] + "\n"
    path = tmp_path / "long.txt"
    path.write_text(line)
    if command == "tokenize-encode":
        args = ["tokenize", "encode", path, "-t", art["tok"], "-q", "--output", tmp_path / "long.ids"]
    else:
        args = ["tokenize", "train", path, *TOKENIZE, "--out", tmp_path / "tok.json"]
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child of a
    # large pytest process would report the parent's peak.
    probe = ("import re, sys\n"
             "from dlnlp.cli.main import main\n"
             "try:\n    main(sys.argv[2:])\n"
             "finally:\n    peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
             "    open(sys.argv[1], 'w').write(peak)\n")
    peak_file = tmp_path / "peak"
    env = {k: v for k, v in os.environ.items() if k != "DLNLP_DEBUG"}
    result = subprocess.run([sys.executable, "-c", probe, peak_file, *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    if result.returncode == 1:
        assert re.search(r"(:|line )1\b", error_line(result)), result.stderr
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < LONG_MEMORY_LIMIT_MB, f"peak {peak_mb:.0f} MB for one {LONG_MEMORY_LINE >> 20} MB line"


# --- two --force runs on one output at once (item 9) --------------------------------------------

CONCURRENT = {
    "ngram-train": (lambda a, o: ["ngram", "train", a["corpus"], *NGRAM, "--out", o], "ngram"),
    "tokenize-train": (lambda a, o: ["tokenize", "train", a["corpus"], *TOKENIZE, "--out", o], "tok"),
    "rnn-train": (lambda a, o: ["rnn", "train", a["corpus"], *RNN, "--val", a["val"], "--out", o], "rnn"),
}


@pytest.mark.parametrize("command", list(CONCURRENT))
def test_concurrent_force(command, art, tmp_path):
    """Both runs end cleanly (one may say another run holds the output); the output is whole; nothing is left over."""
    build, key = CONCURRENT[command]
    out = _previous_output(art, key, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DLNLP_DEBUG"}
    argv = [sys.executable, "-m", "dlnlp", *map(str, build(art, out)), "--force"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
            for _ in range(2)]
    results = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(argv, run.returncode, stdout, stderr))
    assert any(r.returncode == 0 for r in results), [r.stderr for r in results]
    for result in results:
        if result.returncode != 0:
            assert_fails(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name], "left behind beside the output"
    if out.is_dir():  # a whole model directory: its config and weights
        assert (out / "config.json").is_file() and (out / "model.safetensors").is_file(), sorted(out.iterdir())
    else:
        json.loads(out.read_text())
