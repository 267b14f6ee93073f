"""``gpt train --init-from`` / ``rnn train --init-from``: fine-tuning a model's weights, shape and tokenizer
with a new optimizer and schedule (issue 20)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_main


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny randomly initialized HF GPT-2 with a word-level tokenizer, imported into dlnlp."""
    transformers = pytest.importorskip("transformers")
    import torch

    from tests.models.test_gpt_hf import EOS, VOCAB, _word_tokenizer

    root = tmp_path_factory.mktemp("init")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=EOS, eos_token_id=EOS)
    transformers.GPT2LMHeadModel(config).save_pretrained(root / "hf")
    _word_tokenizer(root / "hf" / "tokenizer.json")
    code, _, err = run_main("gpt", "import", root / "hf", "--out", root / "dl")
    assert code == 0, err
    # a new corpus: counting sequences of words, which a random model predicts badly
    (root / "new.txt").write_text("".join(" ".join(f"w{4 + (i + j) % 20}" for j in range(12)) + "\n"
                                          for i in range(400)))
    return root


def _loss(model_dir, text) -> float:
    code, stdout, err = run_main("gpt", "eval", model_dir, text, "--json", "--device", "cpu")
    assert code == 0, err
    return json.loads(stdout)["loss"]


def test_gpt_init_from_an_imported_gpt2_lowers_its_loss_and_keeps_generate_and_export(gpt2, tmp_path):
    before = _loss(gpt2 / "dl", gpt2 / "new.txt")
    code, stdout, err = run_main("gpt", "train", gpt2 / "new.txt", "--init-from", gpt2 / "dl", "--max-steps", "40",
                                 "--lr", "3e-3", "--warmup", "5", "--batch-size", "8", "--eval-interval", "0",
                                 "--dropout", "0.1", "--device", "cpu", "-q", "--json", "--out", tmp_path / "ft")
    assert code == 0, err
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["model"]["n_layer"] == 2 and config["model"]["n_embd"] == 32 and config["model"]["dropout"] == 0.1
    assert config["init_from"] == str(gpt2 / "dl") and (tmp_path / "ft" / "tokenizer.json").is_file()
    after = _loss(tmp_path / "ft", gpt2 / "new.txt")
    assert after < before - 1.0, (before, after)
    code, stdout, err = run_main("generate", tmp_path / "ft", "--prompt", "w5 w6 w7", "--max-new-tokens", "5",
                                 "--temperature", "0", "--device", "cpu")
    assert code == 0 and stdout.strip(), err
    code, _, err = run_main("gpt", "export", tmp_path / "ft", tmp_path / "hf-again")
    assert code == 0 and (tmp_path / "hf-again" / "tokenizer.json").is_file(), err


@pytest.mark.parametrize(("option", "message"), [
    (["--layers", "3"], "--layers 3 contradicts the --init-from model"),
    (["--dim", "64"], "--dim 64 contradicts the --init-from model"),
    (["--char"], "--char cannot be used with --init-from"),
])
def test_gpt_init_from_refuses_options_that_contradict_the_model(gpt2, tmp_path, option, message):
    code, _, err = run_main("gpt", "train", gpt2 / "new.txt", "--init-from", gpt2 / "dl", *option, "--max-steps", "1",
                            "--device", "cpu", "-q", "--out", tmp_path / "ft")
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ft").exists()


def test_rnn_init_from_a_character_model_keeps_its_vocabulary(tmp_path):
    first = "".join(f"the cat sat on the mat {i}.\n" for i in range(100))
    (tmp_path / "a.txt").write_text(first)
    (tmp_path / "b.txt").write_text("".join(f"a mat sat on the cat {i}!\n" for i in range(100)))  # '!' is new
    small = ["--cell", "gru", "--layers", "1", "--hidden", "24", "--embed", "8", "--seq-len", "16", "--batch-size",
             "4", "--eval-interval", "0", "--device", "cpu", "-q"]
    code, _, err = run_main("rnn", "train", tmp_path / "a.txt", *small, "--max-steps", "5", "--out", tmp_path / "lm")
    assert code == 0, err
    code, _, err = run_main("rnn", "train", tmp_path / "b.txt", "--init-from", tmp_path / "lm", "--hidden", "32",
                            "--max-steps", "2", "--device", "cpu", "-q", "--out", tmp_path / "bad")
    assert code == 1 and "--hidden 32 contradicts the --init-from model" in err, err
    code, stdout, err = run_main("rnn", "train", tmp_path / "b.txt", "--init-from", tmp_path / "lm", "--seq-len", "8",
                                 "--max-steps", "5", "--eval-interval", "0", "--device", "cpu", "-q", "--json",
                                 "--out", tmp_path / "ft")
    assert code == 0, err
    assert (tmp_path / "ft" / "vocab.json").read_text() == (tmp_path / "lm" / "vocab.json").read_text()
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["model"]["hidden"] == 24 and config["seq_len"] == 8
