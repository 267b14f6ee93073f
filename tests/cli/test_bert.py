"""``dlnlp bert`` fill-mask, embed, similar, import and export on a tiny randomly initialized BERT."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from dlnlp.io.rows import read_rows
from tests.conftest import run_main
from tests.models.test_bert import make_tiny_bert_dir

LINES = ["the film was [MASK] .", "", "a [MASK] story of paris and a [MASK] actor", "not good", "boring , bad film ."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert_dir(tmp_path_factory.mktemp("bert") / "tiny")


@pytest.fixture(scope="module")
def encoder_only(tmp_path_factory):
    return make_tiny_bert_dir(tmp_path_factory.mktemp("bert") / "encoder", mlm_head=False, nsp_head=False)


def test_fill_mask_gives_k_fills_per_mask_in_order(tiny):
    lines = [LINES[0], LINES[2]]
    result = run_main("bert", "fill-mask", tiny, "--top-k", "4", "--json", "--device", "cpu", input="\n".join(lines))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == lines
    assert [len(r["masks"]) for r in records] == [1, 2]
    for record in records:
        for fills in record["masks"]:
            scores = [f["score"] for f in fills]
            assert len(fills) == 4 and scores == sorted(scores, reverse=True)
            assert 0 < sum(scores) <= 1 + 1e-6
            assert "[MASK]" not in fills[0]["sequence"] or len(record["masks"]) > 1
    text = run_main("bert", "fill-mask", tiny, "--top-k", "4", "--device", "cpu", input="\n".join(lines))
    first = text.stdout.splitlines()[0].split("\t")
    assert [c.split(" ")[0] for c in first] == [f["token"] for f in records[0]["masks"][0]]
    assert text.stdout.splitlines()[1].count(" | ") == 1


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--top-k", "0"], "the [MASK] .", "--top-k must be between 1 and"),
    ([], "the film .\n", "line 1: no [MASK] token to fill"),
    ([], "[MASK] " + "film " * 80, "the model reads at most 64"),
])
def test_fill_mask_errors_are_one_line(tiny, args, stdin, message):
    result = run_main("bert", "fill-mask", tiny, *args, "--device", "cpu", input=stdin)
    assert result.returncode == 1 and message in result.stderr and result.stderr.count("\n") == 1


def test_fill_mask_without_an_mlm_head_says_so(encoder_only):
    result = run_main("bert", "fill-mask", encoder_only, input="the [MASK] .")
    assert result.returncode == 1 and "no masked-LM head" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "text"])
def test_embed_writes_one_row_per_line_in_every_format(tiny, tmp_path, fmt):
    inputs = tmp_path / "in.txt"
    lines = LINES * 7  # 35 lines, blank ones included
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / f"v.{fmt}"
    result = run_main("bert", "embed", tiny, inputs, "--out", out, "--format", fmt, "--batch-size", "2",
                      "--device", "cpu", "--quiet", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == len(lines)
    rows = read_rows(out, fmt)
    assert rows.shape == (len(lines), 32) and rows.dtype == np.float32
    # the same vectors as a single batch: sorting by length and padding change nothing
    single = tmp_path / "one.npy"
    assert run_main("bert", "embed", tiny, inputs, "--out", single, "--batch-size", "64", "--device", "cpu").returncode == 0
    np.testing.assert_allclose(rows, np.load(single), atol=1e-5)
    np.testing.assert_array_equal(rows[0], rows[len(LINES)])  # the same line gives the same vector


def test_embed_options(tiny, tmp_path):
    base = ["bert", "embed", tiny, "--device", "cpu"]
    data = "the film\nbad story\n"
    norm = run_main(*base, "--normalize", "--pool", "cls", "--layer", "0", "--out", "-", "--format", "text", input=data)
    assert norm.returncode == 0, norm.stderr
    vectors = np.loadtxt(norm.stdout.splitlines(), ndmin=2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    top = run_main(*base, "--out", "-", input=data).stdout
    assert top != run_main(*base, "--layer", "1", "--out", "-", input=data).stdout  # layer 1 of 2 is not the top
    assert top == run_main(*base, "--layer", "-1", "--out", "-", input=data).stdout
    for args, message, code in [(["--layer", "3"], "--layer must be between -3 and 2", 1),
                                (["--pool", "max"], "--pool must be one of mean, cls", 2),  # a choice: usage
                                (["--format", "npy", "--out", "-"], "--format npy needs a file", 1)]:
        result = run_main(*base, *(args if "--out" in args else [*args, "--out", tmp_path / "x.npy"]), input=data)
        assert result.returncode == code and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "x.npy").exists()
    (tmp_path / "exists.npy").write_bytes(b"keep")
    result = run_main(*base, "--out", tmp_path / "exists.npy", input=data)
    assert result.returncode == 1 and "--force" in result.stderr
    assert (tmp_path / "exists.npy").read_bytes() == b"keep"


def test_embed_streams_its_input(tiny):
    from dlnlp.recipes.bert_inference import CHUNK_BATCHES, embed_lines, load_bert_text

    bert = load_bert_text(tiny, "cpu")
    read = itertools.count()

    def endless():
        while True:
            next(read)
            yield "the film was good ."

    stream = embed_lines(bert, endless(), batch_size=4)
    first, second = next(stream), next(stream)
    assert first.shape == second.shape == (4 * CHUNK_BATCHES, 32)
    assert next(read) <= 2 * 4 * CHUNK_BATCHES + 1  # only what was embedded was read


def test_similar_ranks_lines_by_cosine(tiny, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(LINES), encoding="utf-8")
    result = run_main("bert", "similar", tiny, inputs, "--query", "not good", "--top", "3", "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)["results"]
    assert len(ranked) == 3 and ranked[0]["line"] == 4 and ranked[0]["text"] == "not good"
    assert ranked[0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert [r["cosine"] for r in ranked] == sorted((r["cosine"] for r in ranked), reverse=True)
    text = run_main("bert", "similar", tiny, inputs, "-q", "not good", "--top", "2", "--device", "cpu").stdout
    assert text.splitlines()[0].split("\t")[1:] == ["4", "not good"] and len(text.splitlines()) == 2


def test_import_and_export_errors_are_one_line(tiny, tmp_path):
    missing = run_main("bert", "import", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert missing.returncode == 1 and "no such directory" in missing.stderr and missing.stderr.count("\n") == 1
    exported = run_main("bert", "export", tiny, tmp_path / "hf")
    assert exported.returncode == 0, exported.stderr
    again = run_main("bert", "export", tiny, tmp_path / "hf")
    assert again.returncode == 1 and "--force" in again.stderr and again.stderr.count("\n") == 1
    back = run_main("bert", "import", tmp_path / "hf", "--out", tmp_path / "back")
    assert back.returncode == 0, back.stderr
    data = "the film was [MASK] .\n"
    assert run_main("bert", "fill-mask", tmp_path / "back", "--json", input=data).stdout == \
        run_main("bert", "fill-mask", tiny, "--json", input=data).stdout
    wrong = run_main("bert", "fill-mask", tmp_path / "hf", input=data)
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1
