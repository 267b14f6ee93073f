"""``dlnlp gpt train / eval / import / export`` through the real CLI entry point."""

from __future__ import annotations

import io
import json
import math
import sys

import pytest

from dlnlp.cli.main import main
from tests.conftest import run_cli

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300))


def dlnlp(capsys, *args, stdin: str | None = None, monkeypatch=None):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


TINY = ["--layers", "1", "--heads", "2", "--dim", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "0", "--warmup", "2", "-q", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt") / "run"
    result = run_cli("gpt", "train", str(corpus), "--char", *TINY, "--max-steps", "30", "--lr", "3e-3", "--out", str(out),
                     "--json",
                     check=True)
    return out, json.loads(result.stdout)


def test_train_writes_a_model_directory(trained):
    out, summary = trained
    assert summary["steps"] == 30 and summary["stopped_by"] == "max_steps"
    vocab = json.loads((out / "config.json").read_text())["model"]["vocab_size"]
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] < math.log(vocab) - 0.3  # learned something
    for name in ("config.json", "model.safetensors", "vocab.json", "metrics.jsonl", "checkpoint"):
        assert (out / name).exists()
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "gpt" and config["model"]["n_layer"] == 1 and config["level"] == "char"
    assert config["model"]["activation"] == "gelu"  # nanoGPT's exact GELU unless --activation says otherwise


def test_eval_reports_loss_perplexity_and_bpc(trained, corpus, capsys):
    out, _ = trained
    code, stdout, _ = dlnlp(capsys, "gpt", "eval", out, corpus, "--json", "--device", "cpu")
    assert code == 0
    result = json.loads(stdout)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))
    assert result["tokens"] == len(TEXT) - 1
    code, stdout, _ = dlnlp(capsys, "gpt", "eval", out, corpus, "--device", "cpu")
    assert code == 0 and stdout.startswith("loss ")


def test_resume_continues_to_more_steps(trained, tmp_path, capsys):
    import shutil

    out, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    code, stdout, _ = dlnlp(capsys, "gpt", "train", "--resume", "--out", copy, "--max-steps", "35", "-q", "--json",
                            "--device", "cpu")
    assert code == 0 and json.loads(stdout)["steps"] == 35


def test_refuses_to_overwrite_and_bad_options(trained, corpus, capsys):
    out, _ = trained
    code, _, err = dlnlp(capsys, "gpt", "train", corpus, "--char", *TINY, "--max-steps", "1", "--out", out)
    assert code == 1 and "exists" in err and "--force" in err
    code, _, err = dlnlp(capsys, "gpt", "train", corpus, *TINY[:4], "--dim", "15", "--max-steps", "1",
                         "--out", out.parent / "bad")
    assert code == 1 and "divisible" in err
    code, _, err = dlnlp(capsys, "gpt", "train", corpus, *TINY, "--activation", "swish", "--max-steps", "1",
                         "--out", out.parent / "bad")
    assert code == 2 and "--activation swish" in err and not (out.parent / "bad").exists()
    code, _, err = dlnlp(capsys, "gpt", "eval", out.parent / "missing", corpus)
    assert code == 1 and "no such model directory" in err
    assert len(err.strip().splitlines()) == 1


def test_import_export_through_the_cli(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=20, n_positions=16, n_embd=16, n_layer=1,
                                                              n_head=2)).eval()
    hf.save_pretrained(tmp_path / "hf")
    code, _, err = dlnlp(capsys, "gpt", "import", tmp_path / "hf", "--out", tmp_path / "dl")
    assert code == 0, err
    code, _, err = dlnlp(capsys, "gpt", "export", tmp_path / "dl", tmp_path / "back")
    assert code == 0, err
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    ids = torch.randint(0, 20, (1, 10))
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, hf(ids).logits, atol=1e-5)
    code, _, err = dlnlp(capsys, "gpt", "export", tmp_path / "dl", tmp_path / "back")
    assert code == 1 and "exists" in err


def _one_error_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("dlnlp: error:"), err
    return lines[0]


def test_sizes_the_machine_cannot_hold_fail_before_allocating(corpus, tmp_path, capsys, monkeypatch):
    # Issue #19: --dim 10000000 spent 60 s and 5 GB before failing; --block-size 100000000 reached
    # 7 GB and ran on. Now both fail at once, naming the estimate and the option to lower.
    line = _one_error_line(*dlnlp(capsys, "gpt", "train", corpus, "--dim", "10000000", "--heads", "2",
                                  "--out", tmp_path / "a", "--max-steps", "1", "--device", "cpu")[:3:2])
    assert "--dim 10000000 is above the widest supported, 65,536" in line
    line = _one_error_line(*dlnlp(capsys, "gpt", "train", corpus, "--dim", "60000", "--layers", "100", "--heads",
                                  "2", "--out", tmp_path / "a", "--max-steps", "1", "--device", "cpu")[:3:2])
    assert "gpt training needs about" in line and "lower --dim or --layers" in line
    assert not (tmp_path / "a").exists()
    import dlnlp.kernels.memory as memory

    monkeypatch.setattr(memory, "available", lambda device="cpu": (16 * 2**30, "available host memory"))
    line = _one_error_line(*dlnlp(capsys, "gpt", "train", corpus, "--block-size", "100000000", "--out",
                                  tmp_path / "b", "--max-steps", "1", "--device", "cpu")[:3:2])
    assert "but available host memory is 16 GiB; lower --block-size" in line
    # Activations: a batch far beyond memory once the data says how long the windows are.
    monkeypatch.setattr(memory, "available", lambda device="cpu": (2**20, "available host memory"))
    line = _one_error_line(*dlnlp(capsys, "gpt", "train", corpus, *TINY, "--batch-size", "512", "--out",
                                  tmp_path / "c", "--max-steps", "1")[:3:2])
    assert "lower --batch-size or --block-size" in line
    assert not (tmp_path / "c").exists()  # failed before the first step: nothing left
    monkeypatch.undo()
    # Checked against the data too: a context longer than the whole training text only wastes memory.
    line = _one_error_line(*dlnlp(capsys, "gpt", "train", corpus, "--layers", "1", "--heads", "2", "--dim", "8",
                                  "--block-size", "1000000", "--out", tmp_path / "d", "--max-steps", "1",
                                  "--device", "cpu")[:3:2])
    assert "--block-size 1000000 is longer than the training text" in line
    assert not (tmp_path / "d").exists()


def test_export_of_a_character_model_carries_its_vocabulary(trained, corpus, tmp_path, capsys):
    # The vocabulary was silently dropped: the HF checkpoint could not turn text into the model's ids.
    transformers = pytest.importorskip("transformers")
    import torch

    from dlnlp.models.gpt import load_gpt
    from dlnlp.tokenization.char import CharVocab

    out, _ = trained
    code, _, err = dlnlp(capsys, "gpt", "export", out, tmp_path / "hf")
    assert (code, err) == (0, "")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    vocab = CharVocab.load(out)
    text = TEXT[:200] + "Zebra <unk> ☃\r\n"  # characters outside the vocabulary too
    ids = vocab.encode(text)
    assert tokenizer(text)["input_ids"] == ids
    assert tokenizer.decode(ids) == vocab.decode(ids)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    model, _ = load_gpt(out)
    x = torch.tensor([tokenizer("line 7: the")["input_ids"]])  # within the block size
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, model(x)[0], atol=1e-5)


def test_export_of_an_ids_model_warns_that_it_has_no_vocabulary(tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i % 7} {(i * 3) % 11} 5 2\n" for i in range(200)))
    run_cli("gpt", "train", str(ids), "--ids", *TINY, "--max-steps", "2", "--out", str(tmp_path / "m"), check=True)
    code, _, err = dlnlp(capsys, "gpt", "export", tmp_path / "m", tmp_path / "hf")
    assert code == 0 and err.startswith("dlnlp: warning: ") and "no vocabulary to export" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize(("args", "message"), [
    (["--block-size", "0"], "--block-size must be >= 1, got 0"),  # was accepted (the model's block size)
    (["--block-size", "-4"], "--block-size must be >= 1, got -4"),  # was ZeroDivisionError
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),  # was "range() arg 3 must not be zero"
])
def test_eval_refuses_meaningless_sizes(trained, corpus, capsys, args, message):
    out, _ = trained
    code, stdout, err = dlnlp(capsys, "gpt", "eval", out, corpus, "--device", "cpu", *args)
    assert (code, stdout, err) == (1, "", f"dlnlp: error: {message}\n")


def _damaged(source, target, edit):
    """A copy of a model directory with ``edit(config, weights)`` applied to config.json and model.safetensors."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint", "data"))
    config = json.loads((target / "config.json").read_text())
    weights = load_file(str(target / "model.safetensors"))
    edit(config, weights)
    (target / "config.json").write_text(json.dumps(config))
    save_file(weights, str(target / "model.safetensors"))
    return target


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c, w: c.pop("model"), "config.json: no 'model' section"),  # was KeyError: 'model'
    (lambda c, w: c.update(model=5), "config.json: 'model' is not an object"),
    (lambda c, w: c.update(level="bogus"),  # was AttributeError
     "config.json: level 'bogus' is not one of char, tokenizer, ids"),
    (lambda c, w: w.pop("ln_f.bias"),  # was "RuntimeError: Error(s) in loading state_dict for GPT:"
     "model.safetensors: weights do not match config.json (missing ln_f.bias)"),
    (lambda c, w: c["model"].update(vocab_size=c["model"]["vocab_size"] + 1),
     "model.safetensors: weights do not match config.json (shape of wte.weight is [{v}, 16], config.json says "
     "[{w}, 16]; shape of lm_head.weight is [{v}, 16], config.json says [{w}, 16])"),
])
def test_damaged_model_directories_fail_with_one_line_naming_the_file(trained, corpus, tmp_path, capsys, edit,
                                                                      message):
    out, _ = trained
    vocab = json.loads((out / "config.json").read_text())["model"]["vocab_size"]
    damaged = _damaged(out, tmp_path / "m", edit)
    expected = f"dlnlp: error: {damaged}/" + message.format(v=vocab, w=vocab + 1) + "\n"
    for args in (["gpt", "eval", damaged, corpus, "--device", "cpu"],
                 ["generate", damaged, "--prompt", "line", "--device", "cpu"],
                 ["gpt", "export", damaged, tmp_path / "hf"]):
        code, stdout, err = dlnlp(capsys, *args)
        assert (code, stdout, err) == (1, "", expected), args
    assert not (tmp_path / "hf").exists()
