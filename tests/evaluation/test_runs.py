"""Reading run directories' metrics.jsonl back and drawing them (dlnlp.evaluation.runs)."""

import json

import pytest

from dlnlp.errors import InputError
from dlnlp.evaluation.runs import MARKERS, Series, braille_chart, read_run, read_runs, summarize, to_json


def write_run(directory, records, kind="gpt", tail=""):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"kind": kind, "format_version": 1}))
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    (directory / "metrics.jsonl").write_text(text)
    return directory


def trainer_records(steps=40, every=10, start=4.0):
    records = []
    for step in range(5, steps + 1, 5):
        records.append(
            {
                "step": step,
                "epoch": step / 100,
                "loss": start - step / 20,
                "tokens_per_s": 1000.0 + step,
                "elapsed": step / 10,
            }
        )
        if step % every == 0:
            records.append(
                {
                    "step": step,
                    "val_loss": start - step / 25,
                    "val_ppl": 1.0,
                    "best": True,
                    "elapsed": step / 10 + 0.05,
                }
            )
    return records


def test_read_run_splits_training_and_validation(tmp_path):
    run = read_run(write_run(tmp_path / "a", trainer_records()))
    assert [s for s, _ in run.train] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [s for s, _ in run.val] == [10, 20, 30, 40]
    summary = summarize(run)
    assert summary["kind"] == "gpt" and summary["steps"] == 40
    assert summary["train_loss"] == pytest.approx(4.0 - 40 / 20)
    assert summary["best_val_loss"] == pytest.approx(min(v for _, v in run.val))
    assert summary["elapsed_s"] == pytest.approx(4.05)  # the final validation came last


def test_vector_runs_use_the_epoch_when_there_is_no_step(tmp_path):
    records = [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)]
    run = read_run(write_run(tmp_path / "glove", records, kind="vectors"))
    assert run.train == [(1.0, 1.0), (2.0, 0.5), (3.0, 1.0 / 3)] and run.val == []


def test_a_cut_last_line_is_skipped_but_a_bad_line_is_an_error(tmp_path):
    run = read_run(write_run(tmp_path / "cut", trainer_records(), tail='{"step": 45, "lo'))
    assert run.train[-1][0] == 40
    bad = write_run(tmp_path / "bad", trainer_records(), tail='not json\n{"step": 50, "loss": 1.0}\n')
    with pytest.raises(InputError, match=r"metrics.jsonl:\d+: not a JSON object"):
        read_run(bad)
    with pytest.raises(InputError, match="no metrics.jsonl"):
        read_run(tmp_path / "cut" / "..")
    with pytest.raises(InputError, match="no such run directory"):
        read_run(tmp_path / "missing")


def test_same_names_are_labelled_by_path(tmp_path):
    a = write_run(tmp_path / "x" / "run", trainer_records())
    b = write_run(tmp_path / "y" / "run", trainer_records())
    c = write_run(tmp_path / "other", trainer_records())
    labels = [r.label for r in read_runs([a, b, c])]
    assert labels == [str(a), str(b), "other"]
    payload = to_json(read_runs([c]))["runs"][0]
    assert payload["val"][0] == [10.0, pytest.approx(4.0 - 10 / 25)]


def _dots(text):
    return sum(bin(ord(ch) - 0x2800).count("1") for ch in text if 0x2800 < ord(ch) <= 0x28FF)


def test_braille_chart_shape_direction_and_markers():
    falling = Series("train", [(x, 10.0 - x) for x in range(11)], 0)
    val = Series("val", [(0.0, 10.0), (10.0, 0.0)], 1, markers=True)
    rows = braille_chart([falling, val], width=40, height=8)
    lines = ["".join(text for text, _ in row) for row in rows]
    assert len(lines) == 8 + 2 and all(len(line) <= 40 for line in lines)
    plot = [line.split("┤", 1)[1] for line in lines[:8]]
    # A falling line: its dots are in the top rows on the left and the bottom rows on the right.
    top_left = _dots("".join(line[: len(line) // 2] for line in plot[:4]))
    top_right = _dots("".join(line[len(line) // 2 :] for line in plot[:4]))
    assert top_left > 0 and top_right == 0
    assert MARKERS[1] in plot[0] and MARKERS[1] in plot[-1]
    assert lines[0].lstrip().startswith("10") and lines[7].split("┤")[0].strip() == "0"
    styles = {style for row in rows for _, style in row}
    assert {0, 1} <= styles


def test_braille_chart_with_nothing_to_draw():
    assert "no loss" in braille_chart([Series("x", [], 0)])[0][0][0]
    flat = braille_chart([Series("x", [(1.0, 2.0)], 0)], width=30, height=4)
    assert _dots("".join(t for row in flat for t, _ in row)) == 1
