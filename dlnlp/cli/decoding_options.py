"""Options of the decoding commands (``generate``, ``rnn sample``, ``ngram generate``), declared once.

One meaning everywhere: ``--temperature`` 0 is greedy, ``--top-k`` 0 is no limit, ``--top-p`` is the
nucleus threshold (checked by :func:`dlnlp.kernels.sampling.check_sampling_args` inside the library),
``--prompt`` (``-p``) is the text to continue, with ``--prime`` kept as a hidden alias where it
existed, and ``-n`` is the number of outputs (hypotheses or samples) or nothing.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

DECODE = "Decoding options"

Temperature = Annotated[float, typer.Option("--temperature", help="Softmax temperature (0: greedy).",
                                            rich_help_panel=DECODE)]
TopK = Annotated[Optional[int], typer.Option("--top-k", help="Sample among the k most likely tokens (0: no limit).",
                                             rich_help_panel=DECODE)]
TopP = Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling: the smallest set of tokens with "
                                               "this much probability.", rich_help_panel=DECODE)]
# A hidden alias of --prompt (``rnn sample --prime`` before the options were made one).
Prime = Annotated[Optional[str], typer.Option("--prime", hidden=True)]


def prompt_option(prompt: str | None, prime: str | None, default: str | None = None) -> tuple[str | None, str]:
    """The prompt given as ``--prompt`` or ``--prime`` (not both), checked as UTF-8, and the option's
    name as typed, for messages."""
    from dlnlp.cli.options import checked_utf8
    from dlnlp.errors import OptionError

    if prompt is not None and prime is not None:
        raise OptionError("--prompt and --prime are the same option; give one")
    name = "--prime" if prime is not None else "--prompt"
    text = prime if prime is not None else prompt
    if text is None:
        return default, name
    return checked_utf8(text, name), name
