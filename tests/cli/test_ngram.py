"""`dlnlp ngram` through the real CLI: train/eval/score/generate/export/import, pipes, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.conftest import run_cli, run_main

CORPUS = "\n".join(["the cat sat on the mat", "the dog sat on the log", "a cat saw a dog",
                    "the dog saw the cat", "a mat on a log"] * 4) + "\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ngram")
    (root / "train.txt").write_text(CORPUS)
    out = root / "lm"
    result = run_cli("ngram", "train", str(root / "train.txt"), "--order", "3", "--out", str(out), "--json",
                     check=True)
    summary = json.loads(result.stdout)
    assert summary["order"] == 3 and summary["ngram_counts"][0] == len((out / "vocab.txt").read_text().split())
    return out


def test_train_from_stdin_and_refuse_overwrite(tmp_path, model_dir):
    out = tmp_path / "lm"
    run_cli("ngram", "train", "-", "--order", "2", "-s", "witten-bell", "-o", str(out), "-q", input=CORPUS, check=True)
    assert json.loads((out / "config.json").read_text())["smoothing"] == "witten-bell"
    again = run_cli("ngram", "train", "-", "--order", "2", "-o", str(out), input=CORPUS)
    assert again.returncode == 1 and "--force" in again.stderr
    # A memory budget changes how counting runs (chunks, shards on disk), not the model.
    budget = tmp_path / "budget"
    run_cli("ngram", "train", "-", "--order", "2", "-s", "witten-bell", "-o", str(budget), "--memory", "1M",
            "--temp-dir", str(tmp_path), "-q", input=CORPUS, check=True)
    text = "the cat sat\na log\n"
    assert (run_cli("ngram", "score", str(budget), input=text, check=True).stdout
            == run_cli("ngram", "score", str(out), input=text, check=True).stdout)


def test_eval_json_counts_oovs(tmp_path, model_dir):
    test = tmp_path / "test.txt"
    test.write_text("the cat sat on the log\nthe zebra sat\n")
    result = json.loads(run_cli("ngram", "eval", str(model_dir), str(test), "--json", check=True).stdout)
    assert result["sentences"] == 2 and result["tokens"] == 7 + 4 and result["oov"] == 1
    assert result["perplexity"] > result["perplexity_excl_oov"] > 1
    text = run_cli("ngram", "eval", str(model_dir), "-", input="the cat\n", check=True).stdout
    assert "Perplexity including OOVs" in text


def test_score_is_one_line_per_line_in_a_pipe(model_dir):
    lines = "the cat sat on the mat\n\nthe zebra ate the zebra\n"
    result = run_cli("ngram", "score", str(model_dir), input=lines, check=True)
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert len(rows) == 3
    assert [int(r[1]) for r in rows] == [7, 1, 6]
    logprob, count, ppl = float(rows[0][0]), int(rows[0][1]), float(rows[0][2])
    assert ppl == pytest.approx(10 ** (-logprob / count), rel=1e-3)
    assert float(rows[2][0]) < float(rows[0][0])  # the OOV sentence is less likely


def test_score_refuses_a_line_over_the_limit_rather_than_score_pieces(model_dir):
    result = run_cli("ngram", "score", str(model_dir), input="the cat\n" + "the dog " * 10 + "\n",
                     env={"DLNLP_MAX_LINE_CHARS": "50"})
    assert result.returncode == 1 and result.stderr.startswith(
        "dlnlp: error: <stdin>:2: line of 80 characters is longer than the limit of 50")


def test_generate_is_seeded(model_dir):
    args = ("ngram", "generate", str(model_dir), "--num", "3", "--max-tokens", "12", "--top-k", "5", "--seed", "7")
    first = run_cli(*args, check=True).stdout
    assert first == run_cli(*args, check=True).stdout
    assert len(first.splitlines()) == 3
    prompted = run_cli("ngram", "generate", str(model_dir), "--prompt", "the dog", "--seed", "1", check=True).stdout
    assert prompted.startswith("the dog")


def test_generate_streams_sentences_into_a_pipe(model_dir):
    # `ngram generate --num 100000 | head -1` printed nothing until every sentence was sampled.
    process = subprocess.Popen([sys.executable, "-m", "dlnlp", "ngram", "generate", str(model_dir), "--num",
                                "100000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        assert first and first[0].endswith("\n"), "no sentence within 30 s"
        process.stdout.close()  # the reader goes away, as `head -1` does: a quiet exit 0
        assert process.wait(30) == 0 and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_generate_refuses_meaningless_counts(model_dir):
    for option, value, message in [("--num", "0", "--num must be >= 1, got 0"),
                                   ("--max-tokens", "0", "--max-tokens must be >= 1, got 0"),
                                   ("--temperature", "-1", "--temperature must be >= 0 (0 is greedy), got -1.0"),
                                   ("--top-k", "-3", "--top-k must be >= 0 (0: no limit), got -3")]:
        result = run_cli("ngram", "generate", str(model_dir), option, value)
        assert (result.returncode, result.stderr) == (1, f"dlnlp: error: {message}\n"), option


def test_export_import_round_trip(tmp_path, model_dir):
    arpa = tmp_path / "lm.arpa.gz"
    run_cli("ngram", "export", str(model_dir), str(arpa), check=True)
    run_cli("ngram", "import", str(arpa), "--out", str(tmp_path / "back"), check=True)
    text = "the cat sat on the log\na dog saw a cat\n"
    original = run_cli("ngram", "score", str(model_dir), input=text, check=True).stdout.splitlines()
    imported = run_cli("ngram", "score", str(tmp_path / "back"), input=text, check=True).stdout.splitlines()
    for a, b in zip(original, imported, strict=True):
        assert float(a.split("\t")[0]) == pytest.approx(float(b.split("\t")[0]), abs=1e-4)


def test_bad_inputs_fail_with_one_line(tmp_path, model_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_arpa = tmp_path / "bad.arpa"
    bad_arpa.write_text("hello\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"kind": "gpt", "format_version": 1}))
    cases = [
        ("ngram", "train", str(empty), "--out", str(tmp_path / "x")),
        ("ngram", "train", "-", "--order", "0", "--out", str(tmp_path / "y")),
        ("ngram", "train", "-", "--memory", "lots", "--out", str(tmp_path / "z")),
        ("ngram", "import", str(bad_arpa), "--out", str(tmp_path / "w")),
        ("ngram", "import", str(tmp_path / "missing.arpa"), "--out", str(tmp_path / "v")),
        ("ngram", "eval", str(other), "-"),
        ("ngram", "score", str(tmp_path / "no-model")),
    ]
    for args in cases:
        result = run_cli(*args, input="a b\n")
        assert result.returncode == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dlnlp: error:"), (args, result.stderr)


@pytest.mark.parametrize(("order", "shown"), [(None, "None"), ("3", "'3'"), (0, "0")])
def test_a_bad_order_in_config_json_is_one_line(tmp_path, model_dir, order, shown):
    import shutil

    damaged = tmp_path / "lm"
    shutil.copytree(model_dir, damaged)
    config = json.loads((damaged / "config.json").read_text())
    config["order"] = order
    if order is None:
        del config["order"]  # was KeyError: 'order'
    (damaged / "config.json").write_text(json.dumps(config))
    for args in (["eval", str(damaged), "-"], ["generate", str(damaged)], ["export", str(damaged), str(tmp_path / "a")]):
        result = run_cli("ngram", *args, input="the cat\n")
        assert (result.returncode, result.stderr) == (
            1, f"dlnlp: error: {damaged}/config.json: 'order' must be an integer >= 1, got {shown}\n"), args


def test_score_prints_the_sentence_so_sort_ranks_lines(model_dir):
    lines = "the zebra ate the zebra\nthe cat sat on the mat\n\n"
    result = run_cli("ngram", "score", str(model_dir), input=lines, check=True)
    rows = [row.split("\t") for row in result.stdout.splitlines()]
    assert [r[3] for r in rows] == ["the zebra ate the zebra", "the cat sat on the mat", ""]
    ranked = sorted(rows, key=lambda r: float(r[2]))
    assert ranked[0][3] == "the cat sat on the mat"


def test_score_json_words_and_text_field(tmp_path, model_dir):
    data = tmp_path / "s.jsonl"
    data.write_text('{"id": 1, "text": "the cat sat"}\n{"id": 2, "text": "the zebra sat"}\n')
    result = run_cli("ngram", "score", str(model_dir), str(data), "--text-field", "text", "--json", "--words",
                     check=True)
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["text"] == "the cat sat" and first["tokens"] == 4 and first["oov"] == 0
    assert [w["word"] for w in first["words"]] == ["the", "cat", "sat", "</s>"]
    assert sum(w["log10_prob"] for w in first["words"]) == pytest.approx(first["log10_prob"])
    assert [w["order"] for w in first["words"]][:3] == [2, 3, 3]  # <s> the / <s> the cat / the cat sat
    assert second["oov"] == 1 and [w["oov"] for w in second["words"]] == [False, True, False, False]
    assert second["words"][1]["id"] == 0 and second["words"][1]["order"] == 1


def test_score_words_matches_kenlm_query(tmp_path, model_dir):
    kenlm = pytest.importorskip("kenlm")
    arpa = tmp_path / "lm.arpa"
    run_cli("ngram", "export", str(model_dir), str(arpa), check=True)
    text = "the cat sat on the log\nthe zebra saw a cat\n"
    out = run_cli("ngram", "score", str(model_dir), "--words", input=text, check=True).stdout.splitlines()
    model = kenlm.Model(str(arpa))
    for line, row in zip(text.splitlines(), out, strict=True):
        *fields, total = row.split("\t")
        expected = list(model.full_scores(line))
        assert len(fields) == len(expected)
        for field, (prob, order, oov) in zip(fields, expected, strict=True):
            word_id, got_order, got_prob = field.rsplit("=", 1)[1].split()
            assert (int(got_order), int(word_id) == 0) == (order, oov)
            assert float(got_prob) == pytest.approx(prob, abs=1e-3)
        assert total.startswith("Total: ") and float(total.split()[1]) == pytest.approx(model.score(line), abs=1e-3)


def test_export_of_stupid_backoff_warns(tmp_path):
    (tmp_path / "c.txt").write_text(CORPUS)
    run_cli("ngram", "train", str(tmp_path / "c.txt"), "-s", "stupid-backoff", "-o", str(tmp_path / "sb"), "-q",
            check=True)
    result = run_cli("ngram", "export", str(tmp_path / "sb"), str(tmp_path / "sb.arpa"), check=True)
    assert result.stderr.startswith("dlnlp: warning: ") and "not probabilities" in result.stderr
    assert (tmp_path / "sb.arpa").is_file()


def test_export_and_import_report_progress_unless_quiet(tmp_path, model_dir, monkeypatch):
    from dlnlp.io import arpa as arpa_module

    monkeypatch.setattr(arpa_module, "WRITE_BLOCK", 7)  # several blocks per order on this small model
    monkeypatch.setattr(arpa_module, "READ_BLOCK", 50)
    monkeypatch.setattr(arpa_module, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(arpa_module, "PROGRESS_MIN_NGRAMS", 0)
    out = tmp_path / "lm.arpa"
    code, _, err = run_main("ngram", "export", model_dir, out)
    assert code == 0, err
    total = sum(int(line.split("=")[1]) for line in out.read_text().splitlines() if line.startswith("ngram "))
    assert f"writing ARPA: {total}/{total} n-grams (100%)" in err
    code, _, err = run_main("ngram", "import", out, "--out", tmp_path / "back")
    assert code == 0, err
    from dlnlp.progress import _format_count

    size = _format_count(out.stat().st_size)
    assert f"reading ARPA: {size}/{size} bytes (100%)" in err and f"parsing ARPA: {total}/{total}" in err
    assert "order 3" in err
    for args in (("export", model_dir, tmp_path / "q.arpa"), ("import", out, "--out", tmp_path / "q")):
        code, _, err = run_main("ngram", *args, "--quiet")
        assert code == 0 and err == ""
