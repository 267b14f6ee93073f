"""Word-vector formats: exact round trips, format detection, gensim interoperability, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from dlnlp.errors import DlnlpError, InputError
from dlnlp.io.vectors import KeyedVectors, detect_format, load_vectors, save_vectors

WORDS = ["the", "of", "naïve", "日本", "x"]


def _kv(dim=7, seed=0):
    rng = np.random.default_rng(seed)
    return KeyedVectors(WORDS, rng.standard_normal((len(WORDS), dim)).astype(np.float32) * 10 ** rng.uniform(
        -4, 2, size=(len(WORDS), 1)).astype(np.float32), counts=[50, 40, 30, 20, 10])


@pytest.mark.parametrize("fmt", ["word2vec-text", "word2vec-binary", "glove", "dlnlp"])
def test_round_trip_is_exact(tmp_path, fmt):
    kv = _kv()
    path = tmp_path / "vectors"
    save_vectors(kv, path, fmt=fmt)
    assert detect_format(path) == fmt
    loaded = load_vectors(path)
    assert loaded.words == WORDS
    assert np.array_equal(loaded.vectors, kv.vectors)  # 9 significant digits round-trip float32


def test_limit_reads_the_first_words(tmp_path):
    save_vectors(_kv(), tmp_path / "v.bin", fmt="word2vec-binary")
    save_vectors(_kv(), tmp_path / "v.txt", fmt="word2vec-text")
    assert load_vectors(tmp_path / "v.bin", limit=2).words == WORDS[:2]
    assert load_vectors(tmp_path / "v.txt", limit=3).words == WORDS[:3]


def test_no_overwrite_without_force(tmp_path):
    path = tmp_path / "v.txt"
    save_vectors(_kv(), path)
    with pytest.raises(DlnlpError, match="--force"):
        save_vectors(_kv(seed=1), path)
    save_vectors(_kv(seed=1), path, force=True)
    assert np.array_equal(load_vectors(path).vectors, _kv(seed=1).vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_what_dlnlp_writes(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    kv = _kv()
    path = tmp_path / ("v.bin" if binary else "v.txt")
    save_vectors(kv, path, fmt="word2vec-binary" if binary else "word2vec-text")
    theirs = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert theirs.index_to_key == WORDS
    assert np.array_equal(theirs.vectors, kv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_dlnlp_reads_what_gensim_writes(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    kv = _kv(dim=5)
    theirs = gensim_models.KeyedVectors(5)
    theirs.add_vectors(WORDS, kv.vectors)
    path = tmp_path / "g.vec"
    theirs.save_word2vec_format(str(path), binary=binary)
    loaded = load_vectors(path)
    assert loaded.words == WORDS
    assert np.allclose(loaded.vectors, kv.vectors, rtol=1e-6, atol=0)


def test_glove_text_without_header(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2 -0.3\nof 1 2 3\n", encoding="utf-8")
    kv = load_vectors(path)
    assert detect_format(path) == "glove"
    assert kv.words == ["the", "of"] and kv.dim == 3
    assert kv["of"].tolist() == [1.0, 2.0, 3.0]


def test_most_similar_excludes_inputs_and_ranks_by_cosine():
    kv = KeyedVectors(["a", "b", "c", "d"], np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], dtype=np.float32))
    result = kv.most_similar("a", topn=3)
    assert [w for w, _ in result] == ["b", "c", "d"]
    assert result[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert kv.most_similar(positive=["c", "a"], negative=["d"], topn=1)[0][0] == "b"
    assert kv.most_similar("a", topn=3, restrict=2) == result[:1]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"2 3\nthe 1 2 3\n", "header says 2"),
        (b"1 3\nthe 1 2\n", "expected a word and 3 numbers"),
        (b"1 2\nthe 1 abc\n", "not a number"),
        (b"the 1 2\nof 1 2 3 4 5 6\n", None),
        (b"1 2\n\xff\xfe 1 2\n", "not valid UTF-8"),
    ],
)
def test_bad_text_files_raise_input_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    if message is None:  # a longer second line in a GloVe file: the word takes the extra fields
        assert load_vectors(path).words[1] == "of 1 2 3 4"
        return
    with pytest.raises(InputError, match=message):
        load_vectors(path, fmt="word2vec-text")


def test_truncated_binary_file(tmp_path):
    path = tmp_path / "v.bin"
    save_vectors(_kv(), path, fmt="word2vec-binary")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(InputError, match="truncated"):
        load_vectors(path, fmt="word2vec-binary")


def test_missing_file_and_bad_format(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_vectors(tmp_path / "nope.bin")
    save_vectors(_kv(), tmp_path / "v.txt")
    with pytest.raises(InputError, match="unknown vectors format"):
        load_vectors(tmp_path / "v.txt", fmt="fasttext")
    with pytest.raises(InputError, match="spaces"):
        save_vectors(KeyedVectors(["a b"], np.zeros((1, 2), np.float32)), tmp_path / "w.txt")


def test_zero_vectors_give_cosine_zero_without_warnings():
    import warnings

    kv = KeyedVectors(["a", "b", "zero"], np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 0.0]], dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neighbours = kv.most_similar("a", topn=2)
        assert neighbours[0][0] == "b" and neighbours[1] == ("zero", 0.0)
        assert kv.most_similar("zero", topn=2) == [("a", 0.0), ("b", 0.0)]
        assert kv.similarity("a", "zero") == 0.0


def test_training_commands_choose_the_output_format_by_suffix(tmp_path):
    from dlnlp.io.vectors import output_format, write_vectors_output

    assert output_format(tmp_path / "v.bin", "auto") == "word2vec-binary"
    assert output_format(tmp_path / "v.vec", "auto") == "word2vec-text"
    assert output_format(tmp_path / "run", "auto") == "dir"
    assert output_format(tmp_path / "v.bin", "glove") == "glove"
    with pytest.raises(InputError, match="--format"):
        output_format(tmp_path / "v.bin", "pickle")
    kv = KeyedVectors(["a", "b"], np.eye(2, dtype=np.float32), [3, 1])
    write_vectors_output(kv, tmp_path / "run", "dir", config={"model": "test", "dim": 99})
    assert load_vectors(tmp_path / "run").words == ["a", "b"]
    write_vectors_output(kv, tmp_path / "v.txt", "glove")
    assert (tmp_path / "v.txt").read_text().splitlines()[0].startswith("a 1 0")


def test_search_and_limit_refuse_counts_below_one(tmp_path):
    kv = _kv()
    save_vectors(kv, tmp_path / "v.txt")
    for call, message in [(lambda: kv.most_similar(WORDS[0], topn=0), "--topn must be >= 1, got 0"),
                          (lambda: kv.most_similar(WORDS[0], restrict=-1), "--restrict must be >= 1, got -1"),
                          (lambda: kv.most_similar_cosmul([WORDS[0]], [], topn=-2), "--topn must be >= 1, got -2"),
                          (lambda: load_vectors(tmp_path / "v.txt", limit=0), "--limit must be >= 1, got 0")]:
        with pytest.raises(InputError, match=message.replace("(", r"\(")):
            call()


def test_a_damaged_vocab_txt_in_a_model_directory_is_one_line(tmp_path):
    save_vectors(_kv(), tmp_path / "v", fmt="dlnlp")
    (tmp_path / "v" / "vocab.txt").write_text("the\t5\nof\n")  # was "invalid literal for int()"
    with pytest.raises(DlnlpError, match=r"v/vocab.txt:2: expected WORD<tab>COUNT, got 'of'"):
        load_vectors(tmp_path / "v")
    (tmp_path / "v" / "vocab.txt").write_text("the\t5\nof\t3\n")
    with pytest.raises(DlnlpError, match=r"vocab.txt has 2 words, model.safetensors 5x7 vectors"):
        load_vectors(tmp_path / "v")
