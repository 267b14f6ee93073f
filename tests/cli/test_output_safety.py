"""Nothing a user had is lost: --force, kills, failures, concurrent runs and special files (issue #19)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_main

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY_RNN = ["--embed", "8", "--hidden", "16", "--layers", "1", "--seq-len", "16", "--batch-size", "4",
            "--device", "cpu", "--quiet"]
TINY_GPT = ["--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "16", "--batch-size", "4",
            "--device", "cpu", "--quiet"]




def _corpus(lines: int = 200) -> str:
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    return "".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(8)) + "\n" for i in range(lines))


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def old_model(tmp_path_factory) -> Path:
    """A trained char-level RNN model directory to protect."""
    root = tmp_path_factory.mktemp("old")
    corpus = root / "corpus.txt"
    corpus.write_text(_corpus())
    run_cli("rnn", "train", str(corpus), "--out", str(root / "model"), "--max-steps", "2", *TINY_RNN, "--keep-data",
            check=True, env=ONE_THREAD)
    return root / "model"


@pytest.fixture
def workspace(tmp_path, old_model) -> tuple[Path, Path, dict[str, bytes]]:
    """(corpus, a copy of the old model, its snapshot) in a fresh directory."""
    import shutil

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus())
    model = tmp_path / "model"
    shutil.copytree(old_model, model)
    return corpus, model, _snapshot(model)


def _only(directory: Path, *names: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


@pytest.mark.parametrize("group", ["rnn", "gpt"])
def test_force_run_that_fails_before_training_keeps_the_old_model(capsys, workspace, group):
    corpus, model, before = workspace
    binary = corpus.parent / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    for bad_input in (corpus.parent / "missing.txt", binary):
        code, _, err = run_main(group, "train", bad_input, "--out", model, "--force", "--max-steps", "1",
                             *(TINY_RNN if group == "rnn" else TINY_GPT))
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert _snapshot(model) == before
        _only(corpus.parent, "corpus.txt", "binary.bin", "model")  # no staging directory, no lock left


def test_force_never_targets_the_current_directory_an_input_or_a_foreign_directory(capsys, workspace,
                                                                                       monkeypatch):
    corpus, model, before = workspace
    root = corpus.parent
    foreign = root / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    monkeypatch.chdir(root)
    cases = [
        (".", "current directory"),
        (str(root), "current directory"),
        (str(root.parent), "current directory"),
        ("corpus.txt", "is an input"),
        (str(foreign), "not a model directory"),
    ]
    for out, message in cases:
        for group in ("rnn", "gpt"):
            code, _, err = run_main(group, "train", "corpus.txt", "--out", out, "--force", "--max-steps", "1",
                                 *(TINY_RNN if group == "rnn" else TINY_GPT))
            assert code == 1 and message in err and len(err.strip().splitlines()) == 1, (out, err)
    assert corpus.read_text() == _corpus() and (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"
    assert _snapshot(model) == before
    _only(root, "corpus.txt", "model", "photos")
    # the one-shot writers share the rules
    for args in (["ngram", "train", "corpus.txt", "--out", ".", "--force"],
                 ["word2vec", "train", "corpus.txt", "--out", "corpus.txt", "--force", "--min-count", "1"],
                 ["tokenize", "train", "corpus.txt", "--out", "corpus.txt", "--force", "--vocab-size", "300"],
                 ["tokenize", "encode", "corpus.txt", "-t", "corpus.txt", "--output", "corpus.txt", "--force"],
                 ["ngram", "train", "corpus.txt", "--out", "photos", "--force"]):
        code, _, err = run_main(*args)
        assert code == 1 and len(err.strip().splitlines()) == 1, (args, err)
    assert corpus.read_text() == _corpus() and (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_failed_run_without_a_checkpoint_leaves_nothing(capsys, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus())
    code, _, err = run_main("gpt", "train", corpus, "--out", tmp_path / "m", "--lr", "1e6", "--max-steps", "20",
                         "--clip", "0", *TINY_GPT)
    assert code == 1 and "loss became" in err and "no checkpoint was saved" in err, err
    _only(tmp_path, "corpus.txt")
    code, _, err = run_main("rnn", "train", "-", "--ids", "--out", tmp_path / "m", "--max-steps", "1",
                         *TINY_RNN)  # stdin is empty under pytest
    assert code == 1, err
    _only(tmp_path, "corpus.txt")


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _start_long_run(corpus: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **ONE_THREAD}
    env.pop("DLNLP_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dlnlp", "rnn", "train", str(corpus), "--out", str(out), "--max-time", "60",
         "--eval-interval", "0", *TINY_RNN, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_kill_9_during_a_force_run_keeps_the_old_model_and_the_next_run_cleans_up(workspace):
    corpus, model, before = workspace
    proc = _start_long_run(corpus, model, "--force")
    try:
        _wait_for(lambda: any((p / "config.json").is_file() for p in corpus.parent.glob(".model.*.tmp")))
        time.sleep(0.5)  # inside the training loop
    finally:
        proc.kill()
        proc.communicate()
    assert _snapshot(model) == before
    assert list(corpus.parent.glob(".model.*.tmp"))  # the killed run's staging directory
    run_cli("rnn", "train", str(corpus), "--out", str(model), "--force", "--max-steps", "1", *TINY_RNN,
            check=True, env=ONE_THREAD)
    _only(corpus.parent, "corpus.txt", "model")
    assert _snapshot(model) != before and (model / "checkpoint").is_dir()


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(workspace):
    corpus, model, before = workspace
    first = _start_long_run(corpus, model, "--force")
    try:
        _wait_for(lambda: (corpus.parent / ".model.lock").exists())
        second = run_cli("rnn", "train", str(corpus), "--out", str(model), "--force", "--max-steps", "1",
                         *TINY_RNN, env=ONE_THREAD)
        resume = run_cli("rnn", "train", "--resume", "--out", str(model), env=ONE_THREAD)
        assert first.poll() is None  # still training: the refusals above were made while it ran
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: the first run saves a checkpoint and exits 130
        out, err = first.communicate(timeout=300)
    for other in (second, resume):
        assert other.returncode == 1 and "another dlnlp run" in other.stderr, other.stderr
        assert len(other.stderr.strip().splitlines()) == 1
    assert first.returncode == 130, err
    assert _snapshot(model) != before and (model / "checkpoint").is_dir()
    _only(corpus.parent, "corpus.txt", "model")


def test_resume_recovers_a_checkpoint_swap_cut_short(capsys, workspace):
    corpus, model, _ = workspace
    (model / "checkpoint").rename(model / ".checkpoint.old-999999999")  # killed between the two renames
    code, _, err = run_main("rnn", "train", "--resume", "--out", model, "--max-steps", "3", "--quiet")
    assert code == 0, err
    assert (model / "checkpoint").is_dir() and not (model / ".checkpoint.old-999999999").exists()


def test_resume_rejects_data_file_names_that_leave_the_run_directory(capsys, workspace):
    corpus, model, _ = workspace
    outside = corpus.parent / "outside_tokens.bin"
    outside.write_bytes(b"\x00" * 64)
    meta_path = model / "data" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["split"]["train"][0] = "../../outside_tokens.bin"
    meta_path.write_text(json.dumps(meta))
    code, _, err = run_main("rnn", "train", "--resume", "--out", model, "--max-steps", "3")
    assert code == 1 and "leaves" in err and len(err.strip().splitlines()) == 1, err


def test_weights_get_the_umask_permissions(workspace):
    _, model, _ = workspace
    mask = os.umask(0)
    os.umask(mask)
    for weights in (model / "model.safetensors", model / "checkpoint" / "model.safetensors"):
        assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~mask


def test_force_onto_a_fifo_writes_into_it(tmp_path):
    tokenizer = tmp_path / "tok.json"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus(20))
    run_cli("tokenize", "train", str(corpus), "--vocab-size", "300", "--out", str(tokenizer), "--quiet", check=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run_cli("tokenize", "encode", str(corpus), "-t", str(tokenizer), "--output", str(fifo), "--force")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a FIFO, not replaced by a regular file
    expected = run_cli("tokenize", "encode", str(corpus), "-t", str(tokenizer), check=True).stdout
    assert received and received[0].decode() == expected
    link = tmp_path / "to-stdout"
    link.symlink_to("/dev/stdout")
    through_link = run_cli("tokenize", "encode", str(corpus), "-t", str(tokenizer), "--output", str(link), "--force")
    assert through_link.returncode == 0 and through_link.stdout == expected
    assert link.is_symlink()


def test_sigterm_removes_temporary_outputs_and_stale_ones_go_next_time(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus(20))
    tokenizer = tmp_path / "tok.json"
    run_cli("tokenize", "train", str(corpus), "--vocab-size", "300", "--out", str(tokenizer), "--quiet", check=True)
    out = tmp_path / "ids.txt"
    proc = subprocess.Popen([sys.executable, "-m", "dlnlp", "tokenize", "encode", "-t", str(tokenizer), "--output",
                             str(out), "--quiet"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"to be or not\n" * 1000)
    proc.stdin.flush()
    _wait_for(lambda: list(tmp_path.glob(".ids.txt.*.tmp")))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.decode().strip() == "dlnlp: terminated (SIGTERM)"
    _only(tmp_path, "corpus.txt", "tok.json")
    stale = tmp_path / ".ids.txt.999999999.abcd.tmp"  # left by a run killed with -9
    stale.write_text("partial")
    run_cli("tokenize", "encode", str(corpus), "-t", str(tokenizer), "--output", str(out), check=True)
    _only(tmp_path, "corpus.txt", "tok.json", "ids.txt")


def test_vectors_commands_write_to_stdout_with_dash(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus(50))
    result = run_cli("word2vec", "train", str(corpus), "--out", "-", "--min-count", "1", "--epochs", "1", "--dim", "8",
                     "--quiet", check=True, env=ONE_THREAD)
    header, *rows = result.stdout.splitlines()
    assert header == f"{len(rows)} 8" and all(len(row.split()) == 9 for row in rows)
    _only(tmp_path, "corpus.txt")


@pytest.mark.parametrize("damage", ["data/meta.json", "checkpoint/trainer.json"])
def test_resume_of_a_damaged_run_names_the_file(workspace, damage):
    _, model, _ = workspace
    for content in ("{not json", '{"unrelated": 1}'):
        (model / damage).write_text(content)
        code, _, err = run_main("rnn", "train", "--resume", "--out", model, "--max-steps", "3")
        assert code == 1 and damage in err and len(err.strip().splitlines()) == 1, err
        assert "Error:" not in err  # no raw exception class names
