"""The options declared once in dlnlp.cli.options: --memory sizes, --temp-dir and its alias, the TrainConfig builder."""

from __future__ import annotations

import json

import pytest

from dlnlp.cli.options import TrainingOptions, parse_memory, temp_dir, training_options
from dlnlp.errors import OptionError
from tests.conftest import run_main

CORPUS = "".join(f"the cat sat on the mat {i % 7}\nthe dog ate the bone {i % 5}\n" for i in range(40))


@pytest.mark.parametrize(("text", "expected"), [
    ("2G", 2 << 30), ("512M", 512 << 20), ("512m", 512 << 20), ("1.5GB", int(1.5 * (1 << 30))),
    ("100K", 100 << 10), ("2GiB", 2 << 30), (" 1T ", 1 << 40), ("4096B", 4096),
    ("2", 2 << 30), ("0.25", 1 << 28),  # a plain number: GiB, as glove's and ppmi-svd's --memory meant
])
def test_memory_sizes(text, expected):
    assert parse_memory(text) == expected


def test_memory_plain_number_keeps_the_commands_unit():
    assert parse_memory("1048576", plain="B") == 1 << 20  # ngram train: bytes, as before
    assert parse_memory("1M", plain="B") == parse_memory("1M") == 1 << 20


@pytest.mark.parametrize("text", ["lots", "", "0", "-1", "nan", "inf", "2X", "G", "1e-12"])
def test_bad_memory_is_an_option_error(text):
    with pytest.raises(OptionError) as info:
        parse_memory(text)
    assert str(info.value) == f"--memory must be a size > 0 such as 512M or 2G, got {text!r}"


def test_temp_dir_and_its_old_spelling(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    assert temp_dir(tmp_path, None) == tmp_path
    assert temp_dir(None, tmp_path) == tmp_path  # --tmp-dir alone
    assert temp_dir(tmp_path, tmp_path) == tmp_path
    assert temp_dir(None, None) is None
    with pytest.raises(OptionError, match="--temp-dir and --tmp-dir"):
        temp_dir(tmp_path, other)
    with pytest.raises(OptionError, match=r"^--tmp-dir .*missing: no such directory$"):
        temp_dir(None, tmp_path / "missing")


def test_train_config_from_the_shared_options():
    shared = dict(batch_size=4, lr=3e-4, weight_decay=0.1, beta2=0.95, ema=0.5, schedule="cosine", warmup=7,
                  min_lr_ratio=0.2, clip=0.0, grad_accum=2, epochs=None, max_steps=None, max_time=None, val=None,
                  val_fraction=0.1, eval_interval=9, eval_batches=3, log_interval=4, resume=False, compile=False)
    common = dict(precision="fp32", device="cpu", seed=5, quiet=True)
    config = TrainingOptions(**shared).train_config(**common)
    assert (config.epochs, config.max_steps, config.max_time) == (1.0, None, None)  # one pass by default
    assert config.clip is None  # --clip 0: off
    assert config.betas == (0.9, 0.95) and config.ema_decay == 0.5 and config.warmup_steps == 7
    assert (config.optimizer, config.min_lr_ratio, config.grad_accum, config.seed) == ("adamw", 0.2, 2, 5)
    assert (config.eval_interval, config.eval_batches, config.log_interval) == (9, 3, 4)
    stopped = TrainingOptions(**{**shared, "max_steps": 10, "clip": 2.0}).train_config(**common, optimizer="sgd",
                                                                                      momentum=0.5)
    assert (stopped.epochs, stopped.max_steps, stopped.clip) == (None, 10, 2.0)
    assert (stopped.optimizer, stopped.momentum) == ("sgd", 0.5)


def test_training_options_give_a_command_the_shared_options_with_its_defaults():
    import typer
    from typer.testing import CliRunner

    seen = {}
    app = typer.Typer()

    @app.command()
    @training_options(lr=0.5, eval_interval=7)
    def train(name: str = "x", training: TrainingOptions = None, quiet: bool = False) -> None:
        seen.update(name=name, training=training, quiet=quiet)

    result = CliRunner().invoke(app, ["--name", "y", "--batch-size", "3", "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    training = seen["training"]
    assert (seen["name"], seen["quiet"]) == ("y", True)
    assert (training.batch_size, training.resume, training.lr, training.eval_interval) == (3, True, 0.5, 7)
    assert training.clip == 1.0 and training.max_steps is None  # the shared defaults
    with pytest.raises(TypeError, match="not shared training options: lrr"):
        training_options(lrr=1)


def test_rnn_train_records_the_built_config(tmp_path):
    out = tmp_path / "m"
    code, _, err = run_main("rnn", "train", "-", "--out", out, "--hidden", "8", "--embed", "4", "--layers", "1",
                            "--seq-len", "8", "--batch-size", "2", "--max-steps", "2", "--clip", "0", "--warmup", "3",
                            "--device", "cpu", "--quiet", input=CORPUS)
    assert code == 0, err
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["clip"], train["warmup_steps"], train["max_steps"], train["seed"]) == (None, 3, 2, 0)


def test_epochs_error_names_the_option(tmp_path):
    code, _, err = run_main("gpt", "train", "-", "--out", tmp_path / "g", "--epochs", "0", input=CORPUS)
    assert (code, err) == (1, "dlnlp: error: --epochs must be > 0, got 0.0\n")


@pytest.mark.parametrize("command", [["glove", "train"], ["vectors", "ppmi-svd"], ["ngram", "train"]])
def test_temp_dir_option_everywhere_with_a_hidden_alias(command, tmp_path):
    code, help_text, _ = run_main(*command, "--help")
    assert code == 0 and "--temp-dir" in help_text and "--tmp-dir" not in help_text
    for option in ("--temp-dir", "--tmp-dir"):
        code, _, err = run_main(*command, "-", "--out", tmp_path / "x.txt", option, tmp_path / "missing",
                                input=CORPUS)
        assert (code, err) == (1, f"dlnlp: error: {option} {tmp_path / 'missing'}: no such directory\n")


@pytest.mark.parametrize("command", [["glove", "train", "--dim", "4", "--epochs", "1"],
                                     ["vectors", "ppmi-svd", "--dim", "2"], ["ngram", "train"]])
def test_memory_takes_a_size_everywhere(command, tmp_path):
    out = tmp_path / ("out" if command[0] == "ngram" else "out.txt")
    code, _, err = run_main(*command, "-", "--out", out, "--memory", "64M", "--temp-dir", tmp_path,
                            "--min-count", "1", "--quiet", input=CORPUS)
    assert code == 0, err
    code, _, err = run_main(*command, "-", "--out", tmp_path / "bad", "--memory", "lots", input=CORPUS)
    assert (code, err) == (1, "dlnlp: error: --memory must be a size > 0 such as 512M or 2G, got 'lots'\n")


def test_minus_n_is_no_longer_order_nor_topn(tmp_path):
    code, _, err = run_main("ngram", "train", "-", "-n", "2", "--out", tmp_path / "m", input=CORPUS)
    assert code == 2 and "-n" in err


def test_a_plain_memory_number_warns_with_the_unit_it_was_read_in(capsys):
    assert parse_memory("2") == 2 << 30
    assert "--memory 2 has no unit and is read as 2G; give a unit (e.g. 2G)" in capsys.readouterr().err
    assert parse_memory("512M") == 512 << 20
    assert capsys.readouterr().err == ""
