"""load_model reads every kind of model directory through the family registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlnlp.errors import ModelDirError
from dlnlp.models.registry import FAMILY_MODULES, Family, get_family, kinds, load_model, register

TEXT = "to be or not to be\n"


def _gpt(directory):
    from dlnlp.models.gpt import GPT, GPTConfig, save_gpt

    torch.manual_seed(0)
    save_gpt(GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=1, n_embd=8)), directory, level="ids")


def _rnn(directory, cell="lstm"):
    from dlnlp.io.modeldir import make_config, write_model_dir
    from dlnlp.models.rnn_lm import KIND, RNNLMConfig, build_model
    from dlnlp.tokenization.char import CharVocab

    vocab = CharVocab.build(TEXT)
    config = RNNLMConfig(vocab_size=vocab.vocab_size, cell=cell, embed=8, hidden=8, layers=1, context=2)
    write_model_dir(directory, make_config(KIND, model=config.to_dict(), level="char", seq_len=4),
                    build_model(config).state_dict(), {"vocab.json": vocab.to_json()})


def _ngram(directory):
    from dlnlp.models.ngram import train

    train(["the cat sat", "the dog sat"] * 3, 2).save(directory)


def _word2vec(directory):
    from dlnlp.models.vocab import count_and_encode
    from dlnlp.models.word2vec import Word2Vec, Word2VecConfig

    vocab, _, _ = count_and_encode(["the cat sat", "the dog sat"], min_count=1)
    Word2Vec(vocab, Word2VecConfig(dim=4, workers=1)).save(directory)


def _vectors(directory):
    from dlnlp.io.vectors import KeyedVectors, save_vectors_dir

    save_vectors_dir(KeyedVectors(["cat", "dog"], np.eye(2, dtype=np.float32), [3, 2]), directory)


def _bert(directory):
    from dlnlp.models.bert import Bert, BertConfig, save_bert

    torch.manual_seed(0)
    save_bert(Bert(BertConfig(vocab_size=12, dim=8, n_layer=1, n_head=2, intermediate=16, max_len=8)), directory,
              level="ids")


def _elmo(directory):
    from dlnlp.models.elmo import BiLM, ElmoConfig, save_elmo

    torch.manual_seed(0)
    config = ElmoConfig(vocab_size=5, max_chars=8, char_dim=2, filters=[[1, 2], [2, 2]], highway=1, dim=4, hidden=4,
                        layers=1, softmax="full")
    save_elmo(BiLM(config), directory, ["<unk>", "</s>", "to", "be", "or"])


def _bilstm(directory):
    from dlnlp.models.bilstm import BiLSTM, BiLSTMConfig, save_bilstm

    save_bilstm(BiLSTM(BiLSTMConfig(vocab_size=12, embed=4, hidden=4)), directory, level="ids")


MAKERS = {"bert": _bert, "bilstm": _bilstm, "elmo": _elmo, "gpt": _gpt, "rnn_lm": _rnn, "ngram": _ngram, "word2vec": _word2vec, "vectors": _vectors}


def test_every_known_kind_has_a_tiny_model_here():
    assert sorted(MAKERS) == sorted(FAMILY_MODULES) == kinds()


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_load_model_reads_each_kind(kind, tmp_path):
    MAKERS[kind](tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.family is get_family(kind) and loaded.config["kind"] == kind
    assert loaded.model is not None
    if kind in kinds(decodes=True):
        lm = loaded.next_token()
        logits, _ = lm.start([loaded.codec.encode("1 2" if kind == "gpt" else "to")], 3)
        assert logits.shape == (1, loaded.codec.vocab_size)
    else:
        with pytest.raises(ModelDirError, match="does not decode token by token"):
            loaded.next_token()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "ffnn"])
def test_every_rnn_cell_is_one_kind(cell, tmp_path):
    _rnn(tmp_path / "m", cell)
    loaded = load_model(tmp_path / "m")
    assert loaded.config["model"]["cell"] == cell and loaded.codec.level == "char"
    assert not loaded.model.training


def _edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_unknown_kind_is_one_line_naming_found_and_supported(tmp_path):
    _ngram(tmp_path / "m")
    _edit_config(tmp_path / "m", kind="bert9")
    with pytest.raises(ModelDirError) as info:
        load_model(tmp_path / "m")
    message = str(info.value)
    assert "\n" not in message and "kind 'bert9'" in message and str(tmp_path / "m" / "config.json") in message
    assert "supported: bert, bilstm, elmo, gpt, ngram, rnn_lm, vectors, word2vec" in message


def test_unknown_format_version_is_one_line_naming_found_and_supported(tmp_path):
    _gpt(tmp_path / "m")
    _edit_config(tmp_path / "m", format_version=7)
    with pytest.raises(ModelDirError) as info:
        load_model(tmp_path / "m")
    message = str(info.value)
    assert "\n" not in message
    assert message == f"{tmp_path / 'm' / 'config.json'}: format_version 7 of kind 'gpt' is not supported (supported: 1)"


def test_a_kind_restriction_names_what_was_found(tmp_path):
    _ngram(tmp_path / "m")
    with pytest.raises(ModelDirError, match="holds a 'ngram' model, expected 'rnn_lm'"):
        load_model(tmp_path / "m", kind="rnn_lm")


def test_a_family_registered_elsewhere_loads_without_touching_the_registry(tmp_path):
    from dlnlp.io.modeldir import make_config, read_config, write_config

    def load(directory, device):
        return {"toy": True}, read_config(directory, "toy-lm", (2,))

    register(Family("toy-lm", load, (2,)))
    try:
        (tmp_path / "m").mkdir()
        write_config(tmp_path / "m", make_config("toy-lm", 2))
        loaded = load_model(tmp_path / "m")
        assert loaded.model == {"toy": True} and loaded.codec is None and "toy-lm" in kinds()
    finally:
        from dlnlp.models import registry

        registry._FAMILIES.pop("toy-lm")


def test_word_vectors_come_from_any_directory_whose_model_has_them(tmp_path):
    from dlnlp.io.vectors import load_vectors
    from dlnlp.models.vectors import load_word_vectors

    _word2vec(tmp_path / "w2v")
    _vectors(tmp_path / "vec")
    from_w2v = load_word_vectors(tmp_path / "w2v")
    assert from_w2v.words == load_vectors(tmp_path / "w2v").words
    assert np.array_equal(from_w2v.vectors, load_vectors(tmp_path / "w2v").vectors)
    assert load_word_vectors(tmp_path / "vec", limit=1).words == ["cat"]
    _gpt(tmp_path / "gpt")
    with pytest.raises(ModelDirError, match="a 'gpt' model directory without word vectors"):
        load_word_vectors(tmp_path / "gpt")
