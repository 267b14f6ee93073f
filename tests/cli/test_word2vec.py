"""``dlnlp word2vec train`` through the real CLI: outputs, formats, pipes, gensim loading, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli, run_main

TOPICS = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
FAST = ["--dim", "12", "--window", "3", "--epochs", "5", "--sample", "0", "--min-count", "2", "--workers", "1", "--quiet"]


def _corpus(lines=400, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(" ".join(rng.choice(TOPICS[i % 2], size=8)) + "\n" for i in range(lines)) + "rareword\n"


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w2v") / "corpus.txt"
    path.write_text(_corpus(), encoding="utf-8")
    return path


@pytest.mark.parametrize("arch,loss,suffix", [("skipgram", "ns", ".bin"), ("skipgram", "hs", ".txt"),
                                              ("cbow", "ns", ".vec"), ("cbow", "both", ".bin")])
def test_train_writes_word2vec_files_gensim_can_read(tmp_path, corpus_file, arch, loss, suffix):
    gensim_models = pytest.importorskip("gensim.models")
    out = tmp_path / f"vectors{suffix}"
    result = run_cli("word2vec", "train", str(corpus_file), "--arch", arch, "--loss", loss, *FAST, "--json",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["vocab_size"] == 20 and info["corpus_tokens"] == 400 * 8 + 1  # rareword dropped
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(out), binary=suffix == ".bin")
    assert len(kv) == 20 and kv.vector_size == 12
    # words of the same topic end up closer than words of different topics
    within = np.mean([kv.similarity(f"a{i}", f"a{j}") for i in range(5) for j in range(5, 10)])
    across = np.mean([kv.similarity(f"a{i}", f"b{j}") for i in range(5) for j in range(5, 10)])
    assert within > across + 0.2


def test_train_model_directory_from_stdin_and_vectors_average(tmp_path):
    out = tmp_path / "run"
    result = run_cli("word2vec", "train", "-", *FAST, "--vectors", "average", "--out", str(out),
                     input=_corpus(seed=1))
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "word2vec" and config["vectors"] == "average" and config["arch"] == "skipgram"
    assert (out / "vocab.txt").read_text().splitlines()[0].split("\t")[1].isdigit()
    neighbors = run_cli("vectors", "neighbors", str(out), "a3", "--topn", "3", "--json")
    assert neighbors.returncode == 0, neighbors.stderr
    assert len(json.loads(neighbors.stdout)["a3"]) == 3


def test_same_seed_one_worker_same_file(tmp_path, corpus_file):
    outs = []
    for name in ("one.bin", "two.bin"):
        out = tmp_path / name
        run_cli("word2vec", "train", str(corpus_file), *FAST, "--seed", "7", "--out", str(out), check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_refuses_to_overwrite_without_force(tmp_path, corpus_file):
    out = tmp_path / "v.bin"
    out.write_text("keep me")
    result = run_cli("word2vec", "train", str(corpus_file), *FAST, "--out", str(out))
    assert result.returncode == 1 and "--force" in result.stderr
    assert out.read_text() == "keep me"
    assert run_cli("word2vec", "train", str(corpus_file), *FAST, "--out", str(out), "--force").returncode == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.txt"], "no such file"),
        (["CORPUS", "--arch", "glove"], "--arch"),
        (["CORPUS", "--loss", "hs", "--vectors", "average"], "--vectors average"),
        (["CORPUS", "--min-count", "1000"], "min-count"),
        (["CORPUS", "--window", "0"], "--window"),
        (["CORPUS", "--format", "fasttext"], "--format"),
        (["CORPUS", "--lr", "1"], "--lr must be > 0 and < 1, got 1"),
        (["CORPUS", "--lr", "1e6", "--arch", "cbow", "--workers", "1"], "--lr must be > 0 and < 1"),
        (["CORPUS", "--lr", "nan"], "--lr"),
        (["CORPUS", "--negative", "1000000"], "--negative must be between 1 and 1000, got 1000000"),
        (["CORPUS", "--window", "99999999999"], "--window"),
        (["CORPUS", "--dim", "0"], "--dim"),
        (["CORPUS", "--epochs", "0"], "--epochs"),
        (["CORPUS", "--sample", "nan"], "--sample"),
        (["CORPUS", "--min-lr", "-1"], "--min-lr"),
        (["CORPUS", "--workers", "100000"], "--workers"),
        (["CORPUS", "--batch-size", "-1"], "--batch-size"),
        (["CORPUS", "--seed", "-1"], "--seed"),
        (["CORPUS", "--max-vocab", "0"], "--max-vocab"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, corpus_file, args, message):
    args = [str(corpus_file) if a == "CORPUS" else a for a in args]
    result = run_cli("word2vec", "train", *args, "--quiet", "--out", str(tmp_path / "out.bin"))
    assert result.returncode == (2 if message in ("--arch", "--format") else 1)  # a value outside an option's choices is a usage error (issue #20)
    assert result.stderr.startswith("dlnlp: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.bin").exists()


def test_empty_stdin_is_an_error(tmp_path):
    result = run_cli("word2vec", "train", "--quiet", "--out", str(tmp_path / "v.bin"), input="\n\n")
    assert result.returncode == 1 and "empty" in result.stderr


def test_divergence_is_one_line_and_writes_nothing(tmp_path):
    """A rate that overflows the vectors stops with a message (was: exit 139, no message).

    The torch path diverges only beyond the accepted --lr range; tests/models/test_word2vec.py
    checks it raises before anything can be written."""
    from dlnlp.kernels import w2v_native
    from tests.conftest import shared_path

    if w2v_native.load_library() is None:
        pytest.skip("no C compiler for the native kernel")
    corpus = shared_path("corpora/brown/valid.txt")
    out = tmp_path / "v.bin"
    result = run_cli("word2vec", "train", str(corpus), "--epochs", "1", "--lr", "0.99", "--workers", "1",
                     "--quiet", "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("dlnlp: error: training diverged") and "try a lower --lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_absurd_dimensions_fail_before_allocating(tmp_path, corpus_file):
    # Issue #19: --dim 100000000 reached numpy ("MemoryError: Unable to allocate 538. GiB").
    result = run_cli("word2vec", "train", str(corpus_file), "--dim", "100000000", "--out", str(tmp_path / "v.bin"),
                     "--quiet")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--dim must be between 1 and 65536, got 100000000" in result.stderr
    assert not (tmp_path / "v.bin").exists()


@pytest.mark.parametrize("kernel,loss", [("native", "ns"), ("native", "hs"), ("torch", "both")])
def test_model_directory_records_the_loss_per_epoch(tmp_path, corpus_file, kernel, loss):
    if kernel == "native":
        from dlnlp.kernels import w2v_native

        if w2v_native.load_library() is None:
            pytest.skip("no C compiler for the native kernel")
    out = tmp_path / "run"
    code, _, err = run_main("word2vec", "train", corpus_file, "--kernel", kernel, "--loss", loss, "--epochs", "4",
                            "--dim", "16", "--min-count", "1", "--workers", "1", "--device", "cpu", "--quiet",
                            "--out", out)
    assert code == 0, err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and [r["step"] for r in records] == [1, 2, 3, 4]
    losses = [r["loss"] for r in records]
    assert all(0 < value < 5 for value in losses) and all(r["predictions"] > 0 for r in records)
    # Two-topic text: the predictions get better over the epochs.
    assert losses[-1] < losses[0]
    shown = run_main("runs", "show", out, "--json")
    assert json.loads(shown.stdout)["runs"][0]["train_loss"] == pytest.approx(losses[-1])
