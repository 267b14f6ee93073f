"""`dlnlp glove train` and `dlnlp vectors ppmi-svd` through the real CLI (files, pipes, bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlnlp.io.vectors import load_vectors
from tests.conftest import run_cli, run_main

SMALL = ["--dim", "8", "--window", "3", "--min-count", "2", "--device", "cpu", "--quiet"]




def _corpus() -> str:
    animals = ["cat", "dog", "cow", "horse"]
    foods = ["bread", "cheese", "apple", "soup"]
    lines = []
    for i in range(200):
        k = i // 2
        a, b = animals[k % 4], animals[(k + 1 + k // 4) % 4]
        f, g = foods[k % 4], foods[(k + 1 + k // 4) % 4]
        lines.append(f"the {a} and the {b} run in the field" if i % 2 else f"we eat {f} with {g} at the table")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("glove") / "corpus.txt"
    path.write_text(_corpus(), encoding="utf-8")
    return path


def test_glove_train_writes_word2vec_text_and_json(corpus, tmp_path, capsys):
    out = tmp_path / "vectors.txt"
    code, stdout, err = run_main("glove", "train", corpus, "--out", out, "--epochs", "30", "--json", *SMALL)
    assert code == 0, err
    result = json.loads(stdout)
    kv = load_vectors(out)
    assert result["vocab_size"] == len(kv) and kv.dim == 8
    assert result["epochs_completed"] == 30 and result["nnz"] > 0
    assert kv.words[0] == "the"  # most frequent first
    # Words sharing contexts end up closer than words that never share one.
    assert kv.similarity("cat", "dog") > kv.similarity("cat", "cheese")


def test_glove_formats_and_refused_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "vectors.glove"
    args = ["glove", "train", corpus, "--out", out, "--format", "glove", "--epochs", "2", *SMALL]
    assert run_main(*args)[0] == 0
    first = out.read_text().splitlines()[0].split()
    assert len(first) == 9  # word + 8 numbers, no header line
    code, _, err = run_main(*args)
    assert code == 1 and "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert run_main(*args, "--force")[0] == 0
    model_dir = tmp_path / "model"
    assert run_main("glove", "train", corpus, "--out", model_dir, "--epochs", "2", "--vectors", "word",
                 "--backend", "torch", *SMALL)[0] == 0
    config = json.loads((model_dir / "config.json").read_text())
    assert config["kind"] == "vectors" and config["model"] == "glove" and config["output"] == "word"
    assert len(load_vectors(model_dir)) == config["vocab_size"]


@pytest.mark.parametrize("args,message", [
    (["missing-file.txt"], "no such file"),
    (["{corpus}", "--x-max", "0"], "--x-max must be > 0, got 0"),
    (["{corpus}", "--x-max", "nan"], "--x-max"),
    (["{corpus}", "--alpha", "-5"], "--alpha must be in [0, 1]"),
    (["{corpus}", "--epochs", "0"], "--epochs must be between 1 and"),
    (["{corpus}", "--lr", "1e6"], "--lr must be > 0 and <= 1, got 1e+06"),
    (["{corpus}", "--lr", "inf"], "--lr"),
    (["{corpus}", "--bias-lr", "-1"], "--bias-lr"),
    (["{corpus}", "--grad-clip", "-1"], "--grad-clip must be >= 0 (0: off), got -1"),
    (["{corpus}", "--dim", "0"], "--dim"),
    (["{corpus}", "--batch-size", "0"], "--batch-size"),
    (["{corpus}", "--window", "1000000000"], "--window must be between 1 and 1000"),
    (["{corpus}", "--max-vocab", "0"], "--max-vocab"),
    (["{corpus}", "--memory", "nan"], "--memory"),
    (["{corpus}", "--workers", "100000"], "--workers"),
    (["{corpus}", "--max-time", "-1"], "--max-time"),
    (["{corpus}", "--seed", "-3"], "--seed"),
    (["{corpus}", "--optimizer", "sgd"], "--optimizer sgd"),
    (["{corpus}", "--min-count", "100000"], "min-count"),
    (["{corpus}", "--backend", "gpu"], "--backend"),
    (["{corpus}", "--format", "xml"], "--format"),
])
def test_glove_bad_input_is_one_line_error(corpus, tmp_path, capsys, args, message):
    args = [a.replace("{corpus}", str(corpus)) for a in args]
    code, _, err = run_main("glove", "train", "--out", tmp_path / "v.txt", *SMALL, *args)
    assert code == (2 if message in ("--optimizer sgd", "--backend", "--format") else 1)  # a value outside an option's choices is a usage error (issue #20)
    assert err.startswith("dlnlp: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v.txt").exists()


def test_glove_reads_stdin_pipe(tmp_path):
    out = tmp_path / "piped.bin"
    result = run_cli("glove", "train", "--out", str(out), "--epochs", "3", "--json", *SMALL, input=_corpus())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["vocab_size"] == len(load_vectors(out))
    empty = run_cli("glove", "train", "--out", str(tmp_path / "e.txt"), *SMALL, input="")
    assert empty.returncode == 1 and "empty" in empty.stderr


@pytest.mark.parametrize("text", [b"", b"\n \n"])
def test_empty_stdin_is_named_as_given_not_as_its_spooled_copy(tmp_path, text):
    for command in (["glove", "train", *SMALL], ["vectors", "ppmi-svd", "--dim", "4", "-q"]):
        code, _, err = run_main(*command, "-", "--out", tmp_path / "e.txt", input=text)
        assert (code, err) == (1, "dlnlp: error: <stdin>: the input is empty (no text)\n")


def test_ppmi_svd_cli(corpus, tmp_path, capsys):
    out = tmp_path / "ppmi.txt"
    code, stdout, err = run_main("vectors", "ppmi-svd", corpus, "--dim", "4", "--window", "3",
                              "--min-count", "2", "--out", out, "--json", "--quiet")
    assert code == 0, err
    result = json.loads(stdout)
    kv = load_vectors(out)
    assert kv.dim == 4 and len(kv) == result["vocab_size"]
    assert np.all(np.diff(result["top_singular_values"]) <= 0)
    assert kv.similarity("cat", "dog") > kv.similarity("cat", "cheese")
    code, _, err = run_main("vectors", "ppmi-svd", corpus, "--out", tmp_path / "x.txt", "--cds", "2", "-q")
    assert code == 1 and "cds" in err
    # The vectors evaluate like any other.
    sim = tmp_path / "pairs.tsv"
    sim.write_text("cat\tdog\t9\ncat\tbread\t1\ndog\tsoup\t2\n", encoding="utf-8")
    code, stdout, err = run_main("vectors", "eval", out, "--similarity", sim, "--json")
    assert code == 0, err
    assert json.loads(stdout)["similarity"][0]["pairs_used"] == 3


def test_absurd_dimensions_fail_before_allocating(corpus, tmp_path, capsys, monkeypatch):
    # Issue #19: --dim 100000000 reached the allocator (a raw MemoryError / RuntimeError, or an OOM
    # kill for sizes the kernel overcommits); ppmi-svd --dim 10000000 grew to 23.7 GB.
    code, _, err = run_main("glove", "train", corpus, "--out", tmp_path / "g.txt", *SMALL, "--dim",
                         "100000000")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--dim must be between 1 and 65536, got 100000000" in err
    import dlnlp.kernels.memory as memory

    monkeypatch.setattr(memory, "available", lambda device="cpu": (2**20, "available host memory"))
    code, _, err = run_main("glove", "train", corpus, "--out", tmp_path / "g.txt", *SMALL, "--dim", "60000")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "glove training needs about" in err and "lower --dim" in err
    monkeypatch.undo()
    code, _, err = run_main("vectors", "ppmi-svd", corpus, "--out", tmp_path / "p.txt", "--min-count", "2",
                         "--dim", "10000000", "-q")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--dim 10000000 exceeds the vocabulary size (" in err
    assert not (tmp_path / "g.txt").exists() and not (tmp_path / "p.txt").exists()


def test_glove_prints_its_cost_per_iteration_and_records_it(corpus, tmp_path):
    out = tmp_path / "run"
    args = ["glove", "train", corpus, "--out", out, "--epochs", "5", "--dim", "8", "--window", "3",
            "--min-count", "2", "--device", "cpu"]
    code, _, err = run_main(*args)
    assert code == 0, err
    lines = err.splitlines()
    iters = [i for i, line in enumerate(lines) if "iter " in line and "cost" in line]
    assert len(iters) == 5 and iters[-1] < next(i for i, line in enumerate(lines) if "trained" in line)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    costs = [r["loss"] for r in records]
    assert costs[-1] < costs[0]
    assert [f"{c:.6f}" for c in costs] == [line.rsplit("cost ", 1)[1] for line in (lines[i] for i in iters)]
    code, _, quiet_err = run_main(*args, "--quiet", "--force")
    assert code == 0 and "iter " not in quiet_err
