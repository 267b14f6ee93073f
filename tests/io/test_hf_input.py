"""HF datasets as corpora: ``hf:...`` specs and ``save_to_disk`` directories, read offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlnlp.errors import InputError
from dlnlp.io.corpus import CorpusOptions, iter_lines
from tests.conftest import run_main

datasets = pytest.importorskip("datasets")

LINES = ["the first line", "", "ünïcödé second line", "a third one"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hf")
    datasets.disable_progress_bars()
    one = root / "dataset"
    datasets.Dataset.from_dict({"text": LINES, "n": list(range(len(LINES)))}).save_to_disk(str(one))
    split = root / "dataset_dict"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"body": LINES}),
            "validation": datasets.Dataset.from_dict({"body": LINES[:2]}),
        }
    ).save_to_disk(str(split))
    return one, split


def test_saved_datasets_read_as_lines(saved):
    one, split = saved
    assert list(iter_lines([str(one)])) == LINES
    assert list(iter_lines([f"hf:{one}"])) == LINES
    body = CorpusOptions(text_field="body")
    assert list(iter_lines([f"hf:{split}:validation"], body)) == LINES[:2]
    assert list(iter_lines([f"hf:{split}"], body)) == LINES  # train by default


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("{split}:test", "body", "the dataset has the splits train, validation"),
        ("{split}", None, "no field 'text' (fields: body)"),
        ("{one}:train", None, "holds one split"),
        ("not a spec", None, "expected hf:NAME[:CONFIG]:SPLIT"),
    ],
)
def test_bad_hf_inputs_are_one_line_errors(saved, spec, field, message):
    one, split = saved
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        list(iter_lines([f"hf:{spec.format(one=one, split=split)}"], CorpusOptions(text_field=field)))


def test_encode_and_train_read_an_hf_input_as_the_same_text(saved, tmp_path):
    one, _ = saved
    text = tmp_path / "text.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    tok = tmp_path / "tok.json"
    assert run_main("tokenize", "train", text, "--vocab-size", "60", "--out", tok, "--quiet").returncode == 0
    from_text = run_main("tokenize", "encode", text, "-t", tok, "--quiet")
    from_hf = run_main("tokenize", "encode", f"hf:{one}", "-t", tok, "--quiet")
    assert from_hf.returncode == 0 and from_hf.stdout == from_text.stdout
    code, _, err = run_main(
        "rnn",
        "train",
        one,
        "--out",
        tmp_path / "rnn",
        "--hidden",
        "8",
        "--batch-size",
        "2",
        "--seq-len",
        "4",
        "--max-steps",
        "1",
        "--val-fraction",
        "0",
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0, err
