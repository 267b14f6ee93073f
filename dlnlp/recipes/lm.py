"""What every language-model recipe shares (``rnn train``, ``gpt train`` and their ``eval``).

A run directory is prepared the same way for every LM: the corpus is spooled to ``out/data`` as
token ids (characters, a dlnlp tokenizer, or piped ids), the vocabulary or tokenizer is stored
beside the weights and ``config.json`` is written before training starts. ``out/data`` is a working
copy of the corpus: a run that ends removes it (``keep_data`` keeps it), and ``--resume`` spools the
corpus again when it is gone, from the paths and options recorded in config.json's ``spool``, and
refuses unless the new tokens have the same SHA-256 as the first (the corpus is the same). A run
stopped by Ctrl-C or a failure keeps it, so resuming then reads no text. All of it happens in a
:class:`~dlnlp.io.modeldir.RunOutput`: a locked staging directory that replaces ``out`` only at the
first checkpoint, so a run that fails before it leaves the previous ``out`` as it was and nothing
else. Resuming reads that directory back; the summary a run prints and returns has the same fields
for every model.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import DlnlpError, InputError, OptionError, checked
from dlnlp.io.corpus import (
    STDIN,
    CorpusOptions,
    corpus_differences,
    describe_inputs,
    fingerprint_inputs,
    iter_lines,
    resolve_inputs,
)
from dlnlp.io.modeldir import RunOutput, make_config, read_config, write_config
from dlnlp.kernels.device import seed_everything
from dlnlp.progress import log, run_started
from dlnlp.settings import GivenOption
from dlnlp.threads import current_threads
from dlnlp.tokenization.text_codec import CharCodec, IdsCodec, TextCodec
from dlnlp.training import distributed
from dlnlp.training.checkpoint import read_checkpoint_meta
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import DATA_DIR, META_NAME, LMData, load_lm_data, prepare_lm_data
from dlnlp.training.trainer import Trainer, TrainResult


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
    val_fraction: float = 0.1, options: CorpusOptions | None = None, force: bool = False, eos_id: int | None = None,
    prepare: Callable[..., Any] = prepare_lm_data, load: Callable[..., Any] = load_lm_data, device: str = "auto",
    keep_data: bool = False, codec: TextCodec | None = None,
) -> Iterator[LMRun]:
    """Open ``out`` as a :class:`RunOutput`, spool the corpus, store the vocabulary/tokenizer and
    ``make_config(run)`` as config.json, and yield the run; train inside the ``with`` block.

    ``tokenizer`` None (or "char") means character level; ``ids`` reads `dlnlp tokenize encode` output,
    each line ended by ``eos_id`` (default: the tokenizer's end-of-text). ``ids`` with a tokenizer
    records it: the model then reads text, as if it had been trained on the text. ``prepare`` spools
    the corpus (:func:`~dlnlp.training.data.prepare_lm_data`'s arguments; its result has ``codec``):
    another layout plugs in here, such as BERT's sentence shards. ``codec`` (a model's, for
    ``--init-from``) keeps that model's tokenizer or character vocabulary instead of ``tokenizer``.
    When the ``with`` block ends without an exception, ``out/data`` is removed unless ``keep_data``.

    Under torchrun (``device`` picks the backend) rank 0 alone does all of this; the other processes
    wait for it, then ``load`` the spooled data from its staging directory (``load_lm_data``'s
    arguments) and yield a run that writes nothing (:class:`~dlnlp.training.distributed.FollowerOutput`).
    """
    if val is not None and not Path(val).is_file():
        raise InputError(f"{val}: no such validation file")
    if ids and tokenizer == "char":
        raise OptionError("--tokenizer char cannot be used with --ids (give the tokenizer that wrote the ids)")
    if eos_id is not None and not ids:
        raise OptionError("--eos-id needs --ids (text is ended by its tokenizer's end-of-text)")
    tok = fixed = None
    if codec is not None:  # a tokenizer codec has .tokenizer, a character codec .vocab
        tok = getattr(codec, "tokenizer", None)
        fixed = getattr(codec, "vocab", None)
    elif tokenizer not in (None, "char"):
        from dlnlp.tokenization import load_tokenizer

        tok = load_tokenizer(tokenizer)
    dist = distributed.context(device)
    if not dist.is_main:  # rank 0 prepares the run; this process reads what it spooled
        path = dist.broadcast_object(None)
        if path is None:
            raise DlnlpError("rank 0 could not prepare the run (its error says why)")
        data = load(path, vocab=tok)
        if data.codec is None:
            from dlnlp.tokenization.text_codec import load_codec

            data.codec = load_codec(path, read_config(path), data.vocab_size)
        run = LMRun(distributed.FollowerOutput(path, out), data, data.level, tok)
        make_config(run)  # the model's settings that come from the data (vocabulary size)
        yield run
        dist.barrier()  # rank 0 removes the spooled data only once every process is done with it
        return
    sources = [*(inputs or []), val, tok.path if tok is not None else None]
    announced = False
    try:
        with RunOutput(out, force=force, inputs=sources) as output:
            directory = output.path
            spool = "ids" if ids else ("char" if tok is None else "tokenizer")
            spool_args = {"level": spool, "val_fraction": val_fraction, "vocab_size": vocab_size, "eos_id": eos_id}
            data = prepare(inputs, directory, tokenizer=tok if tok is not None else fixed, val=val, options=options,
                           **spool_args)
            if ids and tok is None and eos_id is None:
                from dlnlp.progress import warn

                warn("--ids without --tokenizer or --eos-id: lines are joined with nothing between them; give the "
                     "tokenizer that wrote the ids (or --eos-id) so the model sees where lines end")
            data.codec.save(directory)  # the vocabulary or tokenizer beside the weights
            run = LMRun(output, data, data.codec.level, tok)
            config = make_config(run)
            config["spool"] = _spool_record(inputs, val, options, tok is not None, spool_args, directory)
            # what --resume compares a corpus given again with (io.corpus.corpus_differences)
            config["corpus"] = corpus_record(inputs, val, options)
            write_config(directory, config)
            dist.broadcast_object(str(directory))
            announced = True
            yield run
            dist.barrier()
            _finish_data(output.path, keep_data, config["spool"], quiet=_quiet(config))
    finally:
        if not announced:  # the other processes wait for the run: tell them it failed
            dist.broadcast_object(None)


def corpus_record(inputs: Sequence[str] | None, val: str | Path | None,
                  options: CorpusOptions | None) -> dict[str, Any]:
    """The identity of a run's corpus, kept in config.json: the inputs' and ``val``'s paths, sizes and
    hashes (:func:`~dlnlp.io.corpus.fingerprint_inputs`) and how they were read."""
    options = options or CorpusOptions()
    return {"inputs": fingerprint_inputs(inputs), "val": fingerprint_inputs([str(val)]) if val is not None else None,
            "text_field": options.text_field, "encoding_errors": options.encoding_errors}


# Options a resumed run may take anew: how long and where it runs, how often it validates and logs,
# and what it prints. Every other option given with --resume must equal the run's (check_resume_options).
RESUMABLE_OPTIONS = frozenset({
    "max_steps", "max_time", "epochs", "eval_interval", "eval_batches", "log_interval", "device", "threads",
    "precision", "compile", "quiet", "json", "resume", "out", "force", "debug",
})


def training_view(config: dict[str, Any]) -> dict[str, Any]:
    """The shared training options' values of a run (config.json), by option name, for
    :func:`check_resume_options`."""
    train = config.get("train", {})
    data = config.get("data") or {}
    corpus = config.get("corpus") or {}
    view = {"lr": train.get("lr"), "weight_decay": train.get("weight_decay"), "ema": train.get("ema_decay"),
            "schedule": train.get("schedule"), "warmup": train.get("warmup_steps"),
            "min_lr_ratio": train.get("min_lr_ratio"), "clip": train.get("clip") or 0.0,
            "grad_accum": train.get("grad_accum"), "seed": train.get("seed"), "optimizer": train.get("optimizer"),
            "momentum": train.get("momentum"), "val_fraction": data.get("val_fraction"),
            "text_field": corpus.get("text_field"), "encoding_errors": corpus.get("encoding_errors"),
            "eos_id": config.get("eos_id")}
    if train.get("betas"):
        view["beta2"] = train["betas"][1]
    if "batch_size" in config:
        view["batch_size"] = config["batch_size"]
    return view


def check_resume_options(directory: Path, view: dict[str, Any], given: dict[str, GivenOption],
                         inputs: Sequence[str] | None, corpus: dict[str, Any] | None) -> None:
    """Refuse options given with ``--resume`` that differ from the run's (``view``, by option name; a
    callable value tests the given one), and a corpus or ``--val`` file that is not the run's; the message names the option. Options in
    :data:`RESUMABLE_OPTIONS` may change."""
    def refuse(what: str, option: str) -> None:
        raise OptionError(f"{what}; --resume continues the run in {directory} as it was started: leave {option} "
                          "out, or start a new run (--force to replace it)")

    for name, option in given.items():
        if name in RESUMABLE_OPTIONS or name == "val":
            continue
        if name == "ids":
            continue  # the spooled ids are reused; the corpus itself is compared below
        if name not in view:
            refuse(f"{option.typed} cannot be checked against the run", option.typed)
        saved = view[name]
        if callable(saved):  # a family's own test (a tokenizer given again against the run's text level)
            if not saved(option.value):
                refuse(f"{option.show()} differs from the run's text level ({view.get('level')})", option.typed)
            continue
        same = (option.value == saved if not isinstance(saved, float) or not isinstance(option.value, (int, float))
                else math.isclose(option.value, saved, rel_tol=1e-9, abs_tol=0.0))
        if not same:
            refuse(f"{option.show()} differs from the run's {option.show(saved, saved=True)}", option.typed)
    recorded = corpus or {}
    if inputs:
        if "inputs" not in recorded:
            refuse("the run did not record its corpus, so a corpus given with --resume cannot be checked", "the corpus")
        reason = corpus_differences(inputs, recorded["inputs"])
        if reason:
            refuse(reason, "the corpus")
    if "val" in given and given["val"].value is not None:
        if not recorded.get("val"):
            refuse("--val differs from the run's (it held out part of its corpus)", "--val")
        reason = corpus_differences([str(given["val"].value)], recorded["val"])
        if reason:
            refuse(f"--val: {reason}", "--val")


@contextmanager
def resumed_lm_run(out: str | Path, kind: str, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                   compile: bool = False, load_data: Callable[[Path], Any] = load_lm_data,
                   prepare: Callable[..., Any] = prepare_lm_data, keep_data: bool = False,
                   given: dict[str, GivenOption] | None = None, inputs: Sequence[str] | None = None,
                   view: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                   ) -> Iterator[tuple[RunOutput, dict[str, Any], TrainConfig, LMData]]:
    """(output, config.json, train config, data) of the run in ``out``, locked while the ``with`` block
    runs; ``stops`` override its limits; ``load_data(directory)`` re-opens the spooled data, which
    ``prepare`` (the one the run started with) spools again first when the run removed it. When the
    ``with`` block ends without an exception, ``out/data`` is removed unless ``keep_data``. Under
    torchrun rank 0 locks the run (and spools again) and the others read it once it has.

    ``given`` (the options typed on the command line) and ``inputs`` (a corpus given again) are
    checked against the run first (:func:`check_resume_options`, with ``view(config)`` the family's
    option values on top of :func:`training_view`)."""
    dist = distributed.context(device)
    with _resume_output(out, dist) as output:
        config = read_config(output.path, kind)
        if given or inputs:
            values = {**training_view(config), "level": config.get("level"), **(view(config) if view else {})}
            check_resume_options(output.target, values, given or {}, inputs, config.get("corpus"))
        meta = read_checkpoint_meta(output.path)
        overrides = {k: v for k, v in stops.items() if v is not None}
        train_config = TrainConfig.from_dict(meta["config"]).replace(quiet=quiet, device=device, compile=compile,
                                                                     **overrides)
        checked(train_config)
        respooled = dist.is_main and not (output.path / DATA_DIR / META_NAME).is_file()
        if respooled:
            respool(output.path, config.get("spool"), prepare, quiet=quiet)
        dist.barrier()  # the other processes read the data once rank 0 has spooled it again
        try:
            yield output, config, train_config, load_data(output.path)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (TrainingInterrupted): the checkpoint moved on
            raise  # keep the data for the next --resume
        except BaseException:
            if respooled:  # a failed resume leaves the directory as it found it
                shutil.rmtree(output.path / DATA_DIR, ignore_errors=True)
            raise
        dist.barrier()
        if dist.is_main and config.get("spool") is not None:
            _finish_data(output.path, keep_data, config["spool"], quiet=quiet)


def _quiet(config: dict[str, Any]) -> bool:
    train = config.get("train")
    return bool(train.get("quiet")) if isinstance(train, dict) else False


def _digests(data_dir: Path) -> dict[str, str]:
    """SHA-256 of every spooled file but the description: the identity of the token stream."""
    digests = {}
    for path in sorted(data_dir.iterdir()):
        if path.name == META_NAME or not path.is_file():
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digests[path.name] = digest.hexdigest()
    return digests


def _spool_record(inputs: Sequence[str] | None, val: str | Path | None, options: CorpusOptions | None,
                  tokenizer: bool, spool_args: dict[str, Any], directory: Path) -> dict[str, Any]:
    """What --resume needs to spool the same tokens again: the inputs (absolute, globs expanded; None
    for standard input, which cannot be read twice), the reading options and the tokens' digests."""
    from dlnlp.io.shards import shard_directory

    shards = shard_directory(inputs)  # read in place: the directory is the input
    resolved = [str(shards)] if shards is not None else resolve_inputs(inputs)
    readable = STDIN not in resolved
    options = options or CorpusOptions()
    return {
        "inputs": [str(Path(p).absolute()) if Path(p).exists() else p for p in resolved] if readable else None,
        "val": str(Path(val).absolute()) if val is not None else None, "tokenizer": tokenizer,
        "options": {"text_field": options.text_field, "encoding_errors": options.encoding_errors,
                    "label_field": options.label_field},
        **spool_args, "sha256": _digests(directory / DATA_DIR),
    }


def _finish_data(directory: Path, keep: bool, record: dict[str, Any], *, quiet: bool) -> None:
    """Remove the run's spooled copy of the corpus at its end, unless asked to keep it."""
    data_dir = directory / DATA_DIR
    if keep or not data_dir.exists():
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    if record.get("inputs") is None:
        log(f"removed {data_dir} (the corpus came from standard input, so this run cannot be resumed; "
            "--keep-data keeps it)", quiet=quiet)


def respool(directory: Path, record: dict[str, Any] | None, prepare: Callable[..., Any] = prepare_lm_data, *,
            quiet: bool = False) -> None:
    """Spool the corpus of the run in ``directory`` again (its ``data/`` was removed at the end of the
    run) from config.json's ``spool`` record; refuse when the tokens differ from the first spool's."""
    from dlnlp.tokenization import load_tokenizer

    data_dir = directory / DATA_DIR
    if not isinstance(record, dict) or "sha256" not in record:
        raise InputError(f"{data_dir}: no spooled training data, and config.json does not say where the corpus "
                         "was (a run from an older dlnlp that lost its data/)")
    if record.get("inputs") is None:
        raise InputError(f"{directory}: the run read its corpus from standard input and its spooled copy was "
                         "removed at the end; it cannot be resumed (start runs on piped text with --keep-data "
                         "to resume them later)")
    if data_dir.exists():  # a half-written spool from an interrupted resume
        shutil.rmtree(data_dir)
    log(f"spooling {describe_inputs(record['inputs'])} again (the run removed its copy; --keep-data keeps it)",
        quiet=quiet)
    tokenizer = load_tokenizer(directory) if record.get("tokenizer") else None
    options = CorpusOptions(**record.get("options", {}))
    try:
        prepare(record["inputs"], directory, tokenizer=tokenizer, val=record.get("val"), options=options,
                level=record["level"], val_fraction=record["val_fraction"], vocab_size=record.get("vocab_size"),
                eos_id=record.get("eos_id"))
        same = _digests(data_dir) == record["sha256"]
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    if not same:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise InputError(f"{describe_inputs(record['inputs'])}: not the corpus this run started on (its tokens "
                         "differ); --resume needs the same text, or start a new run")


@contextmanager
def _resume_output(out: str | Path, dist: distributed.DistContext) -> Iterator[Any]:
    """The run to resume, locked (rank 0), or read once rank 0 has locked it (the other processes)."""
    if not dist.is_main:
        if not dist.broadcast_object(None):
            raise DlnlpError("rank 0 could not open the run to resume (its error says why)")
        yield distributed.FollowerOutput(out, out)
        return
    announced = False
    try:
        with RunOutput(out, resume=True) as output:
            dist.broadcast_object(True)
            announced = True
            yield output
    finally:
        if not announced:
            dist.broadcast_object(False)


@dataclass(frozen=True)
class LMRecipe:
    """One language-model family's part of the shared start / resume flow.

    The flow (:func:`start_lm_training`, :func:`resume_lm_training`) does the rest the same way for every
    family: the run directory, spooled data, vocabulary, config.json, seeding, the trainer and the summary.

    - ``config_class``: the model's config dataclass (``vocab_size`` field, ``to_dict``/``from_dict``,
      ``validate`` raising ValueError); ``build(config)`` makes the model.
    - ``shape``: the names of the batch-shape settings stored in config.json beside the model (e.g.
      ``("batch_size",)`` or ``("seq_len", "batch_size")``), each an integer >= 1 named ``--seq-len`` etc.
    - ``batches(tokens, config, shape, seed, validation)``: a batch source over a token array (the
      trainer's ``next_batch`` protocol; for validation also ``iter_eval``).
    - ``check_memory(config, train_config, shape, train_tokens)``: raise before allocating when the run
      will not fit (``shape``/``train_tokens`` are None before the corpus is read).
    - ``check_data(config, data)``: refuse a configuration the spooled data cannot serve (optional).
    - ``describe(model, data, train_batches)``: the first log line of a new run.
    - ``loss_fn``: the trainer's loss function, when ``model(*batch)`` does not return the loss.
    - ``resume_view(config)``: the model options' values in a run's config.json, by the CLI option's
      parameter name (``{"layers": config["model"]["n_layer"], ...}``), checked by ``--resume``.
    """

    kind: str
    format_version: int
    config_class: Any
    build: Callable[[Any], Any]
    shape: tuple[str, ...]
    batches: Callable[[np.ndarray, Any, dict[str, int], int, bool], Any]
    check_memory: Callable[[Any, TrainConfig, dict[str, int] | None, int | None], None]
    describe: Callable[[Any, LMData, Any], str]
    loss_fn: Callable[..., Any] | None = None
    check_data: Callable[[Any, LMData], None] | None = None
    resume_view: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def check_transformer_memory(train_config: TrainConfig, task: str, *, vocab: int, dim: int, layers: int,
                             positions: int, mlp_dim: int | None, tied: bool = True, learned_positions: bool = True,
                             batch: int | None = None, seq: int | None = None) -> None:
    """Fail before allocating when training a transformer (GPT, BERT: the same parameter and activation
    shapes) clearly needs more memory than the device has; with ``batch`` and ``seq`` a batch's
    activations count too."""
    from dlnlp.kernels.device import resolve_device
    from dlnlp.kernels.memory import activation_bytes, check_training, gpt_training_needs, state_factor

    device = resolve_device(train_config.device)
    ema = bool(train_config.ema_decay)
    needs = gpt_training_needs(vocab, dim, layers, positions, mlp_dim=mlp_dim, tied=tied,
                               learned_positions=learned_positions, batch=batch, seq=seq,
                               optimizer=train_config.optimizer, momentum=train_config.momentum, ema=ema,
                               act_bytes=activation_bytes(device, train_config.precision))
    check_training(needs, device, task=task,
                   copies=state_factor(train_config.optimizer, momentum=train_config.momentum, ema=ema))


def parameter_count(model: Any) -> int:
    """The parameters a run reports: the model's own ``num_parameters()`` or every distinct parameter
    (tied weights once)."""
    if hasattr(model, "num_parameters"):
        return int(model.num_parameters())
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def start_lm_training(
    recipe: LMRecipe, inputs: Sequence[str] | None, out: str | Path, model_config: Any, train_config: TrainConfig,
    shape: dict[str, int], *, tokenizer: str | None = None, ids: bool = False, vocab_size: int | None = None,
    val: str | Path | None = None, val_fraction: float = 0.1, options: CorpusOptions | None = None,
    force: bool = False, eos_id: int | None = None, keep_data: bool = False, init_from: str | Path | None = None,
    given: dict[str, GivenOption] | None = None,
) -> dict[str, Any]:
    """Train a new model of ``recipe``'s family on ``inputs`` into ``out``; returns the run summary.

    ``model_config`` is the family's config (its ``vocab_size`` is set from the data); ``shape`` the
    batch-shape settings (``recipe.shape``). ``tokenizer`` None (or "char") trains on characters, a
    path on that tokenizer's ids; ``ids`` reads ``dlnlp tokenize encode`` output (with ``tokenizer``,
    the tokenizer's ids; each line ended by ``eos_id``, by default the tokenizer's end-of-text).

    ``init_from`` (a model directory of the family: a dlnlp run or an imported checkpoint) starts
    from its weights, shape and tokenizer or vocabulary, with a new optimizer and schedule
    (fine-tuning); model-shape options among ``given`` (those typed on the command line) must agree
    with it, the others (dropout) apply.
    """
    started = run_started()  # --max-time counts the command's setup too
    init = None
    if init_from is not None:
        init = init_model(recipe, init_from, model_config, given or {}, ids=ids)
        model_config = init.config
        if init.codec.level == IdsCodec.level:
            vocab_size, eos_id = init.codec.vocab_size, init.codec.eos_id
    checked(train_config)
    for name in recipe.shape:
        if shape[name] < 1:
            raise OptionError(f"--{name.replace('_', '-')} must be >= 1, got {shape[name]}")
    # Before reading the corpus: the parameters alone (the vocabulary is not known yet).
    if init is None:
        model_config.vocab_size = vocab_size or 1
    checked(model_config)
    recipe.check_memory(model_config, train_config, None, None)

    def make_run_config(run: LMRun) -> dict[str, Any]:
        if init is not None and run.data.vocab_size != init.config.vocab_size:
            raise InputError(f"--init-from {init_from}: its vocabulary has {init.config.vocab_size} entries, its "
                             f"tokenizer {run.data.vocab_size}; the model cannot read this corpus")
        model_config.vocab_size = run.data.vocab_size
        checked(model_config)
        if recipe.check_data is not None:
            recipe.check_data(model_config, run.data)
        recipe.check_memory(model_config, train_config, shape, len(run.data.train))
        extra = {"init_from": str(init_from)} if init_from is not None else {}
        return make_config(recipe.kind, recipe.format_version, model=model_config.to_dict(), level=run.level,
                           eos_id=run.data.codec.eos_id, **{name: shape[name] for name in recipe.shape},
                           train=train_config.to_dict(), data=run.data.meta, **extra)

    with new_lm_run(inputs, out, make_run_config, tokenizer=tokenizer, ids=ids, vocab_size=vocab_size,
                    val=val, val_fraction=val_fraction, options=options, force=force, eos_id=eos_id,
                    device=train_config.device, keep_data=keep_data,
                    codec=init.codec if init is not None and init.codec.level != IdsCodec.level else None) as run:
        seed_everything(train_config.seed)
        if init is not None:
            log(f"starting from the weights of {init_from}", quiet=train_config.quiet)
        return _fit(recipe, model_config, train_config, run.data, run.output,
                    {name: shape[name] for name in recipe.shape}, resume=False, started=started,
                    init_state=init.state if init is not None else None)


def resume_lm_training(recipe: LMRecipe, out: str | Path, stops: dict[str, Any], *, quiet: bool = False,
                       device: str = "auto", compile: bool = False, keep_data: bool = False,
                       given: dict[str, GivenOption] | None = None,
                       inputs: Sequence[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override.

    ``given`` options (by parameter name) and a corpus given again (``inputs``) must be the run's,
    except :data:`RESUMABLE_OPTIONS`; the recipe's ``resume_view`` names its model options' values."""
    started = run_started()
    with resumed_lm_run(out, recipe.kind, stops, quiet=quiet, device=device, compile=compile, given=given,
                        inputs=inputs, view=recipe.resume_view, keep_data=keep_data) as (
            output, config, train_config, data):
        model_config = recipe.config_class.from_dict(config["model"])
        shape = {name: int(config[name]) for name in recipe.shape}
        recipe.check_memory(model_config, train_config, shape, len(data.train))
        return _fit(recipe, model_config, train_config, data, output, shape, resume=True, started=started)


def _fit(recipe: LMRecipe, model_config: Any, train_config: TrainConfig, data: LMData, output: RunOutput,
         shape: dict[str, int], *, resume: bool, started: float | None = None,
         init_state: dict[str, Any] | None = None) -> dict[str, Any]:
    model = recipe.build(model_config)
    if init_state is not None:
        model.load_state_dict(init_state)
    train = recipe.batches(data.train, model_config, shape, train_config.seed, False)
    val = recipe.batches(data.val, model_config, shape, train_config.seed, True) if data.val is not None else None
    if not resume:
        log(recipe.describe(model, data, train), quiet=train_config.quiet)
    result = Trainer(model, train_config, train, val, out_dir=output.path, loss_fn=recipe.loss_fn, resume=resume,
                     on_save=output.commit, started=started).fit()
    return run_summary(result, output.target, parameter_count(model), train_config.quiet)


def run_summary(result: TrainResult, directory: Path, parameters: int, quiet: bool) -> dict[str, Any]:
    """The summary a training command returns (and prints with --json), logged in one line."""
    summary = {
        "out": str(directory), "steps": result.steps, "epochs": round(result.epochs, 4), "tokens": result.tokens,
        "elapsed_s": round(result.elapsed, 2), "tokens_per_s": round(result.tokens / max(result.elapsed, 1e-9), 1),
        "stopped_by": result.stopped_by, "train_loss": result.last_train_loss, "val_loss": result.final_val_loss,
        "best_val_loss": result.best_val_loss, "parameters": parameters,
        "val_full": result.final_val_full,  # False: the final validation was cut short by --max-time
        "threads": current_threads(),
    }
    if result.final_val_loss is not None:
        summary["val_perplexity"] = math.exp(min(result.final_val_loss, 700))
        part = "" if result.final_val_full is not False else " on part of the held-out text (--max-time)"
        log(f"stopped by {result.stopped_by} after {result.steps} steps ({result.elapsed:.0f} s, "
            f"{summary['threads']} threads): validation "
            f"loss {result.final_val_loss:.4f}{part} (best {result.best_val_loss:.4f}); saved {directory}",
            quiet=quiet)
    else:
        log(f"stopped by {result.stopped_by} after {result.steps} steps ({result.elapsed:.0f} s, "
            f"{summary['threads']} threads): training loss "
            f"{result.last_train_loss:.4f}; saved {directory}", quiet=quiet)
    return summary


# Options --init-from takes anew (regularization and batch shape); every other model option comes with
# the model and may only be given with its value.
INIT_NEW_OPTIONS = frozenset({"dropout", "embed_dropout", "forget_bias", "seq_len", "batch_size"})
# How text becomes ids comes with the model too.
INIT_TEXT_OPTIONS = ("tokenizer", "char", "vocab_size", "eos_id")


@dataclass
class InitModel:
    """A model to fine-tune (``--init-from``): its config (with the new dropout), weights and codec."""

    config: Any
    state: dict[str, Any]
    codec: TextCodec


def init_model(recipe: LMRecipe, directory: str | Path, model_config: Any, given: dict[str, GivenOption], *,
               ids: bool = False) -> InitModel:
    """Load ``directory`` (a model of ``recipe``'s family) to start training from; refuse, naming the
    option, model options in ``given`` that contradict it and text options (it brings its own)."""
    from dlnlp.models.registry import load_model

    loaded = load_model(directory, "cpu", kind=recipe.kind)
    config = recipe.config_class.from_dict(loaded.config["model"])
    level = loaded.codec.level
    if ids and level == CharCodec.level:
        raise OptionError(f"--ids cannot be used with --init-from {directory}: it is a character model")
    if level == IdsCodec.level and not ids:
        raise OptionError(f"--init-from {directory} reads ids (it has no tokenizer): give --ids and ids from the "
                          "tokenizer that made them")
    view = recipe.resume_view(loaded.config) if recipe.resume_view else {}
    for name, option in given.items():
        agrees = name in view and not callable(view[name]) and option.value == view[name]
        if name in INIT_TEXT_OPTIONS and not agrees:
            raise OptionError(f"{option.typed} cannot be used with --init-from: the model {directory} reads text "
                              f"with its own {level} vocabulary")
        if name in INIT_NEW_OPTIONS or name not in view or callable(view[name]):
            continue
        if option.value != view[name]:
            raise OptionError(f"{option.show()} contradicts the --init-from model {directory} "
                              f"({option.show(view[name], saved=True)}); leave {option.typed} out: its shape comes "
                              "with the model")
    for name in INIT_NEW_OPTIONS:
        if name in given and hasattr(config, name):
            setattr(config, name, getattr(model_config, name))
    return InitModel(config, loaded.model.state_dict(), loaded.codec)


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
