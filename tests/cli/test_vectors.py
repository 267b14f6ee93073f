"""``dlnlp vectors``: eval, neighbors, analogy, convert, plot, on dlnlp's and gensim's files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlnlp.io.vectors import KeyedVectors, load_vectors, save_vectors
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory):
    # man -> king is +y; woman + y is queen.
    kv = KeyedVectors(["man", "king", "woman", "queen", "apple", "pear"],
                      np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1], [0.9, 1, 1.1]],
                               dtype=np.float32))
    path = tmp_path_factory.mktemp("vec") / "v.txt"
    save_vectors(kv, path)
    return path


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    analogy = root / "q.txt"
    analogy.write_text(": family\nman king woman queen\nman king apple pear\n: gram1\nman woman king queen\n"
                       "man unicorn king queen\n", encoding="utf-8")
    pairs = root / "ws.tsv"
    pairs.write_text("# comment\nking\tqueen\t8\napple\tpear\t9\nman\tapple\t1\nking\tunicorn\t5\n", encoding="utf-8")
    return analogy, pairs


def test_eval_json(vectors_file, eval_files):
    analogy, pairs = eval_files
    result = run_cli("vectors", "eval", str(vectors_file), "--analogy", str(analogy), "--similarity", str(pairs),
                     "--method", "both", "--json", "--sections")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    add = data["analogy"][0]
    assert add["method"] == "3cosadd" and add["questions"] == 4 and add["covered"] == 3
    assert add["semantic"]["questions"] == 2 and add["syntactic"]["questions"] == 2
    assert len(add["sections"]) == 2
    sim = data["similarity"][0]
    assert sim["pairs_used"] == 3 and sim["pairs_skipped"] == 1 and -1 <= sim["spearman"] <= 1


def test_eval_text_output(vectors_file, eval_files):
    analogy, pairs = eval_files
    result = run_cli("vectors", "eval", str(vectors_file), "--analogy", str(analogy), "--similarity", str(pairs))
    assert result.returncode == 0, result.stderr
    assert "of all 4" in result.stdout and "pairs used 3 skipped 1" in result.stdout


def test_eval_gensim_vectors(tmp_path, eval_files):
    gensim_models = pytest.importorskip("gensim.models")
    theirs = gensim_models.KeyedVectors(3)
    theirs.add_vectors(["man", "king", "woman", "queen"],
                       np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32))
    path = tmp_path / "g.bin"
    theirs.save_word2vec_format(str(path), binary=True)
    result = run_cli("vectors", "eval", str(path), "--analogy", str(eval_files[0]), "--json")
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)["analogy"][0]
    score, _ = theirs.evaluate_word_analogies(str(eval_files[0]))
    assert ours["accuracy_covered"] == pytest.approx(score)


def test_analogy_and_neighbors(vectors_file):
    result = run_cli("vectors", "analogy", str(vectors_file), "man", "king", "woman", "--topn", "1")
    assert result.returncode == 0 and result.stdout.split("\t")[0] == "queen"
    result = run_cli("vectors", "neighbors", str(vectors_file), "apple", "--topn", "1")
    assert result.returncode == 0 and result.stdout.splitlines()[1].split("\t")[0].strip() == "pear"


def test_neighbors_fall_back_to_another_case_and_analogy_json_has_the_query(vectors_file):
    from tests.conftest import run_main

    code, out, err = run_main("vectors", "neighbors", vectors_file, "Apple", "KING", "--topn", "1", "--json")
    assert code == 0, err  # was: word 'Apple' is not in the vocabulary
    result = json.loads(out)
    assert [n["word"] for n in result["Apple"]] == ["pear"] and [n["word"] for n in result["KING"]] == ["apple"]
    code, out, err = run_main("vectors", "analogy", vectors_file, "man", "king", "woman", "--topn", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["query"] == {"a": "man", "b": "king", "c": "woman"} and data["method"] == "3cosadd"
    assert [r["word"] for r in data["results"]] == ["queen"]


def test_plot_help_shows_the_extra():
    from tests.conftest import run_main

    code, out, _ = run_main("vectors", "plot", "--help")
    assert code == 0 and "dlnlp[plot]" in out  # Rich markup ate "[plot]"


def test_convert_between_formats(tmp_path, vectors_file):
    binary = tmp_path / "v.bin"
    assert run_cli("vectors", "convert", str(vectors_file), "--to", "word2vec-binary", "--out", str(binary)).returncode == 0
    directory = tmp_path / "dir"
    assert run_cli("vectors", "convert", str(binary), "--to", "dlnlp", "--out", str(directory)).returncode == 0
    glove = tmp_path / "g.txt"
    assert run_cli("vectors", "convert", str(directory), "--to", "glove", "--out", str(glove), "--limit", "4").returncode == 0
    original = load_vectors(vectors_file)
    assert np.array_equal(load_vectors(directory).vectors, original.vectors)
    assert load_vectors(glove).words == original.words[:4]
    again = run_cli("vectors", "convert", str(vectors_file), "--to", "word2vec-binary", "--out", str(binary))
    assert again.returncode == 1 and "--force" in again.stderr


def test_plot(tmp_path, vectors_file):
    out = tmp_path / "fig.png"
    result = run_cli("vectors", "plot", str(vectors_file), "man", "king", "woman", "queen", "--connect",
                     "--out", str(out))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.returncode == 1 and "matplotlib" in result.stderr
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args,message",
    [
        (["neighbors", "VEC", "unicorn"], "not in the vocabulary"),
        (["eval", "VEC"], "nothing to evaluate"),
        (["eval", "VEC", "--analogy", "missing.txt"], "no such file"),
        (["neighbors", "missing.bin", "king"], "no such file"),
        (["analogy", "VEC", "man", "king", "woman", "--method", "x"], "--method"),
    ],
)
def test_bad_input(vectors_file, args, message):
    args = [str(vectors_file) if a == "VEC" else a for a in args]
    result = run_cli("vectors", *args)
    assert result.returncode == (2 if message == "--method" else 1), result.stdout  # a value outside an option's choices is a usage error (issue #20)
    assert result.stderr.startswith("dlnlp: error:") and message in result.stderr
