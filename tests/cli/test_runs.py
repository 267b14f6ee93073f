"""``dlnlp runs show``: table, chart, --json and --png over run directories."""

import builtins
import json

import pytest

from tests.conftest import run_main
from tests.evaluation.test_runs import trainer_records, write_run


def test_show_prints_a_table_chart_and_legend(tmp_path):
    a = write_run(tmp_path / "small", trainer_records())
    b = write_run(tmp_path / "wide", trainer_records(start=5.0), kind="rnn")
    result = run_main("runs", "show", a, b, "--height", "6", "--width", "60")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("small") and "gpt" in line and "40" in line for line in lines)
    assert any(line.startswith("wide") and "rnn" in line for line in lines)
    assert sum("┤" in line for line in lines) == 6
    assert "small training loss" in result.stdout and "wide validation loss" in result.stdout


def test_show_json(tmp_path):
    a = write_run(tmp_path / "a", trainer_records())
    result = run_main("runs", "show", a, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    (run,) = payload["runs"]
    assert run["run"] == "a" and run["steps"] == 40 and len(run["train"]) == 8 and len(run["val"]) == 4


def test_show_png_and_no_overwrite(tmp_path):
    pytest.importorskip("matplotlib")
    a = write_run(tmp_path / "a", trainer_records())
    png = tmp_path / "curves.png"
    result = run_main("runs", "show", a, "--png", png, "--height", "0")
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_main("runs", "show", a, "--png", png)
    assert again.returncode == 1 and "exists" in again.stderr


def test_png_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    a = write_run(tmp_path / "a", trainer_records())
    result = run_main("runs", "show", a, "--png", tmp_path / "x.png")
    assert result.returncode == 1 and "dlnlp[plot]" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_inputs(tmp_path):
    assert run_main("runs", "show", tmp_path / "nope").returncode == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main("runs", "show", empty)
    assert result.returncode == 1 and "no metrics.jsonl" in result.stderr
    assert run_main("runs", "show", empty, "--height", "1").returncode in (1, 2)
