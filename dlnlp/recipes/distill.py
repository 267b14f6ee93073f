"""Knowledge distillation: the flow behind ``dlnlp distill``.

    summary = distill("mr-full", ["train.tsv"], "mr-small", DistillSpec(student="bert:layers=3"),
                      TrainConfig(lr=5e-5, epochs=3, ...), val="dev.tsv")

Classifiers (``task`` classify or pair, from the teacher):

1. the teacher (:func:`~dlnlp.transfer.distill.load_teacher`) and the labeled data, labels in the
   teacher's order;
2. the transfer set: the labeled examples, then ``unlabeled`` inputs (lines, or the text field of
   tsv/jsonl/csv/parquet rows), then augmented copies of the labeled texts
   (:class:`~dlnlp.transfer.augment.Augmenter`); only the first part carries labels;
3. the teacher's logits and pooled vectors over it, computed once and memory-mapped from the cache
   (:func:`~dlnlp.transfer.distill.teacher_outputs`);
4. the student (:func:`~dlnlp.transfer.distill.build_student`) trained by the shared trainer on
   :class:`~dlnlp.transfer.distill.DistillLoss`, with length-bucketed batches, warmup then linear
   decay, validation each epoch and the most accurate weights kept;
5. the student saved as a fine-tuned directory (``kind: finetuned``), which ``dlnlp predict`` and
   ``dlnlp evaluate`` read like any other.

With ``generations`` N > 1 (born-again networks, Furlanello et al. 2018) steps 3-5 repeat: each
generation's student is the next one's teacher; they are saved as ``OUT/gen1`` .. ``OUT/genN`` with
``OUT/generations.json`` reporting each.

Language models (``task="lm"``): a GPT student (``gpt:layers=L,dim=D``) on a dlnlp GPT or RNN teacher's
codec, trained on random windows of the corpus with
:func:`~dlnlp.transfer.distill.lm_distill_loss`. The teacher's next-token log-probabilities are
computed once over the training stream and memory-mapped from the cache
(:func:`~dlnlp.transfer.distill.lm_teacher_outputs`: a GPT teacher in half-overlapping windows of its
block size, a recurrent one statefully; the whole distribution of a vocabulary of <= 256 tokens, else
the top ``--top-k``, 64 by default); each batch gathers them at its input positions
(:class:`CachedTeacherWindows`), so a distillation step costs about what a data-only step does.
``teacher_cache=False`` (``--no-teacher-cache``) runs the teacher on each batch's window instead, under
no_grad. Saved as a GPT model directory (``dlnlp generate`` reads it).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, OptionError, UsageError, check_int, checked
from dlnlp.io.atomic import atomic_write_text, check_can_write
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.labeled import Example
from dlnlp.io.modeldir import RunOutput, make_config, write_config
from dlnlp.kernels.device import resolve_device, resolve_precision, seed_everything
from dlnlp.progress import log
from dlnlp.recipes.finetune import FinetuneSpec, best_metric, read_task_data, scores
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import RandomWindows
from dlnlp.training.trainer import Trainer
from dlnlp.transfer.augment import OPERATIONS, Augmenter, read_pos_lexicon
from dlnlp.transfer.backbone import content_hash
from dlnlp.transfer.data import LengthBuckets, collate, encode_examples
from dlnlp.transfer.distill import (
    DistillLoss,
    LMTeacherOutputs,
    TeacherOutputs,
    build_student,
    default_cache_dir,
    lm_cache_k,
    lm_context,
    lm_distill_loss,
    lm_logits,
    lm_teacher_outputs,
    load_teacher,
    stream_key,
    student_outputs,
    teacher_outputs,
    transfer_key,
)
from dlnlp.transfer.model import IGNORE_INDEX, FineTuned, loss_for
from dlnlp.transfer.predict import logits_in_order
from dlnlp.transfer.saved import codec_files, finetuned_config

TASKS = ("classify", "lm")


@dataclass
class DistillSpec:
    """What ``dlnlp distill`` does, apart from the trainer settings (:class:`TrainConfig`)."""

    student: str | None = None         # bert:layers=3 | bert:layers=L,dim=D | bilstm:... | same | gpt:layers=L,dim=D
    task: str = "classify"             # classify (classify or pair: the teacher's task) | lm
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    mse_weight: float = 0.0
    unlabeled: list[str] = field(default_factory=list)
    augment: list[str] = field(default_factory=list)
    augment_factor: int = 20
    pos_lexicon: str | None = None
    generations: int = 1
    cache_dir: str | None = None
    max_len: int | None = None         # default: the teacher's
    top_k: int | None = None           # lm: the teacher's k most likely tokens only
    teacher_cache: bool = True         # lm: the teacher's outputs cached once over the corpus (else per batch)
    warmup_ratio: float = 0.1
    text_field: str | None = None
    pair_field: str | None = None
    label_field: str | None = None
    eval_batch_size: int = 64

    def validate(self) -> DistillSpec:
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)} (pair teachers use classify), got {self.task!r}")
        DistillLoss(self.temperature, self.alpha, self.hidden_weight, self.mse_weight).validate()
        unknown = [op for op in self.augment if op not in OPERATIONS]
        if unknown:
            raise UsageError(f"--augment takes {', '.join(OPERATIONS)} (comma-separated), got {unknown[0]!r}")
        check_int("--augment-factor", self.augment_factor, 1, 10_000)
        check_int("--generations", self.generations, 1, 100)
        if self.max_len is not None:
            check_int("--max-len", self.max_len, 2, 1 << 20)
        if self.top_k is not None:
            check_int("--top-k", self.top_k, 1, 1 << 30)
            if self.task != "lm":
                raise OptionError("--top-k truncates a language model teacher's distribution: it needs --task lm")
        if not self.teacher_cache and self.task != "lm":
            raise OptionError("--no-teacher-cache applies to --task lm (a classifier's teacher outputs are always "
                              "cached)")
        if not 0 <= self.warmup_ratio < 1:
            raise OptionError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.student is None and self.generations == 1:
            raise UsageError("give --student (e.g. bert:layers=3, bilstm, gpt:layers=2) or --generations N")
        if self.task == "lm" and (self.augment or self.unlabeled or self.generations > 1):
            raise OptionError("--augment, --unlabeled and --generations apply to classifiers, not --task lm")
        if "pos" in self.augment and not self.pos_lexicon:
            raise UsageError("--augment pos needs --pos-lexicon FILE, a CoNLL file of words and POS tags (e.g. "
                             "conll2000's train.txt: $(dlnlp data path conll2000)/train.txt)")
        return self

    @property
    def loss(self) -> DistillLoss:
        return DistillLoss(self.temperature, self.alpha, self.hidden_weight, self.mse_weight)


class TeacherLabels:
    """The teacher's label names -> ids, for data whose labels must be the teacher's (an integer label
    ``k`` also reads as id ``k`` when the teacher's names are HF's ``LABEL_k``)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.index = {name: i for i, name in enumerate(self.labels)}

    def id(self, label: str, where: str = "") -> int:
        if label in self.index:
            return self.index[label]
        if label.isdigit() and int(label) < len(self.labels) and self.labels[int(label)] == f"LABEL_{label}":
            return int(label)
        raise InputError(f"{where + ': ' if where else ''}label {label!r} is not one of the teacher's "
                         f"({', '.join(self.labels)})")


def read_unlabeled(inputs: Sequence[str], text_field: str | None, options: CorpusOptions | None) -> list[Example]:
    """Texts without labels: the lines of plain text files, or a field of tsv/csv/jsonl/parquet rows."""
    from dlnlp.io.corpus import input_kind, iter_lines
    from dlnlp.io.labeled import read_labeled

    out: list[Example] = []
    for spec in inputs:
        if text_field is not None or input_kind(spec) != "text" or spec.endswith((".tsv", ".tsv.gz")):
            out.extend(read_labeled([spec], text_field, None, None, options, labeled=False))
        else:
            out.extend(Example(line, None, None, f"{spec}:{n}")
                       for n, line in enumerate(iter_lines([spec], options, require_text=False), 1) if line.strip())
    if not out:
        raise InputError(f"--unlabeled {' '.join(inputs)}: no text")
    return out


def transfer_set(labeled: Sequence[Example], unlabeled: Sequence[Example], augmented: Sequence[Example],
                 labels: TeacherLabels) -> tuple[list[Example], list[int]]:
    """The transfer set and its hard labels: the labeled examples' label ids, then ``-100`` (no hard
    label: the teacher's output is the only target) for every unlabeled and augmented example."""
    if any(e.label is not None for e in [*unlabeled, *augmented]):
        raise ValueError("unlabeled and augmented examples must carry no label")
    gold = [labels.id(e.label, e.where) for e in labeled] + [IGNORE_INDEX] * (len(unlabeled) + len(augmented))
    return [*labeled, *unlabeled, *augmented], gold


def distill(teacher: str | Path, train: Sequence[str] | Any, out: str | Path, spec: DistillSpec, config: TrainConfig,
            *, val: str | Path | None = None, options: CorpusOptions | None = None, force: bool = False
            ) -> dict[str, Any]:
    """Distill ``teacher`` into the student of ``spec`` on ``train``; save into ``out``; return the summary."""
    spec.validate()
    if val is not None and not Path(val).exists():
        raise InputError(f"{val}: no such validation file")
    if spec.task == "lm":
        return distill_lm(teacher, train, out, spec, config, val=val, options=options, force=force)
    return _distill_classifier(teacher, train, out, spec, config, val, options, force)


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _distill_classifier(teacher_path: str | Path, train: Any, out: str | Path, spec: DistillSpec, config: TrainConfig,
                        val: Any, options: CorpusOptions | None, force: bool) -> dict[str, Any]:
    started = time.perf_counter()
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    out = Path(out)
    inputs = [*(train if isinstance(train, (list, tuple)) else []), *([val] if val is not None else []),
              *spec.unlabeled, teacher_path]
    check_can_write(out, force, directory=True, inputs=inputs)  # before any work; RunOutput checks again
    seed_everything(config.seed)
    teacher, info = load_teacher(teacher_path, device)
    task = info["config"]["task"]
    max_len = spec.max_len or int(info["config"].get("max_len") or 128)
    fspec = FinetuneSpec(task=task, max_len=max_len, text_field=spec.text_field, pair_field=spec.pair_field,
                         label_field=spec.label_field)
    labels = TeacherLabels(teacher.labels)
    train_items = read_task_data(train, fspec, options)
    val_items = read_task_data(val, fspec, options) if val is not None else None
    for e in train_items:
        labels.id(e.label, e.where)
    unlabeled = read_unlabeled(spec.unlabeled, spec.text_field, options) if spec.unlabeled else []
    augmented: list[Example] = []
    if spec.augment:
        lexicon = read_pos_lexicon(spec.pos_lexicon) if "pos" in spec.augment else None
        augmenter = Augmenter(spec.augment, spec.augment_factor, config.seed, lexicon=lexicon)
        augmented = augmenter.fit([e.text for e in train_items]).augment(train_items)
    transfer, gold = transfer_set(train_items, unlabeled, augmented, labels)
    sizes = {"labeled": len(train_items), "unlabeled": len(unlabeled), "augmented": len(augmented)}
    log(f"transfer set: {len(transfer):,} examples ({sizes['labeled']:,} labeled, {sizes['unlabeled']:,} unlabeled, "
        f"{sizes['augmented']:,} augmented)", quiet=config.quiet)
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    reports = []
    student_spec = spec.student or "same"
    for generation in range(1, spec.generations + 1):
        target = out if spec.generations == 1 else out / f"gen{generation}"
        t0 = time.perf_counter()
        teacher_data = encode_examples(teacher.backbone, transfer, task, None, max_len)
        key = transfer_key(info["identity"], teacher_data, f"max_len={max_len}")
        cached = teacher_outputs(teacher, teacher_data, cache_dir, key, batch_size=spec.eval_batch_size, dtype=dtype)
        teacher_seconds = time.perf_counter() - t0
        log(f"teacher outputs {'read from' if cached.cached else 'computed into'} {cached.path} "
            f"({teacher_seconds:.1f} s)", quiet=config.quiet)
        teacher_scores = None
        if val_items is not None:
            val_teacher = encode_examples(teacher.backbone, val_items, task, labels, max_len)
            teacher_scores = scores(task, teacher.labels, logits_in_order(teacher, val_teacher, spec.eval_batch_size,
                                                                          dtype), val_teacher.labels)
        seed_everything(config.seed)
        student = build_student(student_spec, teacher, info["config"], [e.text for e in transfer])
        if spec.hidden_weight and student.head.config.input_dim != teacher.head.config.input_dim:
            raise OptionError(f"--hidden-weight compares the vectors the heads read: the student's have "
                              f"{student.head.config.input_dim} dimensions, the teacher's "
                              f"{teacher.head.config.input_dim}")
        meta = {"teacher": info["path"], "student": student_spec, "generation": generation,
                "loss": asdict(spec.loss), "transfer": sizes, "augment": spec.augment,
                "augment_factor": spec.augment_factor, "pos_lexicon": spec.pos_lexicon, "unlabeled": spec.unlabeled,
                "inputs": [str(p) for p in inputs]}
        report = _train_student(student, fspec, spec, config, transfer, gold, cached, val_items, labels, target,
                                meta, force=force or generation > 1 and spec.generations > 1, device=device,
                                dtype=dtype)
        report.update(generation=generation, teacher=info["path"], teacher_parameters=_parameters(teacher),
                      teacher_scores=_brief(teacher_scores), teacher_seconds=round(teacher_seconds, 3),
                      teacher_cache={"path": str(cached.path), "reused": cached.cached}, transfer=sizes)
        reports.append(report)
        if generation < spec.generations:
            teacher, info = load_teacher(target, device)
    if spec.generations == 1:
        summary = reports[0]
    else:
        summary = {"out": str(out), "generations": reports}
        atomic_write_text(out / "generations.json", json.dumps(summary, indent=2) + "\n", force=True)
    summary["total_seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _brief(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {k: result[k] for k in ("accuracy", "macro_f1") if k in result}


def _train_student(student: FineTuned, fspec: FinetuneSpec, spec: DistillSpec, config: TrainConfig,
                   transfer: list[Example], gold: list[int], teacher: TeacherOutputs, val_items: list[Any] | None,
                   labels: TeacherLabels, target: Path, meta: dict[str, Any], *, force: bool, device: torch.device,
                   dtype: torch.dtype | None) -> dict[str, Any]:
    task = fspec.task
    loss = spec.loss
    with RunOutput(target, force=force, inputs=meta.get("inputs")) as output:
        for name, content in codec_files(student).items():
            (output.path / name).write_bytes(content)
        write_config(output.path, finetuned_config(student, strategy="full", top=0, max_len=fspec.max_len,
                                                   spec=vars(fspec).copy(), distill=meta))
        data = encode_examples(student.backbone, transfer, task, None, fspec.max_len)
        val_data = encode_examples(student.backbone, val_items, task, labels, fspec.max_len) if val_items else None
        backbone = student.backbone
        batch_size = int(config.extra.get("batch_size", 32))
        want_pooled = bool(spec.hidden_weight)

        def make_batch(index: np.ndarray) -> dict[str, torch.Tensor]:
            batch = collate([data.rows[i] for i in index], [gold[i] for i in index], backbone.pad_id, backbone.segments)
            # fancy indexing copies the rows out of the memory map
            batch["teacher_logits"] = torch.from_numpy(np.ascontiguousarray(teacher.logits[index]))
            if want_pooled:
                batch["teacher_pooled"] = torch.from_numpy(np.ascontiguousarray(teacher.pooled[index]))
            return batch

        source = LengthBuckets(data.lengths(), batch_size, make_batch, seed=config.seed)
        steps_per_epoch = source.batches_per_epoch
        total = config.max_steps or (math.ceil(config.epochs * steps_per_epoch) if config.epochs else None)
        changes: dict[str, Any] = {}
        if config.warmup_steps == 0 and spec.warmup_ratio and total:
            changes["warmup_steps"] = int(round(spec.warmup_ratio * total))
        if config.eval_interval == 0 and val_data is not None:
            changes["eval_interval"] = steps_per_epoch
        metric, mode = best_metric(task)
        changes.update(best_metric=metric if val_data is not None else "val_loss", best_mode=mode)
        train_config = config.replace(**changes)
        checked(train_config)

        def loss_fn(net: torch.nn.Module, batch: dict[str, torch.Tensor], state: Any) -> tuple[torch.Tensor, Any]:
            logits, pooled = student_outputs(net, batch)
            return loss(logits, batch["teacher_logits"], batch["labels"], pooled, batch.get("teacher_pooled")), None

        validation_seconds = [0.0]

        def val_fn(net: torch.nn.Module) -> dict[str, Any]:
            t0 = time.perf_counter()
            logits = logits_in_order(student, val_data, spec.eval_batch_size, dtype)
            net.train()
            result = scores(task, student.labels, logits, val_data.labels)
            y = torch.tensor(val_data.labels, dtype=torch.long)
            out = {"val_loss": loss_for(task, torch.stack(logits), y).item(), "accuracy": result["accuracy"],
                   "macro_f1": result["macro_f1"]}
            validation_seconds[0] += time.perf_counter() - t0
            return out

        trainer = Trainer(student, train_config, source, out_dir=output.path, loss_fn=loss_fn,
                          val_fn=val_fn if val_data is not None else None, on_save=output.commit)
        result = trainer.fit()
    train_seconds = max(result.elapsed - validation_seconds[0], 1e-9)
    return {
        "out": str(target), "student": meta["student"], "steps": result.steps, "epochs": round(result.epochs, 4),
        "stopped_by": result.stopped_by,
        "best": {train_config.best_metric: result.best_value} if result.best_value is not None else None,
        "parameters": _parameters(student), "train_seconds": round(train_seconds, 3),
        "train_examples_per_s": round(min(result.steps * batch_size, result.epochs * len(data)) / train_seconds, 2),
        "labels": student.labels,
    }


# --- language models -----------------------------------------------------------------------------

GPT_STUDENT_KEYS = {"layers", "dim", "heads", "block", "dropout"}


def gpt_student_config(teacher_model: Any, spec: str) -> Any:
    """The GPTConfig of ``gpt:layers=L,dim=D[,heads=H,block=B,dropout=P]``; unset values are the teacher's
    when it is a GPT (else 4 layers, 128 dims, 4 heads, block 256)."""
    from dlnlp.models.gpt import GPTConfig
    from dlnlp.transfer.distill import parse_student

    architecture, _, rest = spec.partition(":")
    if architecture != "gpt":
        raise UsageError(f"--task lm distills into a GPT: --student gpt:layers=L,dim=D, got {spec!r}")
    options = parse_student("same:" + rest)[1] if rest else {}
    unknown = sorted(set(options) - GPT_STUDENT_KEYS)
    if unknown:
        raise UsageError(f"--student {spec}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(GPT_STUDENT_KEYS))})")
    base = teacher_model.config.to_dict() if isinstance(teacher_model.config, GPTConfig) else {}
    vocab = teacher_model.config.vocab_size

    def number(key: str, default: Any, kind: type = int) -> Any:
        if key not in options:
            return default
        try:
            return kind(options[key])
        except ValueError:
            raise OptionError(f"--student {spec}: {key} must be a number, got {options[key]!r}") from None

    config = GPTConfig(**{**base, "vocab_size": vocab})
    config.n_layer = number("layers", base.get("n_layer", 4))
    config.n_embd = number("dim", base.get("n_embd", 128))
    config.n_head = number("heads", base.get("n_head", 4) if config.n_embd % base.get("n_head", 4) == 0 else 4)
    config.block_size = number("block", base.get("block_size", 256))
    config.dropout = number("dropout", base.get("dropout", 0.0), float)
    from dlnlp.recipes.gpt import check_gpt_args

    check_gpt_args({"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                    "block_size": config.block_size, "dropout": config.dropout})
    if config.n_embd % config.n_head:
        raise OptionError(f"--student {spec}: dim {config.n_embd} must be divisible by heads {config.n_head}")
    if config.mlp_dim is not None and "dim" in options:
        config.mlp_dim = None  # 4 * dim for a student of another width
    return config


class CachedTeacherWindows(RandomWindows):
    """:class:`~dlnlp.training.data.RandomWindows` (the same offsets for the same seed) whose batches also
    carry the cached teacher's scores at each input position: ``(x, teacher_logp, teacher_index, y)``,
    ``teacher_logp[b, t]`` being the teacher's distribution of ``y[b, t]``'s position, the token after
    stream position ``starts[b] + t`` (``teacher_index`` None when the cache holds the whole vocabulary)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, teacher: LMTeacherOutputs, *,
                 seed: int = 0, rank: int = 0, world: int = 1):
        super().__init__(tokens, batch_size, seq_len, seed=seed, rank=rank, world=world)
        if len(teacher.logp) != len(tokens):
            raise ValueError(f"the teacher cache has {len(teacher.logp):,} positions, the stream {len(tokens):,}")
        self.teacher = teacher

    def next_batch(self) -> tuple[tuple[Any, ...], bool]:
        starts = self.draw_starts()
        chunk = self.windows(starts)
        logp, index = self.teacher.gather(np.asarray(starts, dtype=np.int64)[:, None] + np.arange(self.seq_len))
        self.count += 1
        return (chunk[:, :-1], logp, index, chunk[:, 1:]), False

    def shard(self, rank: int, world: int) -> CachedTeacherWindows:
        return CachedTeacherWindows(self.tokens, self.batch_size, self.seq_len, self.teacher, seed=self.seed,
                                    rank=rank, world=world)


def distill_lm(teacher_path: str | Path, corpus: Sequence[str] | None, out: str | Path, spec: DistillSpec,
               config: TrainConfig, *, val: str | Path | None = None, options: CorpusOptions | None = None,
               force: bool = False, val_fraction: float = 0.1) -> dict[str, Any]:
    """A GPT student of a dlnlp language model: token-level distillation on the corpus (module docstring)."""
    from dlnlp.io.corpus import iter_lines
    from dlnlp.models.gpt import GPT, evaluate_windows
    from dlnlp.models.registry import load_model

    started = time.perf_counter()
    device = resolve_device(config.device)
    inputs = [*(corpus or []), *([str(val)] if val is not None else []), str(teacher_path)]
    check_can_write(Path(out), force, directory=True, inputs=inputs)  # before any work; RunOutput checks again
    loaded = load_model(teacher_path, device)
    teacher, codec = loaded.model, loaded.codec
    if codec is None or not hasattr(teacher, "features"):
        raise UsageError(f"{teacher_path}: not a language model dlnlp distills (a gpt or rnn_lm directory)")
    student_config = gpt_student_config(teacher, spec.student or "gpt")
    ids = codec.encode_lines(iter_lines(corpus, options), where="corpus")
    if val is not None:
        val_ids = codec.encode_lines(iter_lines([str(val)], options), where=str(val))
    else:
        cut = int(len(ids) * (1 - val_fraction))
        ids, val_ids = ids[:cut], ids[cut:]
    block = student_config.block_size
    if len(ids) <= block + 1 or len(val_ids) < 2:
        raise InputError(f"the corpus ({len(ids):,} tokens) is too short for windows of {block} tokens")
    batch_size = int(config.extra.get("batch_size", 64))
    seed_everything(config.seed)
    student = GPT(student_config)
    teacher.eval().requires_grad_(False)
    alpha, temperature, top_k = spec.alpha, spec.temperature, spec.top_k
    cache, teacher_seconds = None, None
    if alpha > 0 and spec.teacher_cache:
        t0 = time.perf_counter()
        k = lm_cache_k(int(teacher.config.vocab_size), top_k)
        dtype = resolve_precision(config.precision, device)
        context, _ = lm_context(teacher, len(ids))
        key = stream_key(content_hash(teacher_path), ids, f"lm;k={k};{context};dtype={dtype}")
        cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
        cache = lm_teacher_outputs(teacher, ids, cache_dir, key, k=k, batch_size=spec.eval_batch_size, dtype=dtype)
        teacher_seconds = time.perf_counter() - t0
        log(f"teacher outputs ({'all' if cache.index is None else f'top {cache.k}'} of "
            f"{teacher.config.vocab_size:,} log-probs at {len(ids):,} positions, {cache.context}) "
            f"{'read from' if cache.cached else 'computed into'} {cache.path} ({teacher_seconds:.1f} s)",
            quiet=config.quiet)
        train = CachedTeacherWindows(ids, batch_size, block, cache, seed=config.seed)
    else:
        train = RandomWindows(ids, batch_size, block, seed=config.seed)

    def loss_fn(net: torch.nn.Module, batch: Any, state: Any) -> tuple[torch.Tensor, Any]:
        x, *teacher_scores, y = batch
        logits, _ = net(x)
        if alpha == 0:  # data only: the teacher is not run
            return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.reshape(-1)), None
        if teacher_scores:  # gathered from the cache
            teacher_logits, teacher_index = teacher_scores
        else:
            with torch.no_grad():
                teacher_logits, teacher_index = lm_logits(teacher, x), None
        return lm_distill_loss(logits, teacher_logits, y, temperature=temperature, alpha=alpha, top_k=top_k,
                               teacher_index=teacher_index), None

    def val_fn(net: torch.nn.Module) -> dict[str, Any]:
        was = net.training
        loss, _ = evaluate_windows(net, torch.from_numpy(np.asarray(val_ids)), block, batch_size, device)
        net.train(was)
        return {"val_loss": loss}

    train_config = config.replace(best_metric="val_loss", best_mode="min")
    checked(train_config)
    teacher_val = None
    if hasattr(teacher, "lm_head") and getattr(teacher.config, "block_size", 0) >= block:
        teacher_val = evaluate_windows(teacher, torch.from_numpy(np.asarray(val_ids)), block, batch_size, device)[0]
    teacher_cache = None if cache is None else {
        "path": str(cache.path), "reused": cache.cached, "k": cache.k, "full": cache.index is None,
        "context": cache.context}
    with RunOutput(out, force=force, inputs=inputs) as output:
        codec.save(output.path)
        meta = {"teacher": str(Path(teacher_path).resolve()), "student": spec.student, "alpha": alpha,
                "temperature": temperature, "top_k": top_k, "teacher_cache": teacher_cache}
        write_config(output.path, make_config("gpt", 1, model=student_config.to_dict(), level=codec.level,
                                              eos_id=codec.eos_id, batch_size=batch_size, distill=meta,
                                              train=train_config.to_dict()))
        trainer = Trainer(student, train_config, train, out_dir=output.path, loss_fn=loss_fn, val_fn=val_fn,
                          on_save=output.commit, aux_modules={"teacher": teacher} if cache is None else None,
                          started=started)
        result = trainer.fit()
    return {"out": str(out), "steps": result.steps, "elapsed_s": round(result.elapsed, 2),
            "val_loss": result.final_val_loss, "best_val_loss": result.best_val_loss, "teacher_val_loss": teacher_val,
            "parameters": student.num_parameters(), "teacher_parameters": _parameters(teacher),
            "tokens": result.tokens, "alpha": alpha, "top_k": top_k,
            "teacher_seconds": None if teacher_seconds is None else round(teacher_seconds, 3),
            "teacher_cache": teacher_cache,
            "total_seconds": round(time.perf_counter() - started, 3)}
