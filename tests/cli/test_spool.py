"""Training runs keep no copy of their corpus unless asked (--keep-data); --resume spools it again."""

import json

from tests.cli.test_gpt import TINY
from tests.conftest import run_main

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


def _train(*args, input=None):
    code, out, err = run_main("gpt", "train", *args, *TINY, "--json", input=input)
    assert code == 0, err
    return json.loads(out)


def test_the_spool_is_removed_and_resume_reads_the_corpus_again(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    straight = _train(corpus, "--max-steps", "6", "--out", tmp_path / "straight")
    _train(corpus, "--max-steps", "3", "--out", tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists() and not (tmp_path / "straight" / "data").exists()
    spool = json.loads((tmp_path / "run" / "config.json").read_text())["spool"]
    assert spool["inputs"] == [str(corpus)] and spool["sha256"]
    resumed = _train("--resume", "--max-steps", "6", "--out", tmp_path / "run")
    assert resumed["steps"] == 6 and resumed["val_loss"] == straight["val_loss"]  # the same curve
    assert not (tmp_path / "run" / "data").exists()


def test_keep_data_keeps_it(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    _train(corpus, "--max-steps", "2", "--out", tmp_path / "run", "--keep-data")
    assert (tmp_path / "run" / "data" / "meta.json").is_file()
    _train("--resume", "--max-steps", "3", "--out", tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()  # the resumed run was not asked to keep it


def test_resume_refuses_a_changed_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    _train(corpus, "--max-steps", "2", "--out", tmp_path / "run")
    before = (tmp_path / "run" / "checkpoint" / "trainer.json").read_bytes()
    corpus.write_text(TEXT.replace("lazy", "busy"))
    code, _, err = run_main("gpt", "train", "--resume", "--max-steps", "3", "--out", tmp_path / "run")
    assert code == 1 and "not the corpus this run started on" in err
    assert (tmp_path / "run" / "checkpoint" / "trainer.json").read_bytes() == before
    assert not (tmp_path / "run" / "data").exists()
    corpus.unlink()
    code, _, err = run_main("gpt", "train", "--resume", "--max-steps", "3", "--out", tmp_path / "run")
    assert code == 1 and str(corpus) in err


def test_a_run_on_stdin_says_it_cannot_be_resumed_without_keep_data(tmp_path):
    code, _, err = run_main("gpt", "train", "-", *[a for a in TINY if a not in ("-q", "--quiet")],
                            "--max-steps", "2", "--out", tmp_path / "run", input=TEXT)
    assert code == 0 and "--keep-data keeps it" in err
    code, _, err = run_main("gpt", "train", "--resume", "--max-steps", "3", "--out", tmp_path / "run")
    assert code == 1 and "standard input" in err and len(err.strip().splitlines()) == 1
    _train("-", "--max-steps", "2", "--out", tmp_path / "kept", "--keep-data", input=TEXT)
    _train("--resume", "--max-steps", "3", "--out", tmp_path / "kept")
