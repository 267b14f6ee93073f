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


def _fail_with(exc: BaseException):
    import typer

    from dlnlp.cli import main as main_module

    probe = typer.Typer()

    @probe.command()
    def boom() -> None:
        raise exc

    @probe.command()
    def other() -> None:  # a second command keeps "boom" a named subcommand
        pass

    main_module.app.add_typer(probe, name="probe-boom")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["probe-boom", "boom"])
    finally:
        main_module.app.registered_groups.pop()
    return exit_info.value.code


def test_user_errors_exit_1_with_one_line(capsys):
    assert _fail_with(DlnlpError("corpus.txt: no such file")) == 1
    err = capsys.readouterr().err
    assert err == "dlnlp: error: corpus.txt: no such file\n"


def test_unexpected_errors_exit_1_and_traceback_only_with_debug(capsys, monkeypatch):
    assert _fail_with(ValueError("bad value\nsecond line")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ValueError: bad value" in err and "Traceback" not in err
    monkeypatch.setenv("DLNLP_DEBUG", "1")
    assert _fail_with(ValueError("bad value")) == 1
    assert "Traceback" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(capsys):
    assert _fail_with(KeyboardInterrupt()) == 130
