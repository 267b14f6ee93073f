"""``--max-time`` is a wall-clock budget for the vector trainers too: they stop early enough to write the
vectors inside it (issue 20)."""

from __future__ import annotations

import json
import time

from tests.conftest import run_main

TEXT = "".join(f"the quick brown fox {i % 7} jumps over the lazy dog {i % 5} again\n" for i in range(400))


def test_word2vec_max_time_stops_and_writes_the_vectors(tmp_path):
    (tmp_path / "c.txt").write_text(TEXT)
    started = time.perf_counter()
    code, stdout, err = run_main("word2vec", "train", tmp_path / "c.txt", "--min-count", "1", "--dim", "16",
                                 "--epochs", "100000", "--max-time", "1.5", "--workers", "1", "-q", "--json",
                                 "--out", tmp_path / "v.txt")
    wall = time.perf_counter() - started
    assert code == 0, err
    result = json.loads(stdout)
    assert result["stopped_early"] is True and (tmp_path / "v.txt").stat().st_size > 0
    assert wall < 1.5 + 1.0
    code, _, err = run_main("word2vec", "train", tmp_path / "c.txt", "--max-time", "0", "--out", tmp_path / "w.txt")
    assert code == 1 and "--max-time must be > 0" in err


def test_glove_max_time_counts_the_whole_command(tmp_path):
    (tmp_path / "c.txt").write_text(TEXT)
    started = time.perf_counter()
    code, stdout, err = run_main("glove", "train", tmp_path / "c.txt", "--min-count", "1", "--dim", "16",
                                 "--epochs", "100000", "--max-time", "1.5", "--workers", "1", "-q", "--json",
                                 "--out", tmp_path / "g.txt")
    wall = time.perf_counter() - started
    assert code == 0, err
    assert json.loads(stdout)["epochs_completed"] < 100000 and (tmp_path / "g.txt").stat().st_size > 0
    assert wall < 1.5 + 1.0
