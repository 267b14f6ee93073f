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


# --- over-long lines and sentencepiece's messages (issue 19, items 7 and 12) -----------------------
def test_a_line_over_the_limit_is_cut_and_streamed_not_dropped_by_sentencepiece(tmp_path, corpus_lines,
                                                                                native_calls):
    from dlnlp.io.corpus import MAX_LINE_CHARS

    # One line of 1.5M characters: sentencepiece's file reader skipped it (longer than max_sentence_length)
    # and found nothing to learn from; cut into pieces of the limit and streamed, every piece is learned.
    text = " ".join(line for line in corpus_lines if line.strip())
    line = (text * (MAX_LINE_CHARS * 3 // 2 // len(text) + 1))[: MAX_LINE_CHARS * 3 // 2]
    path = tmp_path / "one-line.txt"
    path.write_text(line + "\n", encoding="utf-8")
    spec = TrainSpec(model="bpe", engine="sentencepiece", vocab_size=300)
    trained = train_tokenizer_on_inputs([str(path)], spec)
    assert native_calls == []
    assert (trained.lines, trained.chars) == (2, len(line))
    pieces = [line[:MAX_LINE_CHARS], line[MAX_LINE_CHARS:]]
    assert pieces_and_scores(trained.data) == pieces_and_scores(train_tokenizer_from_blocks([pieces], spec))


def test_sentencepiece_failures_say_what_to_change():
    from dlnlp.errors import DlnlpError
    from dlnlp.tokenization.train import sentencepiece_message, train_sentencepiece

    checks = [
        (dict(vocab_size=2), "--vocab-size must be more than 3 for sentencepiece (<unk>, <s>, </s> take 3 ids), got 2"),
        (dict(vocab_size=4, special_tokens=["<a>", "<b>"]), "--vocab-size must be more than 5 for sentencepiece"),
        (dict(character_coverage=0.5), "--character-coverage must be between 0.98 and 1 for sentencepiece, got 0.5"),
        (dict(special_tokens=["<a>", ""]), "--special must not be empty"),
    ]
    for options, message in checks:
        with pytest.raises(DlnlpError) as info:
            TrainSpec(engine="sentencepiece", **options)
        assert str(info.value).startswith(message)
    # a check of sentencepiece's own that fails with an empty message: the check and the options to look at
    lines = ["some text to learn from"] * 20
    with pytest.raises(DlnlpError) as info:
        train_sentencepiece([lines], TrainSpec(engine="sentencepiece", vocab_size=40, extra={"num_threads": 0}))
    assert str(info.value).startswith("sentencepiece: training failed on an internal check (trainer_spec.num_threads()")
    assert "--workers" in str(info.value)
    # its own messages lose the source location, and name the options as dlnlp spells them
    error = RuntimeError("INTERNAL: src/trainer_interface.cc(638) [(required <= vocab_size)] Vocabulary size is "
                         "smaller than required_chars. 3 vs 70. Increase vocab_size or decrease character_coverage "
                         "with --character_coverage option.")
    assert sentencepiece_message(error) == ("Vocabulary size is smaller than required_chars. 3 vs 70. Increase "
                                            "--vocab-size or decrease --character-coverage.")
    assert sentencepiece_message(RuntimeError("INTERNAL: a is already defined.")) == "a is already defined."
    assert sentencepiece_message(RuntimeError("")) != ""
    # more threads than sentencepiece takes are capped, not an error
    assert TrainSpec(engine="sentencepiece", threads=100_000).num_threads() == 100_000
    from dlnlp.tokenization.train import sentencepiece_options

    assert sentencepiece_options(TrainSpec(engine="sentencepiece", threads=100_000))["num_threads"] == 1024
