import subprocess
import sys

import pytest

from dlnlp import __version__
from dlnlp.cli.main import main
from dlnlp.errors import DlnlpError
from tests.conftest import run_cli


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "Usage: dlnlp" in result.stdout
    assert run_cli("--version").stdout.strip() == f"dlnlp {__version__}"
    assert run_cli("-h").returncode == 0


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from dlnlp.cli.main import app; "
        "heavy = [m for m in ('torch', 'datasets', 'tokenizers', 'transformers', 'gensim') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_unknown_command_is_a_usage_error():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def _fail_with(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> int:
    import typer

    from dlnlp.cli import main as main_module

    probe = typer.Typer()

    @probe.command()
    def boom() -> None:
        raise exc

    @probe.command()
    def other() -> None:  # a second command keeps "boom" a named subcommand
        pass

    build = main_module.build_app

    def build_with_probe(only=None):
        application = build(only="tokenize")
        application.add_typer(probe, name="probe-boom")
        return application

    monkeypatch.setattr(main_module, "build_app", build_with_probe)
    with pytest.raises(SystemExit) as exit_info:
        main(["probe-boom", "boom"])
    return exit_info.value.code


def test_user_errors_exit_1_with_one_line(capsys, monkeypatch):
    assert _fail_with(DlnlpError("corpus.txt: no such file"), monkeypatch) == 1
    err = capsys.readouterr().err
    assert err == "dlnlp: error: corpus.txt: no such file\n"


def test_unexpected_errors_exit_1_and_traceback_only_with_debug(capsys, monkeypatch):
    assert _fail_with(ValueError("bad value\nsecond line"), monkeypatch) == 1
    err = capsys.readouterr().err
    assert err == "dlnlp: error: internal error: ValueError: bad value (run with --debug for a traceback)\n"
    monkeypatch.setenv("DLNLP_DEBUG", "1")
    assert _fail_with(ValueError("bad value"), monkeypatch) == 1
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    assert _fail_with(KeyboardInterrupt(), monkeypatch) == 130


def test_a_reader_that_goes_away_is_not_an_error(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("word " * 20 + "\n" + ("more words here\n" * 200_000))
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m dlnlp ngram train {corpus} --order 2 "
         f"--out {tmp_path / 'lm'} -q && {sys.executable} -m dlnlp ngram score {tmp_path / 'lm'} {corpus} | head -n 1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "error" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["gpt", "--help"], ["ngram", "train", "--help"], ["--version"]])
def test_a_closed_stdout_is_not_an_error(args):
    # Typer prints help through rich, which answered a closed pipe with exit 1; every command exits 0.
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write gets EPIPE, whatever the timing
    try:
        result = subprocess.run([sys.executable, "-m", "dlnlp", *args], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")


def test_only_the_requested_group_is_built():
    from dlnlp.cli.main import _requested_group

    assert _requested_group(["ngram", "train", "x"]) == "ngram"
    assert _requested_group(["--debug", "generate", "run"]) == "generate"
    assert _requested_group(["--help"]) is None
    assert _requested_group(["nonsense"]) is None


@pytest.mark.parametrize(("args", "message"), [
    (["ngram", "train", "{corpus}", "--out", "{tmp}/m", "--smoothing", "nope"], "--smoothing must be one of"),
    (["gpt", "train", "{corpus}", "--out", "{tmp}/m", "--schedule", "nope"], "--schedule must be one of"),
    (["gpt", "train", "{corpus}", "--out", "{tmp}/m", "--precision", "fp8"], "--precision fp8: expected"),
    (["rnn", "train", "{corpus}", "--out", "{tmp}/m", "--optimizer", "lion"], "--optimizer must be one of"),
    (["generate", "{tmp}", "--prompt", "a", "--strategy", "nope"], "--strategy nope: expected"),
    (["tokenize", "encode", "{corpus}", "-t", "{corpus}", "--format", "xml"], "--format must be one of"),
])
def test_a_value_outside_an_options_choices_is_a_usage_error(tmp_path, args, message):
    from tests.conftest import run_main

    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\n" * 50)
    code, out, err = run_main(*[a.format(tmp=tmp_path, corpus=corpus) for a in args])
    assert (code, out) == (2, ""), err  # was 1, the code of a failure
    errors = [line for line in err.splitlines() if line.startswith("dlnlp: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"dlnlp: error: {message}"), err
    assert not (tmp_path / "m").exists()


def test_usage_error_is_still_a_value_error_for_library_callers():
    from dlnlp.errors import InputError, OptionError, UsageError
    from dlnlp.training.config import TrainConfig

    with pytest.raises(ValueError, match="--schedule must be one of"):
        TrainConfig(schedule="nope").validate()
    assert issubclass(UsageError, OptionError) and issubclass(UsageError, InputError)
