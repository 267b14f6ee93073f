"""load_tokenizer over both engines, training options, special ids, exact byte-level round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnlp.errors import DlnlpError, InputError
from dlnlp.io.corpus import iter_lines
from dlnlp.tokenization import (
    format_id_line,
    format_id_lines,
    load_tokenizer,
    looks_like_ids,
    parse_id_line,
    read_id_lines,
)
from dlnlp.tokenization.train import TrainSpec, train_tokenizer

CORPUS = "builtin:python-help"


def train_to(tmp_path, name, **spec):
    path = tmp_path / name
    path.write_bytes(train_tokenizer(iter_lines([CORPUS]), TrainSpec(**spec)))
    return path


def test_bytelevel_file_loads_unchanged_in_hf_and_matches_the_wrapper(bytelevel_path):
    from tokenizers import Tokenizer as HF

    hf = HF.from_file(bytelevel_path)
    tok = load_tokenizer(bytelevel_path)
    text = "def main():\n    return 42  "
    assert tok.encode(text) == hf.encode(text).ids
    assert tok.vocab_size == hf.get_vocab_size() == 1000
    assert tok.is_byte_level and tok.model_type == "BPE" and tok.engine == "hf"
    assert tok.eos_id == hf.token_to_id("<|endoftext|>") == 0
    assert tok.bos_id is None and tok.pad_id is None and tok.unk_id is None
    assert len(tok.merges()) == 1000 - 1 - 256  # specials, then the 256 byte symbols, then merges


def test_api_lookups(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    ids = tok.encode("return")
    assert [tok.id_to_token(i) for i in ids] == tok.tokens("return")
    assert tok.token_to_id(tok.id_to_token(ids[0])) == ids[0]
    assert tok.token_to_id("certainly-not-a-token-\u2603") is None
    assert tok.id_to_token(10**6) is None
    assert tok.encode_batch(["a b", "", "c"]) == [tok.encode("a b"), [], tok.encode("c")]
    assert tok.decode_batch(tok.encode_batch(["x y", "z"])) == ["x y", "z"]
    with pytest.raises(InputError, match="out of range"):
        tok.decode([10**6])


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\n")))
def test_bytelevel_round_trip_is_exact_for_any_text(bytelevel_path, text):
    tok = _cached(bytelevel_path)
    assert tok.decode(tok.encode(text)) == text


_CACHE: dict = {}


def _cached(path):
    if path not in _CACHE:
        _CACHE[path] = load_tokenizer(path)
    return _CACHE[path]


def test_special_token_in_text_round_trips(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    text = "a<|endoftext|>b"
    ids = tok.encode(text)
    assert tok.eos_id in ids
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "ab"


@pytest.mark.parametrize("model,unk,special", [
    ("char-bpe", "<unk>", ["<unk>", "<pad>", "<s>", "</s>"]),
    ("wordpiece", "[UNK]", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
    ("unigram", "<unk>", ["<unk>", "<pad>", "<s>", "</s>"]),
])
def test_hf_models_train_and_load(tmp_path, model, unk, special):
    from tokenizers import Tokenizer as HF

    path = train_to(tmp_path, f"{model}.json", model=model, vocab_size=600)
    hf = HF.from_file(str(path))  # the library loads it unchanged
    tok = load_tokenizer(path)
    assert tok.vocab_size == 600
    assert tok.unk_id == hf.token_to_id(unk)
    assert list(tok.special_tokens) == special
    assert tok.pad_id == hf.token_to_id(special[0] if model == "wordpiece" else "<pad>")
    ids = tok.encode("the value \u2603")  # a snowman is not in the corpus: unknown
    assert tok.unk_id in ids
    assert "the value" in tok.decode(ids)


def test_char_bpe_keeps_spaces_on_decode(tmp_path):
    tok = load_tokenizer(train_to(tmp_path, "c.json", model="char-bpe", vocab_size=500))
    assert tok.decode(tok.encode("return the value")) == "return the value"


def test_normalization_and_lowercase(tmp_path):
    tok = load_tokenizer(train_to(tmp_path, "n.json", model="bpe", vocab_size=400, normalize="nfkc",
                                  lowercase=True))
    assert tok.decode(tok.encode("ＲＥＴＵＲＮ ﬁle")) == "return file"
    raw = load_tokenizer(train_to(tmp_path, "r.json", model="bpe", vocab_size=400))
    assert raw.decode(raw.encode("ＲＥＴＵＲＮ")) == "ＲＥＴＵＲＮ"


def test_special_tokens_option(tmp_path):
    tok = load_tokenizer(train_to(tmp_path, "s.json", model="bpe", vocab_size=400,
                                  special_tokens=["<pad>", "<s>", "</s>"]))
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    none = load_tokenizer(train_to(tmp_path, "x.json", model="bpe", vocab_size=400, special_tokens=[]))
    assert none.special_tokens == {} and none.eos_id is None


def test_sentencepiece_file_loads_in_sentencepiece(sp_bpe_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=sp_bpe_path)
    tok = load_tokenizer(sp_bpe_path)
    text = "def main():  return 42"
    assert tok.engine == "sentencepiece" and tok.model_type == "bpe"
    assert tok.encode(text) == sp.encode(text)
    assert tok.decode(tok.encode(text)) == text  # identity normalization keeps the spaces
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, None)
    assert tok.vocab_size == 800
    assert tok.token_to_id("<s>") == 1 and tok.token_to_id("no-such-piece-\u2603") is None


def test_sentencepiece_unigram_with_user_symbols_and_nfkc(tmp_path):
    path = train_to(tmp_path, "u.model", model="unigram", engine="sentencepiece", vocab_size=700,
                    special_tokens=["<mask>"], normalize="nfkc", lowercase=True)
    tok = load_tokenizer(path)
    assert tok.model_type == "unigram"
    assert tok.special_tokens["<mask>"] == 3
    assert tok.decode(tok.encode("ＲＥＴＵＲＮ")) == "return"


def test_bad_specs_are_user_errors():
    with pytest.raises(DlnlpError, match="--model"):
        TrainSpec(model="nope")
    with pytest.raises(DlnlpError, match="sentencepiece"):
        TrainSpec(model="wordpiece", engine="sentencepiece")
    with pytest.raises(DlnlpError, match="--normalize"):
        TrainSpec(normalize="nfx")


@pytest.mark.parametrize("name,content,message", [
    ("bad.json", b"", "empty file"),
    ("bad.json", b"{\"version\": \"1.0\", \"model\": 3}", "not a valid tokenizer.json"),
    ("bad.json", b"{\"trunc", "not a valid tokenizer.json"),
    ("bad.model", b"\x00\x01garbage", "not a sentencepiece model"),
    ("bad", b"\x00\x01garbage", "not a sentencepiece model"),
])
def test_corrupt_tokenizer_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_tokenizer(path)


def test_missing_tokenizer_and_directory_lookup(tmp_path, bytelevel_path):
    with pytest.raises(InputError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(InputError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(Path(bytelevel_path).read_bytes())
    assert load_tokenizer(tmp_path).vocab_size == 1000


def test_ids_format_helpers(tmp_path):
    assert format_id_line([5, 17, 2]) == "5 17 2"
    assert format_id_lines([[1], [], [2, 3]]) == "1\n\n2 3\n"
    assert parse_id_line("5 17 2") == [5, 17, 2] and parse_id_line("") == []
    assert looks_like_ids("1 2 3") and not looks_like_ids("one 2") and not looks_like_ids("")
    with pytest.raises(InputError, match=r"f.ids:2: not a line of token ids \('x'\)"):
        parse_id_line("1 x", where="f.ids", line_number=2)
    path = tmp_path / "c.ids"
    path.write_text("1 2\n\n3\n")
    assert list(read_id_lines([str(path)])) == [[1, 2], [], [3]]
    path.write_text("1 2\nhello\n")
    with pytest.raises(InputError, match=":2:"):
        list(read_id_lines([str(path)]))


def test_stats_describe(bytelevel_path):
    from dlnlp.tokenization.stats import describe, format_description

    tok = load_tokenizer(bytelevel_path)
    info = describe(tok, "a b", ["one two", "", "three"])
    assert info["corpus"]["words"] == 3
    assert info["corpus"]["tokens"] == sum(len(tok.encode(x)) for x in ["one two", "three"])
    assert info["corpus"]["fertility"] == pytest.approx(info["corpus"]["tokens"] / 3)
    assert info["merges"] == len(tok.merges())
    text = format_description(info)
    assert "vocab size     1000" in text and "fertility" in text
    json.dumps(info)
