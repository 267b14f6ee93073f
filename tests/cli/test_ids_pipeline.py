"""`tokenize encode --format ids | gpt/rnn train - --ids -t TOK` trains on the stream the text gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli.test_gpt import TINY
from tests.conftest import run_main

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(40)) + "\nend\n"
RNN = ["--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len", "8", "--batch-size", "2", "-q",
       "--device", "cpu", "--eval-interval", "0", "--keep-data"]
TINY = [*TINY, "--keep-data"]  # the tests read the spooled tokens in DIR/data


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    (root / "text.txt").write_text(TEXT)
    code, _, err = run_main("tokenize", "train", root / "text.txt", "--model", "bpe", "--vocab-size", "300",
                            "--out", root / "tok.json", "--quiet")
    assert code == 0, err
    return root


def _encode(root, *extra) -> str:
    code, ids, err = run_main("tokenize", "encode", root / "text.txt", "-t", root / "tok.json", *extra)
    assert code == 0, err
    return ids


def _tokens(run) -> np.ndarray:
    meta = json.loads((run / "data" / "meta.json").read_text())
    return np.fromfile(run / "data" / "tokens0.bin", dtype=meta["dtype"])


def test_gpt_on_piped_ids_trains_on_the_text_stream_and_reads_text(tok, tmp_path):
    code, _, err = run_main("gpt", "train", tok / "text.txt", "-t", tok / "tok.json", *TINY, "--max-steps", "2",
                            "--out", tmp_path / "text")
    assert code == 0, err
    code, _, err = run_main("gpt", "train", "-", "--ids", "-t", tok / "tok.json", *TINY, "--max-steps", "2",
                            "--out", tmp_path / "ids", input=_encode(tok))
    assert code == 0 and err == "", err
    text, ids = _tokens(tmp_path / "text"), _tokens(tmp_path / "ids")
    eos = json.loads((tmp_path / "text" / "config.json").read_text())["eos_id"]
    assert eos is not None and (text == eos).sum() == TEXT.count("\n")  # one end-of-text per line, blank included
    np.testing.assert_array_equal(ids, text)  # was the lines glued: no end-of-text at all
    config = json.loads((tmp_path / "ids" / "config.json").read_text())
    assert config["level"] == "tokenizer" and config["eos_id"] == eos
    assert (tmp_path / "ids" / "tokenizer.json").is_file()
    code, out, err = run_main("generate", tmp_path / "ids", "--prompt", "the quick", "--max-new-tokens", "3",
                              "--strategy", "greedy", "--device", "cpu")
    assert code == 0, err
    assert out.startswith("the quick")


def test_lines_ended_by_add_eos_get_no_second_end_of_text(tok, tmp_path):
    code, _, err = run_main("gpt", "train", "-", "--ids", "-t", tok / "tok.json", *TINY, "--max-steps", "1",
                            "--out", tmp_path / "plain", input=_encode(tok))
    assert code == 0, err
    framed = _encode(tok, "--add-eos")
    eos = json.loads((tmp_path / "plain" / "config.json").read_text())["eos_id"]
    assert all(line.split()[-1] == str(eos) for line in framed.splitlines())
    assert framed.splitlines()[-2] == str(eos)  # the blank line
    code, _, err = run_main("gpt", "train", "-", "--ids", "-t", tok / "tok.json", *TINY, "--max-steps", "1",
                            "--out", tmp_path / "framed", input=framed)
    assert code == 0, err
    np.testing.assert_array_equal(_tokens(tmp_path / "framed"), _tokens(tmp_path / "plain"))


def test_add_bos_and_tokens_format(tok):
    # the BPE tokenizer has <|endoftext|> and no beginning-of-text token
    assert _encode(tok, "--add-eos", "--format", "tokens").splitlines()[0].endswith(" <|endoftext|>")
    code, out, err = run_main("tokenize", "encode", tok / "text.txt", "-t", tok / "tok.json", "--add-bos")
    assert (code, out) == (1, "") and err.startswith("dlnlp: error: --add-bos: ") and "no beginning-of-text" in err


def test_rnn_on_piped_ids_records_its_tokenizer(tok, tmp_path):
    code, _, err = run_main("rnn", "train", "-", "--ids", "-t", tok / "tok.json", *RNN, "--max-steps", "1",
                            "--out", tmp_path / "ids", input=_encode(tok))
    assert code == 0, err
    code, _, err = run_main("rnn", "train", tok / "text.txt", "-t", tok / "tok.json", *RNN, "--max-steps", "1",
                            "--out", tmp_path / "text")
    assert code == 0, err
    np.testing.assert_array_equal(_tokens(tmp_path / "ids"), _tokens(tmp_path / "text"))
    assert json.loads((tmp_path / "ids" / "config.json").read_text())["level"] == "tokenizer"
    code, out, err = run_main("rnn", "sample", tmp_path / "ids", "--prime", "the", "--length", "3",
                              "--device", "cpu")
    assert code == 0 and out.startswith("the"), err


def test_eos_id_separates_lines_without_a_tokenizer(tmp_path):
    code, _, err = run_main("gpt", "train", "-", "--ids", "--eos-id", "0", *TINY, "--max-steps", "1",
                            "--out", tmp_path / "m", input="5 6 7\n8 9 0\n\n4 4\n" * 10)
    assert code == 0 and err == "", err
    assert _tokens(tmp_path / "m")[:11].tolist() == [5, 6, 7, 0, 8, 9, 0, 0, 4, 4, 0]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["eos_id"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["rnn", "train", "-", "--ids", "--tokenizer", "char"], "--tokenizer char cannot be used with --ids"),
    (["gpt", "train", "-", "--ids", "--char"], "--char cannot be used with --ids"),
    (["gpt", "train", "-", "--eos-id", "3"], "--eos-id needs --ids"),
])
def test_conflicting_text_options_are_refused(tmp_path, args, message):
    code, _, err = run_main(*args, "--out", tmp_path / "m", "--max-steps", "1", input="1 2 3\n" * 20)
    assert code == 1 and err.startswith(f"dlnlp: error: {message}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m").exists()


def test_ids_without_a_separator_warn(tmp_path):
    code, _, err = run_main("gpt", "train", "-", "--ids", *TINY, "--max-steps", "1", "--out", tmp_path / "m",
                            input="1 2 3\n" * 20)
    assert code == 0 and err.startswith("dlnlp: warning: --ids without --tokenizer or --eos-id"), err
