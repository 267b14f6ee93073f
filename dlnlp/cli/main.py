"""The ``dlnlp`` command: builds the Typer app from one module per command group.

Group modules import only Typer at import time; heavy libraries (torch, datasets, tokenizers)
are imported inside the commands that need them, so ``dlnlp --help`` and the commands that do
not use them start fast in shell pipelines.
"""

import importlib
import os
import signal
import sys
import threading
import traceback

import typer

from dlnlp import __version__
from dlnlp.errors import DlnlpError, UsageError

# (group name, module): each module defines ``app`` (a Typer group) or ``register(app)`` for
# top-level commands.
COMMAND_MODULES = [
    ("tokenize", "dlnlp.cli.tokenize"),
    ("ngram", "dlnlp.cli.ngram"),
    ("rnn", "dlnlp.cli.rnn"),
    ("word2vec", "dlnlp.cli.word2vec"),
    ("glove", "dlnlp.cli.glove"),
    ("vectors", "dlnlp.cli.vectors"),
    ("gpt", "dlnlp.cli.gpt"),
    ("bert", "dlnlp.cli.bert"),
    ("elmo", "dlnlp.cli.elmo"),
    ("generate", "dlnlp.cli.generate"),
    ("runs", "dlnlp.cli.runs"),
    ("finetune", "dlnlp.cli.finetune"),
    ("predict", "dlnlp.cli.predict"),
    ("evaluate", "dlnlp.cli.evaluate"),
    ("distill", "dlnlp.cli.distill"),
    ("data", "dlnlp.cli.data"),
]

def _new_app() -> typer.Typer:
    application = typer.Typer(
        name="dlnlp",
        help="NLP pipelines and language modeling from the command line, on PyTorch.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    application.callback()(root)
    return application


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlnlp {__version__}")
        raise typer.Exit()


def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors (also DLNLP_DEBUG=1); "
                               "accepted anywhere on the command line."),
) -> None:
    """dlnlp: tokenizers, n-gram LMs, RNN/GPT language models and word embeddings.

    Example: cat corpus.txt | dlnlp tokenize encode -t tok.json | dlnlp tokenize decode -t tok.json
    """


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer app with every command group, or with just the group ``only`` (a fast start for one command)."""
    application = _new_app()
    for name, module_name in COMMAND_MODULES:
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a group not built yet
                continue
            raise
        if hasattr(module, "register"):
            module.register(application)
        else:
            application.add_typer(module.app, name=name)
    return application


def __getattr__(name: str) -> typer.Typer:
    # ``app`` (every group) is built on first use, so ``main`` can build only the group it runs.
    if name == "app":
        globals()["app"] = build_app()
        return globals()["app"]
    raise AttributeError(name)


def _requested_group(args: list[str]) -> str | None:
    """The command group named on the command line, when it is one of ours (else None: build them all)."""
    for arg in args:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if any(arg == name for name, _ in COMMAND_MODULES) else None
    return None


def _debug_requested(args: list[str]) -> bool:
    head = args[: args.index("--")] if "--" in args else args
    return "--debug" in head or os.environ.get("DLNLP_DEBUG", "") not in ("", "0")


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _stdout_identity() -> tuple[int, int] | None:
    """What file descriptor 1 refers to (device, inode): it changes when a library silences a broken stdout."""
    try:
        info = os.fstat(1)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _click_exit_code(exc: Exception) -> int | None:
    """Exit code for Click's control-flow exceptions, or None for anything else.

    Typer vendors Click in recent versions and uses the real ``click`` in older ones, so these are
    recognised by shape: usage errors carry ``show()`` and ``exit_code``, ``Exit`` carries ``exit_code``.
    """
    if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
        exc.show()
        return exc.exit_code
    if type(exc).__name__ == "Exit" and isinstance(getattr(exc, "exit_code", None), int):
        return exc.exit_code
    if type(exc).__name__ == "Abort":
        print("dlnlp: interrupted", file=sys.stderr)
        return 130
    return None


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``with`` block unwinds (temporary outputs are
    removed) before the process exits with 128 + 15."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and maps failures to exit codes 1 (failure), 2 (usage), 130 (interrupt)."""
    from dlnlp.progress import mark_run_start

    # --max-time budgets count from here, or from the process's start when this is the process's command
    mark_run_start(process=argv is None)
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    if debug:
        os.environ["DLNLP_DEBUG"] = "1"
        if "--" in args:
            cut = args.index("--")
            args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
        else:
            args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(build_app(only=_requested_group(args)))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)  # training installs its own handler while it runs
    stdout_was = _stdout_identity()
    try:
        result = command.main(args=args, prog_name="dlnlp", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except (KeyboardInterrupt, typer.Abort):
        print("dlnlp: interrupted", file=sys.stderr)
        code = 130
    except Terminated:
        print("dlnlp: terminated (SIGTERM)", file=sys.stderr)
        code = 143
    except BrokenPipeError:
        # The reader went away (`dlnlp ... | head`): not an error. Silence the flush at exit.
        _silence_stdout()
        code = 0
    except SystemExit as exc:
        # Click answers a broken pipe with sys.exit(1) after wrapping stdout to pacify the flush;
        # rich (Typer's --help) with SystemExit(1) after pointing stdout at /dev/null.
        if exc.code == 1 and (type(sys.stdout).__name__ == "PacifyFlushWrapper" or _stdout_identity() != stdout_was):
            _silence_stdout()
            code = 0
        else:
            raise
    except DlnlpError as exc:
        if debug:
            traceback.print_exc()
        print(f"dlnlp: error: {exc}", file=sys.stderr)
        code = 2 if isinstance(exc, UsageError) else 1  # a value outside an option's choices is a usage error
    except Exception as exc:
        code = _click_exit_code(exc)
        if code is None:  # an unexpected failure: still one line unless --debug
            if debug:
                traceback.print_exc()
            detail = str(exc).splitlines()[0] if str(exc) else ""
            print(f"dlnlp: error: internal error: {type(exc).__name__}: {detail} (run with --debug for a traceback)",
                  file=sys.stderr)
            code = 1
    finally:
        mark_run_start(clear=True)  # library calls after this command in the same process count from their own start
    sys.exit(code)
