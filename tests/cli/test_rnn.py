"""`dlnlp rnn train / sample / eval` through the real CLI (subprocesses, pipes, signals, errors)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli, run_main

# Tiny models train faster on one thread, and the machine running the tests is often shared.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
TINY = ["--embed", "8", "--hidden", "16", "--layers", "1", "--seq-len", "16", "--batch-size", "4",
        "--device", "cpu", "--quiet"]




def _corpus() -> str:
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler"]
    return "".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(8)) + "\n" for i in range(120))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rnn")
    corpus = root / "corpus.txt"
    corpus.write_text(_corpus(), encoding="utf-8")
    out = root / "model"
    result = run_cli("rnn", "train", str(corpus), "--out", str(out), *TINY, "--max-steps", "40",
                     "--eval-interval", "20", "--schedule", "cosine", "--dropout", "0.1", "--forget-bias", "1", "--beta2", "0.99", "--ema", "0.9", "--json",
                     check=True, env=ONE_THREAD)
    return root, out, json.loads(result.stdout)


def test_train_writes_a_model_directory_and_reports_json(trained):
    _, out, summary = trained
    assert summary["steps"] == 40 and summary["stopped_by"] == "max_steps"
    assert summary["val_full"] is True  # the final validation read all of the held-out part
    assert summary["val_loss"] < math.log(27)  # better than uniform over the characters
    for name in ("config.json", "model.safetensors", "vocab.json", "metrics.jsonl", "checkpoint/trainer.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "rnn_lm" and config["model"]["cell"] == "lstm"
    assert config["model"]["forget_bias"] == 1.0 and config["train"]["betas"] == [0.9, 0.99]
    assert config["train"]["ema_decay"] == 0.9


def test_sample_is_reproducible_with_seed_and_greedy_at_temperature_zero(trained, capsys):
    _, out, _ = trained
    runs = [run_main("rnn", "sample", out, "--prime", "to be", "--length", "60", "--seed", s,
                  "--device", "cpu")[1] for s in ("3", "3", "4")]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert runs[0].startswith("to be") and len(runs[0]) == len("to be") + 60 + 1
    greedy = run_cli("rnn", "sample", str(out), "--prime", "to be", "--length", "30", "--temperature", "0",
                     "--seed", "9", "--device", "cpu", check=True, env=ONE_THREAD).stdout  # a real process: streamed stdout

    import torch

    from dlnlp.models.registry import load_model

    loaded = load_model(out)
    model, vocab = loaded.model, loaded.codec
    seq = vocab.encode("to be")
    for _ in range(30):  # the argmax chain, computed by reading the whole prefix each time
        logits, _ = model(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert greedy == vocab.decode(seq) + "\n"


def test_eval_reports_loss_perplexity_and_bits_per_char(trained, capsys):
    root, out, _ = trained
    code, stdout, _ = run_main("rnn", "eval", out, root / "corpus.txt", "--json", "--device", "cpu")
    assert code == 0
    data = json.loads(stdout)
    assert data["bits_per_char"] == pytest.approx(data["loss"] / math.log(2))
    assert data["perplexity"] == pytest.approx(math.exp(data["loss"]))
    assert data["characters"] == len(_corpus()) and data["tokens"] > 0.95 * len(_corpus())
    text = run_cli("rnn", "eval", str(out), "-", "--device", "cpu", input="to be or not\n", check=True, env=ONE_THREAD).stdout
    assert text.startswith("loss ") and "perplexity" in text and "bits/char" in text


def test_stdin_corpus_ids_input_and_ffnn(tmp_path):
    ids = "".join(" ".join(str((i + j) % 9) for j in range(12)) + "\n" for i in range(60))
    out = tmp_path / "ids"
    run_cli("rnn", "train", "-", "--ids", "--cell", "ffnn", "--context", "3", "--out", str(out), *TINY,
            "--max-steps", "5", input=ids, check=True, env=ONE_THREAD)
    assert json.loads((out / "config.json").read_text())["level"] == "ids"
    sample = run_cli("rnn", "sample", str(out), "--prime", "1 2", "--length", "5", "--device", "cpu", check=True, env=ONE_THREAD)
    assert len(sample.stdout.split()) == 7 and all(t.isdigit() for t in sample.stdout.split())


@pytest.mark.parametrize("args, message", [
    (["rnn", "train", "/nonexistent.txt", "--out", "{tmp}/m", "--max-steps", "1"], "no such file"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}", "--max-steps", "1"], "contains an input of this command"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}", "--max-steps", "1", "--force"], "contains an input of this command"),
    (["rnn", "train", "{corpus}", "--out", "{corpus}", "--max-steps", "1", "--force"], "is an input of this command"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--cell", "transformer"], "--cell must be"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--ema", "1.5", "--max-steps", "1"], "--ema must be in [0, 1)"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--cell", "gru", "--forget-bias", "1", "--max-steps", "1"],
     "--forget-bias applies to --cell lstm"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--resume"], "no checkpoint"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--eval-batches", "0", "--max-steps", "1"],
     "--eval-batches must be >= 1, got 0"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--beta2", "1.5", "--max-steps", "1"],
     "--beta2 must be in [0, 1), got 1.5"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--optimizer", "sgd", "--momentum", "-1", "--max-steps", "1"],
     "--momentum must be in [0, 1), got -1.0"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--log-interval", "0", "--max-steps", "1"],
     "--log-interval must be >= 1, got 0"),
    (["rnn", "sample", "{tmp}", "--length", "3"], "not a dlnlp model directory"),
    (["rnn", "eval", "{tmp}/nope", "{corpus}"], "no such model directory"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text(_corpus())
    code, _, err = run_main(*[a.format(tmp=tmp_path, corpus=corpus) for a in args])
    assert code == (2 if message == "--cell must be" else 1), err  # a value outside an option's choices is a usage error (issue #20)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlnlp: error:") and message in lines[0], err


def test_sample_rejects_bad_temperature(trained, capsys):
    _, out, _ = trained
    code, _, err = run_main("rnn", "sample", out, "--temperature", "-1")
    assert code == 1 and "--temperature must be >= 0" in err


def test_sigterm_saves_a_checkpoint_exits_130_and_resume_finishes(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(_corpus() * 3)
    out = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-m", "dlnlp", "rnn", "train", str(corpus), "--out", str(out), *TINY,
                             "--max-steps", "100000", "--log-interval", "1", "--eval-interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ONE_THREAD})
    metrics = out / "metrics.jsonl"

    def logged_steps() -> int:  # until the first checkpoint the run lives in a staging directory beside out
        files = [metrics, *tmp_path.glob(".m.*.tmp/metrics.jsonl")]
        return max((f.read_text().count("\n") for f in files if f.exists()), default=0)

    deadline = time.time() + 120
    while time.time() < deadline and logged_steps() < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err
    step = json.loads((out / "checkpoint" / "trainer.json").read_text())["step"]
    assert step >= 3
    done = run_cli("rnn", "train", "--out", str(out), "--resume", "--max-steps", str(step + 4), "--json",
                   "--device", "cpu", "--quiet", check=True, env=ONE_THREAD)
    assert json.loads(done.stdout)["steps"] == step + 4
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"loss"' in line]
    assert steps == list(range(1, step + 5))


def test_subword_level_with_a_dlnlp_tokenizer(tmp_path, capsys):
    from dlnlp.tokenization.train import TrainSpec, train_tokenizer

    corpus = tmp_path / "c.txt"
    corpus.write_text(_corpus())
    tok = tmp_path / "tok.json"
    tok.write_bytes(train_tokenizer(_corpus().splitlines(), TrainSpec(model="bpe", vocab_size=300)))
    out = tmp_path / "m"
    code, stdout, err = run_main("rnn", "train", corpus, "--tokenizer", tok, "--out", out, *TINY,
                              "--max-steps", "5", "--json", "--tie-weights")
    assert code == 0, err
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "config.json").read_text())["level"] == "tokenizer"
    code, stdout, _ = run_main("rnn", "eval", out, corpus, "--json", "--device", "cpu")
    data = json.loads(stdout)
    # bits per character spread the token losses over the characters: fewer tokens than characters
    assert data["tokens_in_text"] < data["characters"]
    assert data["bits_per_char"] == pytest.approx(
        data["loss"] * data["tokens_in_text"] / (data["characters"] * math.log(2)))
    code, stdout, _ = run_main("rnn", "sample", out, "--prime", "to be", "--length", "8", "--seed", "1",
                            "--device", "cpu")
    assert code == 0 and stdout.startswith("to be") and len(stdout) > len("to be")


def test_absurd_sizes_fail_at_once_with_one_line(tmp_path, capsys, monkeypatch):
    # Issue #19: --hidden 10000000 and --batch-size 1000000 grew until they failed; ids of 4e9 made a
    # vocabulary of 4e9 rows.
    corpus = tmp_path / "c.txt"
    corpus.write_text(_corpus())
    code, _, err = run_main("rnn", "train", corpus, "--out", tmp_path / "a", "--hidden", "10000000",
                         "--max-steps", "1", "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--hidden 10000000 is above the widest supported, 65,536" in err
    code, _, err = run_main("rnn", "train", corpus, "--out", tmp_path / "a", "--hidden", "60000",
                         "--layers", "50", "--max-steps", "1", "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "rnn training needs about" in err and "lower --hidden or --layers" in err
    assert not (tmp_path / "a").exists()
    import dlnlp.kernels.memory as memory

    monkeypatch.setattr(memory, "available", lambda device="cpu": (2**20, "available host memory"))
    code, _, err = run_main("rnn", "train", corpus, "--out", tmp_path / "b", *TINY, "--batch-size", "500",
                         "--max-steps", "1")
    assert code == 1 and "lower --batch-size" in err and not (tmp_path / "b").exists()
    result = run_cli("rnn", "train", "-", "--ids", "--out", str(tmp_path / "c"), *TINY, "--max-steps", "1",
                     input="1 2 4000000000\n", env=ONE_THREAD)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("dlnlp: error: <stdin>:1: token id 4000000000 is above the largest id "
                                     "accepted, 16,777,215 (the vocabulary would have 4,000,000,001 rows); "
                                     "renumber the ids densely")
    assert not (tmp_path / "c").exists()


def test_sample_and_eval_refuse_bad_values_naming_the_option(trained, capsys):
    root, out, _ = trained
    code, _, err = run_main("rnn", "eval", out, root / "corpus.txt", "--batch-size", "0")
    assert (code, err) == (1, "dlnlp: error: --batch-size must be >= 1, got 0\n")  # was a raw ValueError
    code, _, err = run_main("rnn", "sample", out, "--top-k", "-1")  # 0 is no limit, as for every sampler
    assert (code, err) == (1, "dlnlp: error: --top-k must be >= 0 (0: no limit), got -1\n")
    result = run_cli("rnn", "sample", str(out), "--prime", "to \udcff", "--length", "3")  # bytes b"to \xff"
    assert (result.returncode, result.stderr) == (1, "dlnlp: error: --prime: not valid UTF-8 (byte 0xff at "
                                                     "character 4)\n")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.pop("model"), "config.json: no 'model' section"),
    (lambda c: c.pop("level"), "config.json: no 'level' (one of char, tokenizer, ids)"),
    (lambda c: c.update(level="words"), "config.json: level 'words' is not one of char, tokenizer, ids"),
    (lambda c: c["model"].update(hidden="big"), "config.json: invalid 'model' settings ("),
    (lambda c: c["model"].update(embed=9),  # the first line of torch's message was "Error(s) in loading ...:"
     "model.safetensors: weights do not match config.json (shape of embedding.weight is [{v}, 8], config.json "
     "says [{v}, 9]"),
])
def test_damaged_model_directories_fail_with_one_line_naming_the_file(trained, tmp_path, capsys, edit, message):
    import shutil

    root, out, _ = trained
    damaged = tmp_path / "m"
    shutil.copytree(out, damaged, ignore=shutil.ignore_patterns("checkpoint", "data"))
    config = json.loads((damaged / "config.json").read_text())
    vocab = config["model"]["vocab_size"]
    edit(config)
    (damaged / "config.json").write_text(json.dumps(config))
    for args in (["rnn", "eval", damaged, root / "corpus.txt"], ["rnn", "sample", damaged, "--length", "2"],
                 ["generate", damaged, "--prompt", "to", "--device", "cpu"]):
        code, stdout, err = run_main(*args)
        assert code == 1 and stdout == "" and len(err.splitlines()) == 1, (args, err)
        assert err.startswith(f"dlnlp: error: {damaged}/" + message.format(v=vocab)), (args, err)


def test_sample_takes_prompt_with_prime_as_its_alias(trained, capsys):
    _, out, _ = trained
    args = ["rnn", "sample", out, "--length", "12", "--seed", "3", "--device", "cpu"]
    code, by_prompt, _ = run_main(*args, "--prompt", "to be")
    code2, by_prime, _ = run_main(*args, "--prime", "to be")
    assert code == code2 == 0 and by_prompt == by_prime and by_prompt.startswith("to be")
    code, _, err = run_main(*args, "--prompt", "to", "--prime", "be")
    assert (code, err) == (1, "dlnlp: error: --prompt and --prime are the same option; give one\n")
