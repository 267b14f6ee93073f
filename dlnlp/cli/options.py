"""Options shared by every command, declared once (spaCy-style) and reused by name.

Use them as annotations with the default in the signature::

    def train(inputs: Inputs = None, out: OutDir = ..., device: Device = "auto", seed: Seed = 0): ...
"""

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:  # not at import time: `dlnlp --help` and pipelines start without torch
    from dlnlp.recipes.vectors import Counting
    from dlnlp.settings import GivenOption
    from dlnlp.training.config import TrainConfig

COMMON = "Common options"
TRAINING = "Training options"
INPUT = "Input options"
COUNTING = "Counting options"
DECODE = "Decoding options"
EMBED = "Embedding options"

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


def _apply_threads(value: Optional[int]) -> Optional[int]:
    # Click calls this while parsing, given or not, so the threads are set once, before the command's
    # torch work; see dlnlp.threads.
    from dlnlp.threads import configure_threads

    configure_threads(value)
    return value


Threads = Annotated[
    Optional[int],
    typer.Option("--threads", min=1, callback=_apply_threads, rich_help_panel=COMMON,
                 help="CPU threads for Torch (default: DLNLP_THREADS, else OMP_NUM_THREADS, else the physical "
                      "cores less the processes busy when it starts, which keeps its speed on a shared machine); "
                      "interop threads "
                      "stay at 1-2."),
]
Workers = Annotated[int, typer.Option("--workers", help="Worker threads/processes (0: all cores).",
                                      rich_help_panel=COMMON)]

TextField = Annotated[
    Optional[str],
    typer.Option("--text-field", help="Column holding the text in jsonl/csv/tsv/parquet inputs and HF datasets "
                 "(hf:NAME[:CONFIG]:SPLIT or a save_to_disk directory; default there: text).", rich_help_panel=INPUT),
]
Streaming = Annotated[
    bool,
    typer.Option("--streaming", help="hf:NAME[:CONFIG]:SPLIT inputs: read the dataset record by record from the "
                 "hub instead of downloading it first.", rich_help_panel=INPUT),
]
LabelField = Annotated[
    Optional[str], typer.Option("--label-field", help="Column holding the label.", rich_help_panel=INPUT)
]
EncodingErrors = Annotated[
    str,
    typer.Option("--encoding-errors", help="strict (undecodable bytes are an error), replace or ignore.",
                 rich_help_panel=INPUT),
]

Ids = Annotated[bool, typer.Option("--ids", help="The corpus is ids from `dlnlp tokenize encode --format ids`; "
                                   "give its --tokenizer too, so that lines end with its end-of-text and the "
                                   "model reads text.", rich_help_panel=INPUT)]
IdsEos = Annotated[Optional[int], typer.Option("--eos-id", help="With --ids: the id that ends each line (default: "
                                               "the --tokenizer's end-of-text; a line already ending with it "
                                               "gets no second one).", rich_help_panel=INPUT)]
IdsVocabSize = Annotated[Optional[int], typer.Option("--vocab-size", help="With --ids: the vocabulary size (default: "
                                                     "largest id + 1).", rich_help_panel=INPUT)]

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
InitFrom = Annotated[
    Optional[Path],
    typer.Option("--init-from", help="Start from this model's weights, shape and tokenizer (a run of this command "
                 "or an imported checkpoint) with a new optimizer and schedule: fine-tuning.",
                 rich_help_panel=TRAINING, show_default=False),
]
Validation = Annotated[Optional[Path], typer.Option("--val", help="Validation file.", rich_help_panel=TRAINING)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.",
                                      rich_help_panel=TRAINING)]
KeepData = Annotated[bool, typer.Option("--keep-data", help="Keep the spooled training tokens in --out/data "
                                        "after the run (removed by default; --resume reads the corpus again "
                                        "and checks it is the same).", rich_help_panel=TRAINING)]
Compile = Annotated[bool, typer.Option("--compile", help="Use torch.compile.", rich_help_panel=TRAINING)]
WeightDecay = Annotated[float, typer.Option("--weight-decay", help="AdamW decoupled weight decay.",
                                            rich_help_panel=TRAINING)]
Schedule = Annotated[str, typer.Option("--schedule", help="constant, linear or cosine (over --max-steps/--epochs "
                                       "or the --max-time budget).", rich_help_panel=TRAINING)]
Warmup = Annotated[int, typer.Option("--warmup", help="Linear warmup steps.", rich_help_panel=TRAINING)]
MinLrRatio = Annotated[float, typer.Option("--min-lr-ratio", help="Final learning rate as a share of --lr.",
                                           rich_help_panel=TRAINING)]
Clip = Annotated[float, typer.Option("--clip", help="Max gradient norm (0: off).", rich_help_panel=TRAINING)]
GradAccum = Annotated[int, typer.Option("--grad-accum", help="Batches per optimizer step.",
                                        rich_help_panel=TRAINING)]
ValFraction = Annotated[float, typer.Option("--val-fraction", help="Without --val: hold out this last share of the "
                                            "corpus.", rich_help_panel=TRAINING)]
EvalInterval = Annotated[int, typer.Option("--eval-interval", help="Steps between validations (0: at the end).",
                                           rich_help_panel=TRAINING)]
EvalBatches = Annotated[Optional[int], typer.Option("--eval-batches", help="Batches per periodic validation "
                                                    "(none: all; the final one is always the whole text).",
                                                    rich_help_panel=TRAINING)]
LogInterval = Annotated[int, typer.Option("--log-interval", help="Steps between metrics lines.",
                                          rich_help_panel=TRAINING)]

# Counting options: how a corpus becomes a vocabulary and co-occurrence counts (glove, vectors ppmi-svd).
Window = Annotated[int, typer.Option("--window", help="Context words on each side.", rich_help_panel=COUNTING)]
MinCount = Annotated[int, typer.Option("--min-count", help="Drop words seen fewer times (vocab_count's "
                                       "-min-count).", rich_help_panel=COUNTING)]
MaxVocab = Annotated[Optional[int], typer.Option("--max-vocab", help="Keep at most this many most frequent words.",
                                                 rich_help_panel=COUNTING)]
Symmetric = Annotated[bool, typer.Option("--symmetric/--left-only", help="Count left and right context, or the "
                                         "left context only (cooccur's -symmetric).", rich_help_panel=COUNTING)]
DistanceWeighting = Annotated[bool, typer.Option("--distance-weighting/--no-distance-weighting",
                                                 help="Add 1/d for a context d words away (else 1).",
                                                 rich_help_panel=COUNTING)]
CrossLines = Annotated[bool, typer.Option("--cross-lines", help="Treat the corpus as one token stream (windows "
                                          "cross line ends, as GloVe 1.0); default: a line is a document.",
                                          rich_help_panel=COUNTING)]
Memory = Annotated[str, typer.Option("--memory", help="Memory budget for counting, a size such as 512M or 2G (a "
                                     "plain number is GiB); beyond it sorted shards spill to disk and are merged "
                                     "(cooccur's -memory).", metavar="SIZE", rich_help_panel=COUNTING)]
TempDir = Annotated[Optional[Path], typer.Option("--temp-dir", help="Directory for spilled shards (default: the "
                                                 "system temporary directory).", rich_help_panel=COUNTING)]
# The old spelling of --temp-dir (glove, vectors ppmi-svd), still accepted; see temp_dir().
TmpDirAlias = Annotated[Optional[Path], typer.Option("--tmp-dir", hidden=True)]

_SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_memory(text: str, option: str = "--memory", *, plain: str = "G") -> int:
    """A size such as ``512M``, ``2G``, ``1.5GB`` or ``100K`` -> bytes (binary units, case-insensitive).

    ``plain`` is the unit of a bare number (``G`` for glove and ppmi-svd, ``B`` for ngram train): what
    the option meant before it took sizes, so existing scripts keep working.
    """
    from dlnlp.errors import OptionError

    value = text.strip().upper()
    if value.endswith("IB"):  # 2GiB
        value = value[:-2]
    elif len(value) > 1 and value.endswith("B") and value[-2] in _SIZE_UNITS:  # 2GB
        value = value[:-1]
    unit = value[-1] if value and value[-1] in _SIZE_UNITS else plain
    number = value[:-1] if value and value[-1] in _SIZE_UNITS else value
    try:
        amount = float(number)
    except ValueError:
        amount = float("nan")
    if not (amount > 0 and amount != float("inf")) or int(amount * _SIZE_UNITS[unit]) < 1:
        raise OptionError(f"{option} must be a size > 0 such as 512M or 2G, got {text!r}")
    if not (value and value[-1] in _SIZE_UNITS):
        from dlnlp.progress import warn

        # a bare number keeps the command's old unit, which differs between commands: ask for a unit
        warn(f"{option} {text.strip()} has no unit and is read as {_format_size(int(amount * _SIZE_UNITS[unit]))}; "
             f"give a unit (e.g. {text.strip()}{plain})")
    return int(amount * _SIZE_UNITS[unit])


def _format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _SIZE_UNITS[unit]:
            return f"{size / _SIZE_UNITS[unit]:g}{unit}"
    return f"{size}B"


def temp_dir(value: Path | None, alias: Path | None) -> Path | None:
    """The temporary directory from ``--temp-dir`` or its old spelling ``--tmp-dir``; it must exist."""
    from dlnlp.errors import OptionError

    if value is not None and alias is not None and value != alias:
        raise OptionError("--temp-dir and --tmp-dir (its old name) give different directories; give --temp-dir only")
    chosen, option = (value, "--temp-dir") if value is not None else (alias, "--tmp-dir")
    if chosen is not None and not chosen.is_dir():
        raise OptionError(f"{option} {chosen}: no such directory")
    return chosen


def counting(*, window: int, min_count: int, max_vocab: int | None, symmetric: bool, distance_weighting: bool,
             cross_lines: bool, memory: str, temp_dir: Path | None) -> "Counting":
    """The :class:`~dlnlp.recipes.vectors.Counting` of the counting options (``--memory`` parsed)."""
    from dlnlp.recipes.vectors import Counting

    return Counting(window=window, min_count=min_count, max_vocab=max_vocab, symmetric=symmetric,
                    distance_weighting=distance_weighting, cross_lines=cross_lines,
                    memory_bytes=parse_memory(memory), temp_dir=temp_dir)


# The training options every trainer-driven command shares, in --help order: the annotation each is
# declared with and its default when a command names none (see training_options).
_TRAINING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "batch_size": (BatchSize, 32), "lr": (LearningRate, 1e-3), "weight_decay": (WeightDecay, 0.0),
    "beta2": (Beta2, 0.999), "ema": (Ema, 0.0), "schedule": (Schedule, "constant"), "warmup": (Warmup, 0),
    "min_lr_ratio": (MinLrRatio, 0.0), "clip": (Clip, 1.0), "grad_accum": (GradAccum, 1), "epochs": (Epochs, None),
    "max_steps": (MaxSteps, None), "max_time": (MaxTime, None), "val": (Validation, None),
    "val_fraction": (ValFraction, 0.1), "eval_interval": (EvalInterval, 250), "eval_batches": (EvalBatches, None),
    "log_interval": (LogInterval, 50), "resume": (Resume, False), "compile": (Compile, False),
    "keep_data": (KeepData, False),
}


@dataclass
class TrainingOptions:
    """The values of the shared training options, as one command receives them (``training_options``)."""

    batch_size: int
    lr: float
    weight_decay: float
    beta2: float
    ema: float
    schedule: str
    warmup: int
    min_lr_ratio: float
    clip: float
    grad_accum: int
    epochs: float | None
    max_steps: int | None
    max_time: float | None
    val: Path | None
    val_fraction: float
    eval_interval: int
    eval_batches: int | None
    log_interval: int
    resume: bool
    compile: bool
    keep_data: bool = False

    def stops(self) -> dict[str, Any]:
        """The stopping options as TrainConfig fields (a resumed run takes these over its saved ones)."""
        return {"max_steps": self.max_steps, "epochs": self.epochs, "max_time": self.max_time}

    def train_config(self, *, device: str, precision: str, seed: int, quiet: bool, optimizer: str = "adamw",
                     momentum: float = 0.9) -> "TrainConfig":
        """The :class:`~dlnlp.training.TrainConfig` of these options and the common ones.

        Without --max-steps, --epochs or --max-time a run makes one pass (``--epochs 1``); ``--clip 0``
        is no clipping. Not validated here: the recipe does it (one-line errors naming the option).
        """
        from dlnlp.training.config import TrainConfig

        stops = self.stops()
        if all(v is None for v in stops.values()):
            stops["epochs"] = 1.0
        return TrainConfig(
            optimizer=optimizer, lr=self.lr, weight_decay=self.weight_decay, betas=(0.9, self.beta2),
            momentum=momentum, schedule=self.schedule, warmup_steps=self.warmup, min_lr_ratio=self.min_lr_ratio,
            clip=self.clip or None, grad_accum=self.grad_accum, ema_decay=self.ema, precision=precision,
            device=device, eval_interval=self.eval_interval, eval_batches=self.eval_batches,
            log_interval=self.log_interval, seed=seed, compile=self.compile, quiet=quiet, **stops,
        )


def training_options(**defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared training options, declared here once, with its own ``defaults``.

    The command declares a parameter ``training: TrainingOptions``; Typer sees the options in its place
    (``--batch-size``, ``--lr``, ... ``--compile``) and the command receives their values as one
    :class:`TrainingOptions`. Click's option decorators do the same for Click commands.
    """
    unknown = set(defaults) - set(_TRAINING_OPTIONS)
    if unknown:
        raise TypeError(f"not shared training options: {', '.join(sorted(unknown))}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        names = list(signature.parameters)
        at = names.index("training")
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                    default=defaults.get(name, default))
                  for name, (annotation, default) in _TRAINING_OPTIONS.items()]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            training = TrainingOptions(**{name: values.pop(name) for name in _TRAINING_OPTIONS})
            return command(**values, training=training)

        run.__signature__ = signature.replace(parameters=own[:at] + shared + own[at + 1:])
        run.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "training"},
                               **{name: annotation for name, (annotation, _) in _TRAINING_OPTIONS.items()}}
        del run.__wrapped__  # Typer reads the signature above, not the command's own
        return run

    return decorate


def given_options(ctx: typer.Context) -> dict[str, "GivenOption"]:
    """The options of the running command (``ctx``) that were given on the command line or by an
    environment variable (Click's parameter source), not left at their defaults: what ``--resume`` and
    ``--init-from`` check against the saved run."""
    from dlnlp.settings import GivenOption

    given = {}
    for param in ctx.command.params:
        # (by name: Typer vendors Click in recent versions, the real one in older ones)
        if getattr(param, "param_type_name", None) != "option" or param.name not in ctx.params:
            continue
        source = ctx.get_parameter_source(param.name)
        if getattr(source, "name", None) not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        flag = max(param.opts, key=len)  # --tokenizer rather than -t
        off = max(param.secondary_opts, key=len) if param.secondary_opts else None
        given[param.name] = GivenOption(param.name, ctx.params[param.name], flag, off)
    return given


def corpus_options(text_field: str | None = None, encoding_errors: str = "strict", label_field: str | None = None,
                   *, streaming: bool = False):
    """The CorpusOptions for the shared input options."""
    from dlnlp.io.corpus import CorpusOptions

    return CorpusOptions(text_field=text_field, encoding_errors=encoding_errors, label_field=label_field,
                         streaming=streaming)


def print_json(result: Any) -> None:
    """The one JSON object of final results that ``--json`` prints on stdout."""
    import json  # not at import time: most runs print no JSON

    from dlnlp.progress import follower_process

    if follower_process():  # under torchrun, rank 0 prints the results
        return
    sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def run_conversion(convert: Callable[..., Path], source: Path, out: Path, *, force: bool, json: bool,
                   **kwargs: Any) -> None:
    """``import``/``export`` commands: refuse an existing ``out`` before any work, ``convert(source, out)``,
    and with --json print where it went."""
    from dlnlp.io.atomic import check_can_write

    check_can_write(out, force, inputs=[source], directory=True)
    path = convert(source, out, force=force, **kwargs)
    if json:
        print_json({"out": str(path)})


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


# Decoding options (generate, rnn sample, ngram generate): one meaning everywhere. --temperature 0 is
# greedy, --top-k 0 no limit (checked by dlnlp.kernels.sampling.check_sampling_args in the library);
# --prompt (-p) is the text to continue, with --prime kept as a hidden alias where it existed.
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
    from dlnlp.errors import OptionError

    if prompt is not None and prime is not None:
        raise OptionError("--prompt and --prime are the same option; give one")
    name = "--prime" if prime is not None else "--prompt"
    text = prime if prime is not None else prompt
    if text is None:
        return default, name
    return checked_utf8(text, name), name


# Sentence-embedding options (bert embed, bert similar): how a text's hidden states become one vector.
Pool = Annotated[str, typer.Option("--pool", help="mean (the average over the tokens, as sentence-transformers) "
                                   "or cls (the [CLS] state).", rich_help_panel=EMBED)]
Layer = Annotated[Optional[int], typer.Option("--layer", help="Hidden state to pool: 0 = embeddings, 1..L the "
                                              "layers, negative from the top (default: the top layer).",
                                              rich_help_panel=EMBED)]
Normalize = Annotated[bool, typer.Option("--normalize", help="Scale each vector to unit length (L2), as "
                                         "sentence-transformers models such as all-MiniLM-L6-v2 expect.",
                                         rich_help_panel=EMBED)]
InferenceBatchSize = Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.",
                                                 rich_help_panel=COMMON)]
