"""`dlnlp elmo train / eval / embed / neighbors` through the CLI: counts as `ngram eval`, resume, streamed output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_main

TINY = [
    "--dim",
    "8",
    "--hidden",
    "16",
    "--layers",
    "2",
    "--filters",
    "1:4,2:4,3:8",
    "--char-dim",
    "4",
    "--highway",
    "1",
    "--max-chars",
    "16",
    "--seq-len",
    "8",
    "--batch-size",
    "4",
    "--device",
    "cpu",
    "--quiet",
    "--min-count",
    "2",
]
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "bank", "river", "money", "naïve", "日本"]


def _corpus(lines: int = 80, shift: int = 0) -> str:
    out = []
    for i in range(lines):
        n = 3 + (i + shift) % 6
        out.append(" ".join(WORDS[(i * 5 + j * (i % 3 + 1) + shift) % len(WORDS)] for j in range(n)))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("elmo")
    corpus, val = root / "train.txt", root / "val.txt"
    corpus.write_text(_corpus() + "rare1 rare2\n", encoding="utf-8")
    val.write_text(_corpus(12, shift=1) + "unseen words here\n\n", encoding="utf-8")
    out = root / "model"
    code, stdout, err = run_main(
        "elmo",
        "train",
        corpus,
        "--val",
        val,
        "--out",
        out,
        *TINY,
        "--max-steps",
        "12",
        "--eval-interval",
        "6",
        "--json",
    )
    assert code == 0, err
    return root, out, json.loads(stdout)


def test_train_writes_a_model_directory_with_the_closed_vocabulary(trained):
    root, out, summary = trained
    assert summary["steps"] == 12 and summary["val_loss"] is not None
    for name in ("config.json", "model.safetensors", "vocab.txt", "metrics.jsonl", "checkpoint/trainer.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "elmo" and config["model"]["dim"] == 8
    words = [line.split("\t")[0] for line in (out / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    assert words[:2] == ["<unk>", "</s>"]
    assert "rare1" not in words and "naïve" in words  # --min-count 2
    assert config["model"]["vocab_size"] == len(words)


def test_eval_scores_the_same_tokens_as_ngram_eval(trained, tmp_path):
    root, out, _ = trained
    val = root / "val.txt"
    code, stdout, err = run_main("elmo", "eval", out, val, "--json", "--device", "cpu")
    assert code == 0, err
    ours = json.loads(stdout)
    code, _, err = run_main(
        "ngram",
        "train",
        root / "train.txt",
        "--order",
        "2",
        "--min-count",
        "2",
        "--out",
        tmp_path / "ng",
        "--quiet",
    )
    assert code == 0, err
    ngram = json.loads(run_main("ngram", "eval", tmp_path / "ng", val, "--json").stdout)
    assert (ours["tokens"], ours["oov"], ours["sentences"]) == (
        ngram["tokens"],
        ngram["oov"],
        ngram["sentences"],
    )
    assert ours["forward_perplexity"] > 1 and ours["backward_perplexity"] > 1
    assert (
        min(ours["forward_perplexity"], ours["backward_perplexity"])
        <= ours["perplexity"]
        <= max(ours["forward_perplexity"], ours["backward_perplexity"])
    )
    # one piece read whole gives the same counts
    single = json.loads(
        run_main(
            "elmo", "eval", out, val, "--json", "--device", "cpu", "--batch-size", "1", "--seq-len", "5"
        ).stdout
    )
    assert single["tokens"] == ours["tokens"]


def _losses(directory):
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r and "val_loss" not in r]


def test_resume_continues_the_curve(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(_corpus(), encoding="utf-8")
    common = [
        *TINY,
        "--dropout",
        "0.2",
        "--log-interval",
        "1",
        "--eval-interval",
        "0",
        "--softmax",
        "sampled",
        "--samples",
        "5",
    ]
    assert (
        run_main("elmo", "train", corpus, "--out", tmp_path / "full", *common, "--max-steps", "6").returncode
        == 0
    )
    assert (
        run_main("elmo", "train", corpus, "--out", tmp_path / "part", *common, "--max-steps", "3").returncode
        == 0
    )
    code, _, err = run_main(
        "elmo",
        "train",
        "--out",
        tmp_path / "part",
        "--resume",
        "--max-steps",
        "6",
        "--quiet",
        "--device",
        "cpu",
    )
    assert code == 0, err
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [s for s, _ in part] == list(range(1, 7))
    assert part == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("suffix", [".safetensors", ".npy", ".jsonl"])
def test_embed_is_the_same_batched_and_line_by_line(trained, tmp_path, suffix):
    from dlnlp.io.token_vectors import read_token_vectors

    root, out, _ = trained
    text = tmp_path / "in.txt"
    text.write_text("the cat sat on the bank\n\nmoney in the bank\nnaïve 日本 dog\n", encoding="utf-8")
    results = []
    for batch in ("1", "3"):
        target = tmp_path / f"v{batch}{suffix}"
        code, stdout, err = run_main(
            "elmo",
            "embed",
            out,
            text,
            "--output",
            target,
            "--batch-size",
            batch,
            "--device",
            "cpu",
            "--json",
            "--quiet",
        )
        assert code == 0, err
        assert json.loads(stdout)["tokens"] == 13
        results.append(read_token_vectors(target))
    (v1, o1), (v3, o3) = results
    assert o1.tolist() == o3.tolist() == [0, 6, 6, 10, 13]
    assert v1.shape == (13, 3, 16)
    np.testing.assert_allclose(v1, v3, atol=1e-5)


def test_embed_layers_and_mix(trained, tmp_path):
    from dlnlp.io.token_vectors import read_token_vectors

    root, out, _ = trained
    text = tmp_path / "in.txt"
    text.write_text("the cat sat\n", encoding="utf-8")
    got = {}
    for layers in ("all", "top", "mean", "mix"):
        extra = ["--mix-weights", "1,0,3"] if layers == "mix" else []
        target = tmp_path / f"{layers}.npy"
        assert (
            run_main(
                "elmo",
                "embed",
                out,
                text,
                "-o",
                target,
                "--layers",
                layers,
                *extra,
                "--device",
                "cpu",
                "--quiet",
            ).returncode
            == 0
        )
        got[layers] = read_token_vectors(target)[0]
    every = got["all"]
    np.testing.assert_allclose(got["top"], every[:, -1], atol=1e-6)
    np.testing.assert_allclose(got["mean"], every.mean(1), atol=1e-6)
    np.testing.assert_allclose(got["mix"], 0.25 * every[:, 0] + 0.75 * every[:, 2], atol=1e-6)


def test_neighbors_in_context(trained):
    root, out, _ = trained
    code, stdout, err = run_main(
        "elmo",
        "neighbors",
        out,
        root / "train.txt",
        "--sentence",
        "money in the bank",
        "--word",
        "bank",
        "--top",
        "3",
        "--same-word",
        "--json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    found = json.loads(stdout)["neighbors"]
    assert len(found) == 3 and all(n["word"] == "bank" for n in found)
    assert [n["score"] for n in found] == sorted((n["score"] for n in found), reverse=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{corpus}", "--out", "{tmp}/m", "--softmax", "tree"], "--softmax must be one of"),
        (
            ["train", "{corpus}", "--out", "{tmp}/m", "--dim", "32", "--hidden", "16"],
            "--dim (32) must be at most",
        ),
        (["train", "{corpus}", "--out", "{tmp}/m", "--filters", "3x8"], "--filters must be WIDTH:COUNT"),
        (
            ["train", "{corpus}", "--out", "{tmp}/m", "--min-count", "1000"],
            "no word is seen --min-count 1000",
        ),
        (["train", "{corpus}", "--out", "{tmp}/m", "--cutoffs", "5000"], "--cutoffs must increase"),
        (["eval", "{tmp}/nope", "{corpus}"], "no such model directory"),
        (
            ["embed", "{model}", "{corpus}", "-o", "{tmp}/v.npy", "--layers", "second"],
            "--layers must be one of",
        ),
        (
            ["embed", "{model}", "{corpus}", "-o", "{tmp}/v.npy", "--layers", "mix", "--mix-weights", "1,2"],
            "--mix-weights needs 3",
        ),
        (["embed", "{model}", "{corpus}", "-o", "-", "--format", "npy"], "--format npy needs a file"),
        (
            ["neighbors", "{model}", "{corpus}", "--sentence", "a b", "--word", "c"],
            "--word 'c' is not a word",
        ),
    ],
)
def test_bad_input_is_one_line(trained, tmp_path, args, message):
    root, out, _ = trained
    filled = [a.format(tmp=tmp_path, corpus=root / "train.txt", model=out) for a in args]
    extra = [*TINY, "--max-steps", "1"] if args[0] == "train" else []  # before the case's own options
    code, _, err = run_main("elmo", filled[0], *extra, *filled[1:])
    assert code in (1, 2), err
    lines = [line for line in err.strip().splitlines() if "warning" not in line]
    assert len(lines) == 1 and lines[0].startswith("dlnlp: error:") and message in lines[0], err
