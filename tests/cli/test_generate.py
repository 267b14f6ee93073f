"""``dlnlp generate``: prompts from options and stdin, strategies, JSON output, streaming, errors."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_gpt import TINY, dlnlp
from tests.conftest import run_cli

TEXT = "".join(f"to be or not to be, line {i}\n" for i in range(200))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    corpus = root / "text.txt"
    corpus.write_text(TEXT)
    run_cli("gpt", "train", str(corpus), "--char", *TINY, "--max-steps", "40", "--lr", "3e-3",
            "--out", str(root / "run"), check=True)
    return root / "run"


def test_greedy_json_with_prompt(model_dir, capsys):
    code, out, err = dlnlp(capsys, "generate", model_dir, "--prompt", "to be", "--strategy", "greedy",
                           "--max-new-tokens", "12", "--json", "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert result["prompt"] == "to be" and len(result["tokens"]) == 12  # character model: no end-of-text
    assert result["hypotheses"][0]["text"] == result["text"] and len(result["text"]) == 12
    assert result["score"] == pytest.approx(result["logprob"] / 12)


def test_beam_n_best_from_stdin(model_dir, capsys, monkeypatch):
    code, out, err = dlnlp(capsys, "generate", model_dir, "--strategy", "beam", "--num-beams", "4",
                           "--num-return", "3", "--max-new-tokens", "8", "--json", "--device", "cpu",
                           stdin="to\nor not\n", monkeypatch=monkeypatch)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["prompt"] for r in lines] == ["to", "or not"]
    for r in lines:
        scores = [h["score"] for h in r["hypotheses"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert len({tuple(h["tokens"]) for h in r["hypotheses"]}) == 3


def test_sampling_streams_and_is_seeded(model_dir, capsys):
    args = ["generate", model_dir, "--prompt", "be", "--strategy", "sample", "--top-k", "5", "--temperature", "0.8",
            "--max-new-tokens", "20", "--seed", "3", "--device", "cpu"]
    code, first, _ = dlnlp(capsys, *args)
    code2, second, _ = dlnlp(capsys, *args)
    assert code == code2 == 0 and first == second
    assert first.startswith("be") and len(first) == 2 + 20 + 1


def test_pipe_one_prompt_per_line(model_dir):
    result = run_cli("generate", str(model_dir), "--strategy", "greedy", "--max-new-tokens", "5", "--device", "cpu",
                     input="to\nnot\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].startswith("to") and any(line.startswith("not") for line in lines[1:])


def test_errors_are_one_line(model_dir, capsys, tmp_path):
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "x", "--strategy", "beam", "--num-beams", "2",
                         "--num-return", "3")
    assert code == 1 and "--num-return 3 cannot exceed --num-beams 2" in err
    code, _, err = dlnlp(capsys, "generate", tmp_path / "nothing", "--prompt", "x")
    assert code == 1 and "no such model directory" in err
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "x", "--top-p", "2")
    assert code == 1 and "top-p" in err
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "\u4e2d")  # not in the vocabulary
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_generate_from_an_rnn_model_directory(tmp_path, capsys):
    import torch

    from dlnlp.io.modeldir import make_config, write_model_dir
    from dlnlp.models.rnn_lm import KIND, RNNLMConfig, build_model
    from dlnlp.tokenization.char import CharVocab

    vocab = CharVocab.build(TEXT)
    config = RNNLMConfig(vocab_size=vocab.vocab_size, cell="lstm", embed=8, hidden=8, layers=1)
    torch.manual_seed(0)
    model = build_model(config)
    write_model_dir(tmp_path / "rnn", make_config(KIND, model=config.to_dict(), level="char", seq_len=16,
                                                  batch_size=4),
                    model.state_dict(), {"vocab.json": vocab.to_json()})
    code, out, err = dlnlp(capsys, "generate", tmp_path / "rnn", "--prompt", "to", "--strategy", "beam",
                           "--num-beams", "3", "--max-new-tokens", "7", "--json", "--device", "cpu")
    assert code == 0, err
    assert len(json.loads(out)["tokens"]) == 7


def test_imported_gpt2_with_a_word_tokenizer_joins_prompt_and_continuation(tmp_path, capsys, monkeypatch):
    transformers = pytest.importorskip("transformers")
    import torch

    from tests.models.test_gpt_hf import EOS, VOCAB, _word_tokenizer

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=1,
                                                              n_head=2, eos_token_id=EOS, bos_token_id=EOS))
    hf.save_pretrained(tmp_path / "hf")
    _word_tokenizer(tmp_path / "hf" / "tokenizer.json")
    assert dlnlp(capsys, "gpt", "import", tmp_path / "hf", "--out", tmp_path / "dl")[0] == 0
    code, out, err = dlnlp(capsys, "generate", tmp_path / "dl", "--strategy", "greedy", "--max-new-tokens", "4",
                           "--device", "cpu", stdin="w5 w6\nw9\n", monkeypatch=monkeypatch)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("w5 w6 ") and lines[1].startswith("w9")
    assert all(word.startswith("w") for line in lines for word in line.split())  # words kept apart


def test_beams_beyond_reason_or_memory_fail_at_once(model_dir, capsys, monkeypatch):
    # Issue #19: --num-beams 100000 ran until killed.
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "to", "--strategy", "beam", "--num-beams",
                         "100000", "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--num-beams 100000 is above" in err
    import dlnlp.kernels.memory as memory

    monkeypatch.setattr(memory, "available", lambda device="cpu": (2**20, "available host memory"))
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "to", "--strategy", "beam", "--num-beams",
                         "5000", "--max-new-tokens", "50", "--device", "cpu")
    assert code == 1 and "decoding needs about" in err and "lower" in err and "--num-beams" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (["--min-new-tokens", "-1"], "--min-new-tokens must be in [0, --max-new-tokens], got -1"),
    (["--strategy", "beam", "--num-beams", "0"], "--num-beams must be >= 1, got 0"),
    (["--num-return", "0"], "--num-return must be >= 1, got 0"),
    (["--strategy", "beam", "--num-beams", "2", "--num-return", "3"], "--num-return 3 cannot exceed --num-beams 2"),
    (["--strategy", "beam", "--length-penalty", "nan"], "--length-penalty must be a finite number, got nan"),
    (["--top-k", "-1"], "--top-k must be >= 0 (0: no limit), got -1"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_messages_name_the_option_as_typed(model_dir, capsys, args, message):
    # They read "--num beams must be >= 1" and "--max new tokens must be >= 1".
    code, _, err = dlnlp(capsys, "generate", model_dir, "--prompt", "to", *args)
    assert (code, err) == (1, f"dlnlp: error: {message}\n")


def test_invalid_utf8_prompts_are_an_encoding_error(model_dir):
    # Python passes the argument bytes b"to \xff" as "to \udcff"; it was reported as a character
    # outside the vocabulary.
    result = run_cli("generate", str(model_dir), "--prompt", "to \udcff")
    assert (result.returncode, result.stderr) == (1, "dlnlp: error: --prompt: not valid UTF-8 (byte 0xff at "
                                                     "character 4)\n")
    result = run_cli("generate", str(model_dir), "--max-new-tokens", "2", input=b"to be\nor \xff\n")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == "dlnlp: error: <stdin>:2: not valid UTF-8 (invalid start byte at byte 4)\n"


def test_several_results_are_framed_when_one_spans_lines(model_dir):
    from tests.conftest import run_main

    # The character model continues across line ends: each result spans lines, so '---' separates them.
    code, out, err = run_main("generate", model_dir, "--strategy", "sample", "--temperature", "1.5",
                              "--max-new-tokens", "300", "--device", "cpu", input="to\nnot\n")
    assert code == 0, err
    results = out.rstrip("\n").split("\n---\n")
    assert len(results) == 2 and results[0].startswith("to") and results[1].startswith("not")
    assert "\n" in results[0]
    # One line each: no separator, one line per prompt as before.
    code, out, _ = run_main("generate", model_dir, "--strategy", "greedy", "--max-new-tokens", "2",
                            "--device", "cpu", input="to\nnot\n")
    assert code == 0 and out.splitlines() == [line for line in out.splitlines() if line != "---"]
    assert len(out.splitlines()) == 2
    # --num-return above 1 is always framed.
    code, out, _ = run_main("generate", model_dir, "--prompt", "to", "--strategy", "beam", "--num-beams", "2",
                            "--num-return", "2", "--max-new-tokens", "2", "--device", "cpu")
    assert code == 0 and out.count("\n---\n") == 1 and len(out.splitlines()) == 3


def test_output_file_is_written_atomically_and_not_overwritten(model_dir, tmp_path):
    from tests.conftest import run_main

    target = tmp_path / "out.txt"
    args = ["generate", model_dir, "--prompt", "to be", "--strategy", "greedy", "--max-new-tokens", "5",
            "--device", "cpu", "--output", target]
    code, out, err = run_main(*args)
    assert (code, out) == (0, "") and err.startswith("dlnlp: wrote ") and target.read_text().startswith("to be")
    code, _, err = run_main(*args)
    assert code == 1 and "--force" in err
    code, out, err = run_main(*args, "--force", "--quiet", "--json")
    assert (code, out, err) == (0, "", "") and json.loads(target.read_text())["prompt"] == "to be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
