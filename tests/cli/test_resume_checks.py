"""``--resume`` refuses, naming the option, model options and a corpus that differ from the run's
(issue 20); options that may change on resume (steps, time, device, threads, output) stay allowed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_main

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))
COMMON = ["--max-steps", "2", "--eval-interval", "0", "--device", "cpu", "-q"]
FAMILIES = {
    "gpt": (["gpt", "train"], ["--char", "--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "8",
                               "--batch-size", "4"],
            [("--layers", "2", "--layers 2 differs from the run's --layers 1"),
             ("--no-bias", None, "--no-bias differs from the run's --bias"),
             ("--lr", "0.5", "--lr 0.5 differs from the run's --lr 0.001")]),
    "rnn": (["rnn", "train"], ["--cell", "gru", "--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len", "8",
                               "--batch-size", "4"],
            [("--cell", "lstm", "--cell lstm differs from the run's --cell gru"),
             ("--seq-len", "16", "--seq-len 16 differs from the run's --seq-len 8"),
             ("--tie-weights", None, "--tie-weights differs from the run's no --tie-weights")]),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    (root / "a.txt").write_text(TEXT)
    (root / "b.txt").write_text(TEXT.upper())
    return root


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def run(request, corpora, tmp_path_factory):
    command, model, changes = FAMILIES[request.param]
    out = tmp_path_factory.mktemp(request.param) / "run"
    code, _, err = run_main(*command, corpora / "a.txt", *model, *COMMON, "--out", out)
    assert code == 0, err
    return command, model, changes, out


def test_a_changed_model_option_is_refused_by_name(run):
    command, _, changes, out = run
    for flag, value, message in changes:
        args = [flag] if value is None else [flag, value]
        code, _, err = run_main(*command, "--resume", "--out", out, *args, *COMMON)
        assert code == 1 and message in err and "--resume" in err, err
        assert len(err.strip().splitlines()) == 1
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 2  # nothing trained


def test_another_or_changed_corpus_is_refused(run, corpora, tmp_path):
    command, _, _, out = run
    code, _, err = run_main(*command, corpora / "b.txt", "--resume", "--out", out, *COMMON)
    assert code == 1 and "b.txt is not the run's" in err, err
    changed = tmp_path / "a.txt"
    changed.write_text(TEXT)
    code, _, err = run_main(*command, changed, "--resume", "--out", out, *COMMON)
    assert code == 1 and "is not the run's" in err, err


def test_the_same_command_again_and_new_limits_resume(run, corpora, tmp_path):
    import shutil

    command, model, _, out = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    # the very command that started the run, with --resume and more steps, a time budget and threads
    code, stdout, err = run_main(*command, corpora / "a.txt", *model, "--resume", "--out", copy, "--max-steps", "3",
                                 "--max-time", "600", "--eval-interval", "0", "--device", "cpu", "--threads", "1",
                                 "-q", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 3 and summary["threads"] == 1
