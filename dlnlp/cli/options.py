"""Options shared by every command, declared once (spaCy-style) and reused by name.

Use them as annotations with the default in the signature::

    def train(inputs: Inputs = None, out: OutDir = ..., device: Device = "auto", seed: Seed = 0): ...
"""

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

COMMON = "Common options"
TRAINING = "Training options"
INPUT = "Input options"

Inputs = Annotated[
    Optional[list[str]],
    typer.Argument(help="Input files or globs; '-' or nothing reads stdin; builtin:python-help is a built-in corpus.",
                   show_default=False),
]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output model directory (or file).", rich_help_panel=COMMON)]
OutFile = Annotated[
    Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.", rich_help_panel=COMMON)
]
VectorsFormat = Annotated[
    str,
    typer.Option("--format", help="Vectors output: auto (.bin word2vec binary, .txt/.vec word2vec text, else a "
                 "model directory), dir, word2vec-text, word2vec-binary or glove (GloVe's header-less text).",
                 rich_help_panel=COMMON),
]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.", rich_help_panel=COMMON)]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=COMMON)]
Precision = Annotated[
    str, typer.Option("--precision", help="auto, fp32, bf16 or fp16 (autocast on CUDA).", rich_help_panel=COMMON)
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: same seed, device and inputs give the same outputs.",
                                   rich_help_panel=COMMON)]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object of final results on stdout.",
                                    rich_help_panel=COMMON)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.", rich_help_panel=COMMON)]
Workers = Annotated[int, typer.Option("--workers", help="Worker threads/processes (0: all cores).",
                                      rich_help_panel=COMMON)]

TextField = Annotated[
    Optional[str],
    typer.Option("--text-field", help="Column holding the text in jsonl/csv/tsv/parquet inputs.", rich_help_panel=INPUT),
]
LabelField = Annotated[
    Optional[str], typer.Option("--label-field", help="Column holding the label.", rich_help_panel=INPUT)
]
EncodingErrors = Annotated[
    str,
    typer.Option("--encoding-errors", help="strict (undecodable bytes are an error), replace or ignore.",
                 rich_help_panel=INPUT),
]

BatchSize = Annotated[int, typer.Option("--batch-size", help="Batch size.", rich_help_panel=TRAINING)]
LearningRate = Annotated[float, typer.Option("--lr", help="(Peak) learning rate.", rich_help_panel=TRAINING)]
Beta2 = Annotated[float, typer.Option("--beta2", help="Adam(W) beta2, the decay of the squared-gradient average "
                                      "(0.99 adapts faster when each step sees few tokens).",
                                      rich_help_panel=TRAINING)]
Ema = Annotated[float, typer.Option("--ema", help="Weight averaging: validate and save an exponential moving "
                                    "average of the weights with this decay (e.g. 0.99; 0: off).",
                                    rich_help_panel=TRAINING)]
Epochs = Annotated[Optional[float], typer.Option("--epochs", help="Passes over the training data.",
                                                 rich_help_panel=TRAINING)]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", help="Stop after this many optimizer steps.",
                                                 rich_help_panel=TRAINING)]
MaxTime = Annotated[
    Optional[float],
    typer.Option("--max-time", help="Wall-clock budget in seconds: stop cleanly, validate and save when it runs out.",
                 rich_help_panel=TRAINING),
]
Validation = Annotated[Optional[Path], typer.Option("--val", help="Validation file.", rich_help_panel=TRAINING)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.",
                                      rich_help_panel=TRAINING)]
Compile = Annotated[bool, typer.Option("--compile", help="Use torch.compile.", rich_help_panel=TRAINING)]


def corpus_options(text_field: str | None = None, encoding_errors: str = "strict", label_field: str | None = None):
    """The CorpusOptions for the shared input options."""
    from dlnlp.io.corpus import CorpusOptions

    return CorpusOptions(text_field=text_field, encoding_errors=encoding_errors, label_field=label_field)


def print_json(result: Any) -> None:
    """The one JSON object of final results that ``--json`` prints on stdout."""
    import json  # not at import time: most runs print no JSON

    sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def checked_utf8(text: str, where: str) -> str:
    """``text`` unchanged, or an InputError when it holds bytes that were not UTF-8.

    Python hands undecodable command-line bytes (``--prompt $'\\xff'``) and, in a C locale, stdin
    bytes over as lone surrogates (U+DC80..U+DCFF); they are an encoding error like an undecodable
    input file, not characters outside a vocabulary.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        detail = (f"byte 0x{code - 0xDC00:02x} at character {exc.start + 1}" if 0xDC80 <= code <= 0xDCFF
                  else f"lone surrogate U+{code:04X} at character {exc.start + 1}")
        from dlnlp.errors import InputError

        raise InputError(f"{where}: not valid UTF-8 ({detail})") from None
    return text
