"""The one text codec: round trips per level, the streaming decoder, end-of-text handling."""

from __future__ import annotations

import pytest

from dlnlp.errors import InputError, ModelDirError
from dlnlp.tokenization import load_tokenizer
from dlnlp.tokenization.char import CharVocab
from dlnlp.tokenization.text_codec import CharCodec, IdsCodec, TokenizerCodec, codec_for, load_codec

MULTI_BYTE = "naïve café — 東京 😀 ok"


def test_char_round_trip_and_training_encoding():
    codec = CharCodec(CharVocab.build(MULTI_BYTE + "\n"))
    assert codec.decode(codec.encode(MULTI_BYTE)) == MULTI_BYTE
    assert codec.encode_lines(["ok", "é"]).tolist() == codec.encode("ok\né\n")
    assert codec.encode("") == codec.encode("\n")  # an empty prompt starts after a line break
    with pytest.raises(InputError, match="'Z'"):
        codec.encode("Zoo")


def test_tokenizer_round_trip_and_end_of_text_after_every_line(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    codec = TokenizerCodec(tok, eos_id=5)
    ids = codec.encode(MULTI_BYTE)
    assert codec.decode(ids) == MULTI_BYTE and codec.decode([*ids, 5]) == MULTI_BYTE  # a final eos is dropped
    assert codec.encode_lines(["a b", "c"]).tolist() == [*tok.encode("a b"), 5, *tok.encode("c"), 5]
    assert codec.encode("") == [5]  # an empty prompt starts a document
    assert TokenizerCodec(tok, None).eos_id == tok.eos_id


def test_ids_round_trip_range_and_join():
    codec = IdsCodec(10)
    assert codec.encode("1 2 9") == [1, 2, 9] and codec.decode([1, 2, 9]) == "1 2 9"
    assert codec.encode_lines(["1 2", "", "3"]).tolist() == [1, 2, 3]
    assert codec.join("1 2", "3 4") == "1 2 3 4" and codec.join("", "3") == "3"
    with pytest.raises(InputError, match="--prompt: id 10 is outside the vocabulary"):
        codec.encode("1 10", "--prompt")
    with pytest.raises(InputError, match="no end-of-text token"):
        codec.encode("")
    assert IdsCodec(10, eos_id=0).encode("") == [0]


def _streamed(codec, prompt_ids, tokens):
    stream = codec.stream(prompt_ids)
    pieces = [stream.push(t) for t in tokens]
    return "".join(pieces) + stream.finish(), pieces


@pytest.mark.parametrize("fixture", ["bytelevel_path", "sp_bpe_path"])
def test_streaming_decoder_equals_whole_decode_on_multi_byte_text(request, fixture):
    tok = load_tokenizer(request.getfixturevalue(fixture))
    codec = TokenizerCodec(tok)
    prompt = codec.encode("def f():")
    tokens = tok.encode(" " + MULTI_BYTE + " return 1")
    text, pieces = _streamed(codec, prompt, tokens)
    assert text == codec.continuation(prompt, tokens)
    assert not any("\ufffd" in piece for piece in pieces)  # half a character is never printed


def test_streaming_decoder_splits_characters_over_byte_tokens(bytelevel_path):
    tok = load_tokenizer(bytelevel_path)
    codec = TokenizerCodec(tok)
    tokens = tok.encode("😀")
    assert len(tokens) > 1  # an unseen emoji is several byte tokens
    text, pieces = _streamed(codec, codec.encode("a"), tokens)
    assert text == codec.continuation(codec.encode("a"), tokens) and "" in pieces[:-1]


def test_streaming_skips_end_of_text_and_ids_print_one_by_one():
    codec = IdsCodec(10, eos_id=0)
    assert _streamed(codec, [1], [3, 4, 0]) == (" 3 4", [" 3", " 4", ""])
    chars = CharCodec(CharVocab.build("ab"))
    assert _streamed(chars, chars.encode("a"), chars.encode("ba"))[0] == "ba"


def test_load_codec_reads_the_level_from_config(tmp_path, bytelevel_path):
    import shutil

    CharVocab.build("xy").save(tmp_path)
    assert load_codec(tmp_path, {"level": "char"}, 3).decode([1, 2]) == "xy"
    with pytest.raises(ModelDirError, match="no 'level'"):
        load_codec(tmp_path, {}, 3)
    with pytest.raises(ModelDirError, match="level 'words' is not one of char, tokenizer, ids"):
        load_codec(tmp_path, {"level": "words"}, 3)
    assert load_codec(tmp_path, {"eos_id": 2}, 7, guess=True).level == "ids"  # no tokenizer file
    shutil.copyfile(bytelevel_path, tmp_path / "tokenizer.json")
    guessed = load_codec(tmp_path, {"eos_id": 2}, 7, guess=True)
    assert guessed.level == "tokenizer" and guessed.eos_id == 2
    assert codec_for("ids", vocab_size=4).vocab_size == 4
