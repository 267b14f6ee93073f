"""Binary token shards: ``tokenize encode --format bin`` writes the ids ``--format ids`` prints, and the
LM training commands read a shard directory in place as their corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from dlnlp.io.shards import ShardWriter, TokenShards, TokenStream
from dlnlp.training.data import load_lm_data
from tests.conftest import run_main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "ünïcödé", "the", "of", "and", "to", "in"]
    lines = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(300)]  # blank lines too
    path = tmp_path_factory.mktemp("shards") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(corpus: Path) -> Path:
    path = corpus.parent / "tok.json"
    code, _, err = run_main("tokenize", "train", corpus, "--vocab-size", "300", "--out", path, "--quiet")
    assert code == 0, err
    return path


def test_shards_hold_the_ids_encode_prints(corpus, tokenizer, tmp_path):
    code, printed, err = run_main("tokenize", "encode", corpus, "-t", tokenizer, "--add-eos", "--quiet")
    assert code == 0, err
    expected = [[int(i) for i in line.split()] for line in printed.splitlines()]
    out = tmp_path / "bin"
    code, summary, err = run_main(
        "tokenize",
        "encode",
        corpus,
        "-t",
        tokenizer,
        "--add-eos",
        "--format",
        "bin",
        "--output",
        out,
        "--shard-tokens",
        "500",
        "--json",
        "--quiet",
    )
    assert code == 0, err
    shards = TokenShards(out)
    assert shards.documents() == expected
    index = shards.index
    total = sum(map(len, expected))
    assert index["tokens"] == total == json.loads(summary)["tokens"] and index["documents"] == len(expected)
    sizes = [s["tokens"] for s in index["shards"]]
    assert (
        len(sizes) > 1 and max(sizes) <= 500 and sum(s["documents"] for s in index["shards"]) == len(expected)
    )
    assert index["dtype"] == "uint16" and index["add_eos"] and index["eos_id"] == expected[0][-1]
    assert (out / index["tokenizer"]["file"]).read_bytes() == tokenizer.read_bytes()
    # nanoGPT's layout: each shard reads back with a plain memory map
    first = np.memmap(out / index["shards"][0]["file"], dtype=np.uint16, mode="r")
    assert first.tolist() == [i for doc in expected for i in doc][: len(first)]
    # never overwritten without --force
    code, _, err = run_main("tokenize", "encode", corpus, "-t", tokenizer, "--format", "bin", "--output", out)
    assert code == 1 and "exists" in err


def test_token_stream_reads_windows_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 70000, size=int(n)).tolist() for n in rng.integers(0, 9, size=40)]
    writer = ShardWriter(tmp_path, 70000, shard_tokens=13)
    writer.write(docs[:25])
    writer.write(docs[25:])
    writer.finish()
    shards = TokenShards(tmp_path)
    assert shards.dtype == np.uint32 and len(shards.shards) > 3 and shards.documents() == docs
    flat = np.array([i for d in docs for i in d])
    stream = shards.stream()
    starts = np.array([0, 5, 11, 12, 30, len(flat) - 9])
    assert np.array_equal(stream.windows(starts, 9), np.stack([flat[s : s + 9] for s in starts]))
    view = stream.view(7, 60)
    assert len(view) == 53 and np.array_equal(view[3:20], flat[10:27]) and view[0] == flat[7]
    with pytest.raises(IndexError):
        view.windows(np.array([50]), 9)


def test_gpt_trains_from_a_shard_directory_on_the_stream_text_gives(corpus, tokenizer, tmp_path):
    shards = tmp_path / "bin"
    assert (
        run_main(
            "tokenize",
            "encode",
            corpus,
            "-t",
            tokenizer,
            "--add-eos",
            "--format",
            "bin",
            "--output",
            shards,
            "--shard-tokens",
            "700",
            "--quiet",
        ).returncode
        == 0
    )
    common = [
        "--layers",
        "1",
        "--heads",
        "1",
        "--dim",
        "8",
        "--block-size",
        "8",
        "--batch-size",
        "2",
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--keep-data",  # the spooled streams are compared below
    ]
    code, _, err = run_main("gpt", "train", shards, "--out", tmp_path / "from-bin", *common)
    assert code == 0, err
    code, _, err = run_main("gpt", "train", corpus, "-t", tokenizer, "--out", tmp_path / "from-text", *common)
    assert code == 0, err
    from_bin, from_text = load_lm_data(tmp_path / "from-bin"), load_lm_data(tmp_path / "from-text")
    assert isinstance(from_bin.train, TokenStream) and from_bin.level == from_text.level == "tokenizer"
    assert np.array_equal(from_bin.train.read(), from_text.train.read())
    assert np.array_equal(from_bin.val.read(), from_text.val.read())
    assert not (tmp_path / "from-bin" / "data" / "tokens0.bin").exists()  # read in place, not copied
    assert (tmp_path / "from-bin" / "tokenizer.json").read_bytes() == tokenizer.read_bytes()  # reads text
    # a changed shard directory is refused on resume, naming it
    index = json.loads((shards / "index.json").read_text())
    (shards / "index.json").write_text(json.dumps({**index, "source": "elsewhere"}))
    code, _, err = run_main(
        "gpt", "train", "--resume", "--out", tmp_path / "from-bin", "--max-steps", "3", "--device", "cpu"
    )
    assert code == 1 and "changed since the run started" in err


def test_bert_pretrains_from_shards_on_the_sentences_text_gives(corpus, tmp_path):
    from dlnlp.training.bert_data import load_bert_data

    wordpiece = tmp_path / "wp.json"
    assert (
        run_main(
            "tokenize",
            "train",
            corpus,
            "--model",
            "wordpiece",
            "--vocab-size",
            "200",
            "--out",
            wordpiece,
            "--quiet",
        ).returncode
        == 0
    )
    shards = tmp_path / "bin"
    assert (
        run_main(
            "tokenize",
            "encode",
            corpus,
            "-t",
            wordpiece,
            "--format",
            "bin",
            "--output",
            shards,
            "--shard-tokens",
            "400",
            "--quiet",
        ).returncode
        == 0
    )
    common = [
        "-t",
        wordpiece,
        "--layers",
        "1",
        "--heads",
        "1",
        "--dim",
        "8",
        "--intermediate",
        "16",
        "--max-len",
        "16",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--keep-data",  # the spooled sentences are compared below
    ]
    for name, source in (("from-bin", shards), ("from-text", corpus)):
        code, _, err = run_main("bert", "pretrain", source, "--out", tmp_path / name, *common)
        assert code == 0, err
    from_bin, from_text = load_bert_data(tmp_path / "from-bin"), load_bert_data(tmp_path / "from-text")
    for a, b in ((from_bin.train, from_text.train), (from_bin.val, from_text.val)):
        assert np.array_equal(a.ends, b.ends) and np.array_equal(a.documents, b.documents)
        (starts_a, ends_a), (starts_b, ends_b) = a.sentence_bounds(), b.sentence_bounds()
        assert [a.tokens[s:e].tolist() for s, e in zip(starts_a, ends_a, strict=True)] == [
            b.tokens[s:e].tolist() for s, e in zip(starts_b, ends_b, strict=True)
        ]
    assert not (tmp_path / "from-bin" / "data" / "tokens0.bin").exists()
