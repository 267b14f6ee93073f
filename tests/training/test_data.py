"""Token streams: spooling to memory-mapped files, BPTT streams, random windows, splits."""

from __future__ import annotations

import numpy as np
import pytest

from dlnlp.errors import InputError
from dlnlp.io.shards import TokenStream
from dlnlp.tokenization.char import CharVocab
from dlnlp.training.data import RandomWindows, StreamBatches, load_lm_data, prepare_lm_data


def test_stream_batches_are_contiguous_per_stream_and_shifted_by_one():
    tokens = np.arange(103, dtype=np.uint16)
    streams = StreamBatches(tokens, batch_size=4, seq_len=7)
    assert streams.stream_len == 25 and streams.batches_per_epoch == 4  # windows of 7, 7, 7, 4
    xs, ys, resets = [], [], []
    for _ in range(streams.batches_per_epoch):
        (x, y), reset = streams.next_batch()
        xs.append(x)
        ys.append(y)
        resets.append(reset)
    assert resets == [True, False, False, False]
    assert [x.shape[1] for x in xs] == [7, 7, 7, 4]
    x_all = np.concatenate([x.numpy() for x in xs], axis=1)
    y_all = np.concatenate([y.numpy() for y in ys], axis=1)
    for b in range(4):  # stream b reads tokens b*25 .. b*25+24, each window continuing the last
        assert x_all[b].tolist() == list(range(b * 25, b * 25 + 25))
        assert y_all[b].tolist() == list(range(b * 25 + 1, b * 25 + 26))
    assert streams.epoch == 1 and streams.next_batch()[1] is True


def test_stream_batches_state_dict_restores_the_position():
    tokens = np.arange(200, dtype=np.uint16)
    a = StreamBatches(tokens, 3, 5)
    for _ in range(6):
        a.next_batch()
    b = StreamBatches(tokens, 3, 5)
    b.load_state_dict(a.state_dict())
    (xa, _), _ = a.next_batch()
    (xb, _), _ = b.next_batch()
    assert xa.tolist() == xb.tolist()


def test_too_few_tokens_for_the_streams_is_an_input_error():
    with pytest.raises(InputError, match="too few"):
        StreamBatches(np.arange(5, dtype=np.uint16), 8, 4)
    # evaluation of a short text uses fewer streams, each at least one window long
    assert StreamBatches(np.arange(5, dtype=np.uint16), 8, 4, clamp=True).batch_size == 1
    assert StreamBatches(np.arange(101, dtype=np.uint16), 32, 10, clamp=True).batch_size == 10


def test_random_windows_shift_determinism_and_full_eval_coverage():
    tokens = np.arange(1000, dtype=np.uint32) % 301
    a, b = RandomWindows(tokens, 4, 16, seed=1), RandomWindows(tokens, 4, 16, seed=1)
    (xa, ya), _ = a.next_batch()
    (xb, _), _ = b.next_batch()
    assert xa.tolist() == xb.tolist()
    assert ((xa[:, 1:] == ya[:, :-1]).all())
    covered = sum(y.numel() for _, y in RandomWindows(tokens, 4, 16).iter_eval())
    assert covered == len(tokens) - 1  # every token but the first predicted exactly once


def test_char_spooling_round_trips_and_splits_last_ten_percent(tmp_path):
    text = "".join(f"line {i}: ünïcödé ✓\n" for i in range(200))
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    data = prepare_lm_data([str(corpus)], tmp_path / "run", level="char")
    vocab = data.vocab
    assert isinstance(vocab, CharVocab) and data.vocab_size == len(set(text)) + 1
    assert data.train.dtype == np.uint16 and isinstance(data.train, TokenStream)  # read from disk, not loaded
    assert len(data.train) == int(len(text) * 0.9)
    assert vocab.decode(data.train.tolist()) + vocab.decode(data.val.tolist()) == text
    again = load_lm_data(tmp_path / "run")
    assert np.array_equal(again.val, data.val)


def test_val_file_and_ids_input(tmp_path):
    (tmp_path / "t.ids").write_text("1 2 3\n4 5\n\n6\n")
    (tmp_path / "v.ids").write_text("7 8\n9\n")
    data = prepare_lm_data([str(tmp_path / "t.ids")], tmp_path / "run", level="ids",
                           val=tmp_path / "v.ids")
    assert data.train.tolist() == [1, 2, 3, 4, 5, 6]
    assert data.val.tolist() == [7, 8, 9] and data.vocab_size == 10
    with pytest.raises(InputError, match="outside the vocabulary"):
        prepare_lm_data([str(tmp_path / "t.ids")], tmp_path / "run2", level="ids", vocab_size=5)


def test_an_id_beyond_the_largest_vocabulary_fails_naming_the_id_line_and_limit(tmp_path):
    # Issue #19: piped id 4000000000 made a 4e9-row embedding; the limit is MAX_VOCAB_SIZE - 1.
    from dlnlp.training.data import MAX_VOCAB_SIZE

    (tmp_path / "t.ids").write_text("1 2 3\n4 4000000000 5\n6 7\n")
    with pytest.raises(InputError) as info:
        prepare_lm_data([str(tmp_path / "t.ids")], tmp_path / "run", level="ids")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 't.ids'}:2: token id 4000000000 is above the largest id accepted")
    assert f"{MAX_VOCAB_SIZE - 1:,}" in message
    (tmp_path / "ok.ids").write_text(f"1 {MAX_VOCAB_SIZE - 1}\n2 3\n")  # the largest id itself is accepted
    data = prepare_lm_data([str(tmp_path / "ok.ids")], tmp_path / "run2", level="ids", val_fraction=0)
    assert data.vocab_size == MAX_VOCAB_SIZE
    with pytest.raises(InputError, match="--vocab-size must be in"):
        prepare_lm_data([str(tmp_path / "ok.ids")], tmp_path / "run3", level="ids", vocab_size=4_000_000_001)


def test_char_vocab_unknowns_and_save_load(tmp_path):
    vocab = CharVocab.build("abca\n")
    # id 0 is <unk>; then code-point order: "\n" 1, "a" 2, "b" 3, "c" 4
    assert vocab.encode("cab\n") == [4, 2, 3, 1]
    assert vocab.encode("xa") == [0, 2] and vocab.unknown_count == 1
    assert vocab.decode([0, 2]) == "\ufffda"
    with pytest.raises(InputError, match="'x'"):
        vocab.encode("x", errors="strict")
    vocab.save(tmp_path)
    assert CharVocab.load(tmp_path).chars == vocab.chars


def test_text_is_read_in_chunks_of_characters_not_of_lines(tmp_path, monkeypatch):
    # 4096 lines made one chunk whatever their length: with a 50 MB line cut into pieces, 50 MB at once
    # (1.3 GB in rnn train); chunks are now about a million characters.
    from dlnlp.io.corpus import CorpusOptions
    from dlnlp.training.data import _text_chunks

    monkeypatch.setenv("DLNLP_MAX_LINE_CHARS", "10000")
    path = tmp_path / "c.txt"
    text = ("x" * 9000 + "\n") * 300 + "y" * 50_000 + "\n"
    path.write_text(text)
    chunks = list(_text_chunks([str(path)], CorpusOptions()))
    assert max(map(len, chunks)) < (1 << 20) + 10_001
    assert "".join(chunks) == ("x" * 9000 + "\n") * 300 + ("y" * 10_000 + "\n") * 5
