"""train_tokenizer_on_inputs: sentencepiece reads plain files itself, with the model the stream gives."""

import pytest

import dlnlp.tokenization.train as train_module
from dlnlp.errors import InputError
from dlnlp.io.corpus import builtin_corpus_text, iter_line_blocks
from dlnlp.tokenization.train import TrainSpec, train_tokenizer_from_blocks, train_tokenizer_on_inputs


def pieces_and_scores(model: bytes) -> list[tuple[str, float]]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=model)
    return [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]


@pytest.fixture(scope="module")
def corpus_lines() -> list[str]:
    # Blank and whitespace-only lines included: the file reader sees them, the stream skips blank ones.
    return builtin_corpus_text("python-help").split("\n")[:4000]


@pytest.fixture
def native_calls(monkeypatch) -> list:
    calls = []
    real = train_module.train_sentencepiece_files

    def spy(paths, spec):
        calls.append(list(paths))
        return real(paths, spec)

    monkeypatch.setattr(train_module, "train_sentencepiece_files", spy)
    return calls


@pytest.mark.parametrize("model,vocab_size", [("bpe", 600), ("unigram", 500)])
def test_sentencepiece_reads_plain_files_itself_and_learns_what_the_stream_learns(
        tmp_path, corpus_lines, native_calls, model, vocab_size):
    half = len(corpus_lines) // 2
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("\n".join(corpus_lines[:half]) + "\n", encoding="utf-8")
    second.write_text("\n".join(corpus_lines[half:]), encoding="utf-8")  # no final newline
    spec = TrainSpec(model=model, engine="sentencepiece", vocab_size=vocab_size)
    started = []
    trained = train_tokenizer_on_inputs([str(first), str(second)], spec, on_start=lambda: started.append(True))
    assert native_calls == [[str(first), str(second)]] and started == [True]
    streamed = train_tokenizer_from_blocks(iter_line_blocks([str(first), str(second)]), spec)
    assert pieces_and_scores(trained.data) == pieces_and_scores(streamed)
    assert trained.lines == len(corpus_lines)
    assert trained.chars == sum(map(len, corpus_lines))


def test_carriage_returns_are_streamed_so_a_file_trains_like_stdin(tmp_path, corpus_lines, native_calls,
                                                                    monkeypatch):
    import io
    import sys

    data = ("\r\n".join(corpus_lines) + "\r\n").encode("utf-8")
    path = tmp_path / "crlf.txt"
    path.write_bytes(data)
    spec = TrainSpec(model="bpe", engine="sentencepiece", vocab_size=600)
    from_file = train_tokenizer_on_inputs([str(path)], spec)
    assert native_calls == []
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    from_stdin = train_tokenizer_on_inputs(["-"], spec)
    assert pieces_and_scores(from_file.data) == pieces_and_scores(from_stdin.data)
    assert from_file.lines == from_stdin.lines == len(corpus_lines)


def test_bad_plain_files_fail_before_training_starts(tmp_path, native_calls):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\n\xc3\x28 broken\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    started = []
    for path, message in ((bad, r"bad.txt:2: not valid UTF-8"), (empty, "empty")):
        for engine in ("sentencepiece", "hf"):
            with pytest.raises(InputError, match=message):
                train_tokenizer_on_inputs([str(path)], TrainSpec(engine=engine, vocab_size=300),
                                          on_start=lambda: started.append(True))
    assert started == [] and native_calls == []
