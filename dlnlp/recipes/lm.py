"""What every language-model recipe shares (``rnn train``, ``gpt train`` and their ``eval``).

A run directory is prepared the same way for every LM: the corpus is spooled to ``out/data`` as
token ids (characters, a dlnlp tokenizer, or piped ids), the vocabulary or tokenizer is stored
beside the weights and ``config.json`` is written before training starts. All of it happens in a
:class:`~dlnlp.io.modeldir.RunOutput`: a locked staging directory that replaces ``out`` only at the
first checkpoint, so a run that fails before it leaves the previous ``out`` as it was and nothing
else. Resuming reads that directory back; the summary a run prints and returns has the same fields
for every model.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import DlnlpError, InputError
from dlnlp.io.corpus import CorpusOptions, describe_inputs, iter_lines
from dlnlp.io.modeldir import RunOutput, read_config, write_config
from dlnlp.progress import log
from dlnlp.tokenization.text_codec import TextCodec
from dlnlp.training.checkpoint import read_checkpoint_meta
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import LMData, load_lm_data, prepare_lm_data
from dlnlp.training.trainer import TrainResult


def checked(config: Any) -> None:
    """Run a config's ``validate()``; its ValueError becomes a one-line user error."""
    try:
        config.validate()
    except ValueError as exc:
        raise DlnlpError(str(exc)) from None


@dataclass
class LMRun:
    """A prepared run: its output, spooled data, and how text becomes ids (``level``)."""

    output: RunOutput
    data: LMData
    level: str  # "char", "tokenizer" or "ids"
    tokenizer: Any = None

    @property
    def directory(self) -> Path:
        return self.output.path


@contextmanager
def new_lm_run(
    inputs: Sequence[str] | None, out: str | Path, make_config: Callable[[LMRun], dict[str, Any]], *,
    tokenizer: str | None = None, ids: bool = False, vocab_size: int | None = None, val: str | Path | None = None,
    val_fraction: float = 0.1, options: CorpusOptions | None = None, force: bool = False,
) -> Iterator[LMRun]:
    """Open ``out`` as a :class:`RunOutput`, spool the corpus, store the vocabulary/tokenizer and
    ``make_config(run)`` as config.json, and yield the run; train inside the ``with`` block.

    ``tokenizer`` None (or "char") means character level; ``ids`` reads `dlnlp tokenize encode` output.
    """
    if val is not None and not Path(val).is_file():
        raise InputError(f"{val}: no such validation file")
    tok = None
    if not ids and tokenizer not in (None, "char"):
        from dlnlp.tokenization import load_tokenizer

        tok = load_tokenizer(tokenizer)
    sources = [*(inputs or []), val, tok.path if tok is not None else None]
    with RunOutput(out, force=force, inputs=sources) as output:
        directory = output.path
        level = "ids" if ids else ("char" if tok is None else "tokenizer")
        data = prepare_lm_data(inputs, directory, level=level, tokenizer=tok, val=val, val_fraction=val_fraction,
                               options=options, vocab_size=vocab_size)
        if level == "char":
            data.vocab.save(directory)
        elif level == "tokenizer":
            name = "tokenizer.model" if tok.engine == "sentencepiece" else "tokenizer.json"
            shutil.copyfile(tok.path, directory / name)
        run = LMRun(output, data, level, tok)
        write_config(directory, make_config(run))
        yield run


@contextmanager
def resumed_lm_run(out: str | Path, kind: str, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                   compile: bool = False) -> Iterator[tuple[RunOutput, dict[str, Any], TrainConfig, LMData]]:
    """(output, config.json, train config, data) of the run in ``out``, locked while the ``with`` block
    runs; ``stops`` override its limits."""
    with RunOutput(out, resume=True) as output:
        config = read_config(output.path, kind)
        meta = read_checkpoint_meta(output.path)
        overrides = {k: v for k, v in stops.items() if v is not None}
        train_config = TrainConfig.from_dict(meta["config"]).replace(quiet=quiet, device=device, compile=compile,
                                                                     **overrides)
        checked(train_config)
        yield output, config, train_config, load_lm_data(output.path)


def run_summary(result: TrainResult, directory: Path, parameters: int, quiet: bool) -> dict[str, Any]:
    """The summary a training command returns (and prints with --json), logged in one line."""
    summary = {
        "out": str(directory), "steps": result.steps, "epochs": round(result.epochs, 4), "tokens": result.tokens,
        "elapsed_s": round(result.elapsed, 2), "tokens_per_s": round(result.tokens / max(result.elapsed, 1e-9), 1),
        "stopped_by": result.stopped_by, "train_loss": result.last_train_loss, "val_loss": result.final_val_loss,
        "best_val_loss": result.best_val_loss, "parameters": parameters,
        "val_full": result.final_val_full,  # False: the final validation was cut short by --max-time
    }
    if result.final_val_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.final_val_loss, 700))
        part = "" if result.final_val_full is not False else " on part of the held-out text (--max-time)"
        log(f"stopped by {result.stopped_by} after {result.steps} steps ({result.elapsed:.0f} s): validation "
            f"loss {result.final_val_loss:.4f}{part} (best {result.best_val_loss:.4f}); saved {directory}",
            quiet=quiet)
    else:
        log(f"stopped by {result.stopped_by} after {result.steps} steps: training loss "
            f"{result.last_train_loss:.4f}; saved {directory}", quiet=quiet)
    return summary


@dataclass
class EvalText:
    """A whole evaluation text as ids, with what bits per character needs."""

    ids: np.ndarray
    characters: int | None  # None for piped ids
    unknown: int = 0
    token_is_character: bool = False  # character models: bits per character are the loss in bits


def read_eval_text(inputs: Sequence[str] | None, codec: TextCodec,
                   options: CorpusOptions | None = None) -> EvalText:
    """Encode an evaluation text the way the model's training data was encoded (``codec``)."""
    lines = list(iter_lines(inputs, options, require_text=codec.counts_characters))
    characters = sum(len(line) + 1 for line in lines) if codec.counts_characters else None
    ids = codec.encode_lines(lines, where=describe_inputs(inputs))
    unknown = codec.unknown
    if unknown:
        from dlnlp.progress import warn

        warn(f"{unknown} characters are not in the model's vocabulary; they count as <unk>")
    if len(ids) < 2:
        raise InputError("the text is too short to evaluate (fewer than 2 tokens)")
    return EvalText(ids, characters, unknown, codec.token_is_character)


def bits_per_char(loss: float, tokens: int, text: EvalText) -> float | None:
    """Total nats over the text's characters in bits: ``loss * tokens / (characters * ln 2)``; None for
    piped ids, whose characters are unknown."""
    if text.token_is_character:
        return loss / math.log(2)
    if text.characters:
        return loss * tokens / (text.characters * math.log(2))
    return None
