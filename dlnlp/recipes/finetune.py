"""Fine-tuning a backbone on labeled data: the flow behind ``dlnlp finetune``; and ``evaluate``.

    summary = finetune("minilm", ["train.tsv"], "mr-model", FinetuneSpec(task="classify"),
                       TrainConfig(lr=5e-5, epochs=2, ...), val="dev.tsv")

The flow: read the data (:mod:`dlnlp.io.labeled`), take the label set from the training data, load
the backbone (a dlnlp directory or an HF checkpoint), put a head on it (:mod:`dlnlp.transfer.model`),
choose what trains (``--strategy``), and run the shared trainer with

* AdamW, weight decay on matrices and embeddings only (not on biases and LayerNorm, as BERT),
  warmup over ``warmup_ratio`` of the steps then linear decay, gradient clipping;
* layer-wise learning-rate decay (``lr * decay ** (L - l)`` for layer ``l``; Howard & Ruder 2018,
  Clark et al. 2020) and a separate head rate, through the trainer's parameter groups;
* length-bucketed batches (:class:`~dlnlp.transfer.data.LengthBuckets`);
* for ``--strategy features`` the frozen backbone run once over train and validation data
  (:func:`~dlnlp.transfer.predict.compute_features`) and the head fit on the cached vectors: by default
  (``--head-fit logreg``, classify and pair) a logistic regression, standardized features and full-batch
  L-BFGS with the L2 strength chosen on a held-out tenth (:mod:`dlnlp.transfer.logreg`, SentEval's probe),
  no trainer involved; with ``--head-fit sgd`` (and for tag, regress and ``--layers mix``, whose learned
  layer weights are no plain logistic regression) dropout + linear trained by the trainer below;
* validation each epoch (or every ``--eval-interval`` steps) by accuracy (``tag``: conlleval span F1;
  ``regress``: MSE), the best weights kept in ``model.safetensors``, optional early stopping after
  ``patience`` validations without improvement; ``--resume`` continues the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlnlp.errors import InputError, OptionError, UsageError, check_int, checked
from dlnlp.evaluation.classification import classification_scores, regression_scores, span_scores
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.labeled import LabelMap, read_conll, read_labeled
from dlnlp.io.modeldir import WEIGHTS_NAME, RunOutput, load_weights, read_config, save_weights, write_config
from dlnlp.kernels.device import resolve_device, resolve_precision, seed_everything
from dlnlp.progress import log
from dlnlp.training.checkpoint import read_checkpoint_meta
from dlnlp.training.config import TrainConfig
from dlnlp.training.trainer import Trainer, layer_decay_groups
from dlnlp.transfer.backbone import load_backbone
from dlnlp.transfer.data import Encoded, LengthBuckets, collate, encode_examples, encode_sentences
from dlnlp.transfer.model import (
    POOLS,
    PROMPT_STRATEGIES,
    STRATEGIES,
    TASKS,
    CachedHead,
    FineTuned,
    HeadConfig,
    apply_strategy,
    loss_for,
)
from dlnlp.transfer.predict import cached_batch, compute_features, logits_in_order
from dlnlp.transfer.prompt import (
    PromptConfig,
    build_prompt,
    check_mlm_backbone,
    fold_state,
    mask_id,
    parse_verbalizer,
    verbalizer_ids,
)
from dlnlp.transfer.saved import KIND, codec_files, finetuned_config, load_finetuned

LAYER_COMBINES = {"last4-mean": "mean", "last4-concat": "concat", "mix": "mix"}
HEAD_FITS = ("auto", "logreg", "sgd")


@dataclass
class FinetuneSpec:
    """What ``dlnlp finetune`` builds, apart from the trainer settings (:class:`TrainConfig`)."""

    task: str = "classify"
    strategy: str = "full"
    top: int = 0                       # --strategy top: layers that train
    layer: str = "last"                # last | -2 | N: the hidden state the head reads
    layers: str | None = None          # last4-mean | last4-concat | mix (overrides layer)
    pool: str = "auto"
    dropout: float = 0.1
    backbone_dropout: float | None = None  # the backbone's own dropout while training (None: as saved)
    max_len: int = 128
    layer_lr_decay: float = 1.0
    head_lr: float | None = None
    warmup_ratio: float = 0.1          # used when TrainConfig.warmup_steps is 0
    patience: int = 0                  # early stopping: validations without improvement (0: off)
    text_field: str | None = None
    pair_field: str | None = None
    label_field: str | None = None
    token_column: int = 0
    tag_column: int = -1
    init: str = "pretrained"           # random: the backbone's architecture from scratch
    eval_batch_size: int = 64
    prompt_length: int = 20            # --strategy prompt / deep-prompt / input-prompt
    prompt_init: str = "random"        # random | vocab | a text
    prompt_position: str = "first"     # first (before [CLS], PEFT's placement) | after-cls
    prefix_projection: int = 0         # deep-prompt: the reparameterizing MLP's width (0: none)
    prompt_hidden: int = 64            # input-prompt: the prompt network's width
    pattern: str | None = None         # a cloze pattern: "{text} It was [MASK]."
    verbalizer: str | None = None      # "positive=great,negative=terrible"
    train_limit: int = 0               # few-shot: this many training examples, drawn with the seed (0: all)
    head_fit: str = "auto"             # --strategy features: logreg | sgd | auto (logreg where it applies)

    def validate(self) -> FinetuneSpec:
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.pool not in POOLS:
            raise UsageError(f"--pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.layers is not None and self.layers not in LAYER_COMBINES:
            raise UsageError(f"--layers must be one of {', '.join(LAYER_COMBINES)}, got {self.layers!r}")
        if self.strategy == "top" and self.top < 1:
            raise OptionError(f"--strategy top needs --top N >= 1, got {self.top}")
        check_int("--max-len", self.max_len, 2, 1 << 20)
        if self.backbone_dropout is not None and not 0 <= self.backbone_dropout < 1:
            raise OptionError(f"--backbone-dropout must be in [0, 1), got {self.backbone_dropout}")
        if not 0 < self.layer_lr_decay <= 1:
            raise OptionError(f"--layer-lr-decay must be in (0, 1], got {self.layer_lr_decay}")
        if self.head_lr is not None and not self.head_lr > 0:
            raise OptionError(f"--head-lr must be > 0, got {self.head_lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise OptionError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        check_int("--patience", self.patience, 0, 1 << 30)
        if self.init not in ("pretrained", "random"):
            raise UsageError(f"--init must be pretrained or random, got {self.init!r}")
        if self.init == "random" and self.strategy != "full":
            raise OptionError("--init random trains the backbone from scratch: it needs --strategy full")
        check_int("--train-limit", self.train_limit, 0, 1 << 40)
        if (self.pattern is None) != (self.verbalizer is None):
            raise OptionError("--pattern and --verbalizer go together (a cloze pattern and each label's word)")
        if self.pattern is not None:
            if self.task != "classify":
                raise OptionError(f"--pattern scores labels by words at [MASK]: it needs --task classify, got {self.task}")
            if self.strategy == "features":
                raise OptionError("--pattern with --strategy features would train nothing (the cloze head has no "
                                  "weights): use dlnlp evaluate for zero-shot, or --strategy full/top/prompt")
        if self.strategy in PROMPT_STRATEGIES and self.task == "tag" and self.strategy == "input-prompt":
            raise OptionError("--strategy input-prompt pools the whole input: it serves classify, pair and regress")
        if self.head_fit not in HEAD_FITS:
            raise UsageError(f"--head-fit must be one of {', '.join(HEAD_FITS)}, got {self.head_fit!r}")
        if self.head_fit == "logreg":
            if self.strategy != "features":
                raise OptionError("--head-fit logreg fits the head on frozen features: it needs --strategy features, "
                                  f"got {self.strategy}")
            if self.task not in ("classify", "pair"):
                raise OptionError(f"--head-fit logreg is a classifier of one vector per example: it serves --task "
                                  f"classify and pair, got {self.task} (use --head-fit sgd)")
            if self.layers == "mix":
                raise OptionError("--head-fit logreg fits a linear map of fixed features; --layers mix learns its "
                                  "layer weights with the head: use --head-fit sgd, or --layers last4-mean/last4-concat")
        elif self.head_fit == "sgd" and self.strategy != "features":
            raise OptionError(f"--head-fit chooses how the head is fit on frozen features: it needs --strategy "
                              f"features, got {self.strategy}")
        return self

    def resolved_head_fit(self) -> str:
        """``--head-fit auto``: logreg for --strategy features on classify and pair (but not --layers mix),
        else sgd (the trainer)."""
        if self.head_fit != "auto":
            return self.head_fit
        logreg = self.strategy == "features" and self.task in ("classify", "pair") and self.layers != "mix"
        return "logreg" if logreg else "sgd"

    def prompt_config(self, backbone: Any) -> PromptConfig | None:
        """The prompt of a prompt strategy, shaped for ``backbone`` (None for other strategies)."""
        if self.strategy not in PROMPT_STRATEGIES:
            return None
        model_config = getattr(backbone.model, "config", None)
        layers = backbone.num_hidden - 1
        heads = int(getattr(model_config, "n_head", 0) or 0)
        config = PromptConfig(strategy=self.strategy, length=self.prompt_length, init=self.prompt_init,
                              position=self.prompt_position, projection=self.prefix_projection,
                              hidden=self.prompt_hidden, dim=backbone.dim, layers=layers, heads=heads)
        checked(config)
        return config

    def layer_choice(self, num_hidden: int) -> tuple[list[int], str]:
        """(hidden-state indices, combination) of ``--layer`` / ``--layers``."""
        if self.layers is not None:
            if self.layers == "mix":
                return list(range(num_hidden)), "mix"
            return [i % num_hidden for i in range(-4, 0)], LAYER_COMBINES[self.layers]
        if self.layer == "last":
            return [-1], "single"
        try:
            index = int(self.layer)
        except ValueError:
            raise OptionError(f"--layer must be last, a layer number or a negative index, got {self.layer!r}") from None
        if not -num_hidden <= index < num_hidden:
            raise OptionError(f"--layer must be between {-num_hidden} and {num_hidden - 1} (0 = embeddings, "
                              f"{num_hidden - 1} or -1 = the top layer), got {index}")
        return [index], "single"


def read_task_data(inputs: Sequence[str] | Any, spec: FinetuneSpec, options: CorpusOptions | None,
                   labeled: bool = True) -> list[Any]:
    """The examples (classify, pair, regress) or sentences (tag) of ``inputs``."""
    if spec.task == "tag":
        return list(read_conll(inputs, spec.token_column, spec.tag_column if labeled else None, options))
    return list(read_labeled(inputs, spec.text_field, spec.pair_field if spec.task == "pair" else None,
                             spec.label_field, options, labeled=labeled))


def encode(model: FineTuned, items: Sequence[Any], label_map: LabelMap | None, spec: FinetuneSpec) -> Encoded:
    if spec.task == "tag":
        return encode_sentences(model.backbone, items, label_map, spec.max_len)
    return encode_examples(model.backbone, items, spec.task, label_map, spec.max_len)


def scores(task: str, labels: list[str], logits: list[torch.Tensor], gold: Sequence[Any],
           lengths: Sequence[int] | None = None) -> dict[str, Any]:
    """The task's scores of ``logits`` against gold label ids (tag: words past the limit predicted ``O``)."""
    if task == "regress":
        return regression_scores(list(gold), [float(x.reshape(-1)[0]) for x in logits])
    if task == "tag":
        fallback = labels.index("O") if "O" in labels else 0
        predicted, truth = [], []
        for x, g in zip(logits, gold, strict=True):
            p = x.argmax(-1).tolist()
            predicted.append([labels[i] for i in p + [fallback] * (len(g) - len(p))])
            truth.append([labels[i] for i in g])
        return span_scores(truth, predicted)
    predicted = [labels[int(x.argmax())] for x in logits]
    return classification_scores([labels[i] for i in gold], predicted, labels)


def _val_loss(task: str, logits: list[torch.Tensor], gold: Sequence[Any]) -> float:
    if task == "tag":
        x = torch.cat(logits)
        y = torch.cat([torch.as_tensor(g[: len(lg)]) for lg, g in zip(logits, gold, strict=True)])
        return loss_for("classify", x, y).item() if len(y) else 0.0
    x = torch.stack(logits)
    y = torch.tensor(list(gold), dtype=torch.float32 if task == "regress" else torch.long)
    return loss_for(task, x, y).item()


def best_metric(task: str) -> tuple[str, str]:
    return {"tag": ("f1", "max"), "regress": ("val_loss", "min")}.get(task, ("accuracy", "max"))


class _Timer:
    """Seconds spent validating, so the summary's examples/s count training only."""

    def __init__(self) -> None:
        self.seconds = 0.0


def finetune(backbone_path: str | Path, train: Sequence[str] | Any, out: str | Path, spec: FinetuneSpec,
             config: TrainConfig, *, val: str | Path | Any | None = None, options: CorpusOptions | None = None,
             force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Fine-tune and save into ``out``; returns the summary (scores of the best weights, speed)."""
    spec.validate()
    if resume:
        return _resume(out, config, train, val, options)
    if val is not None and isinstance(val, (str, Path)) and not Path(val).exists():
        raise InputError(f"{val}: no such validation file")
    train_items = read_task_data(train, spec, options)
    val_items = read_task_data(val, spec, options) if val is not None else None
    label_map = None
    if spec.task == "tag":
        # a chunk type only the validation data has still counts there (a miss), as in conlleval
        label_map = LabelMap.from_examples([*train_items, *(val_items or [])])
    elif spec.task != "regress":
        label_map = LabelMap.from_examples(train_items)
        if len(label_map) < 2:
            raise InputError(f"the training data has one label ({label_map.labels[0]!r}): a classifier needs two")
    sources = [*(train if isinstance(train, (list, tuple)) else []), val if isinstance(val, (str, Path)) else None]
    with RunOutput(out, force=force, inputs=[s for s in sources if s is not None] + [backbone_path]) as output:
        seed_everything(config.seed)
        backbone = load_backbone(backbone_path, "cpu", init=spec.init, keep_mlm_head=spec.pattern is not None,
                                 dropout=spec.backbone_dropout)
        layers, combine = spec.layer_choice(backbone.num_hidden)
        pool = spec.pool
        if pool == "auto":
            pool = ("pooler" if spec.strategy != "features" and backbone.has_pooler and layers == [-1]
                    else "mean" if backbone.segments else "last")
        head = HeadConfig(task=spec.task, num_labels=len(label_map) if label_map else 1, dim=backbone.dim,
                          layers=layers, combine=combine, pool=pool, dropout=spec.dropout,
                          **cloze_fields(backbone, spec.pattern, spec.verbalizer, label_map.to_list() if label_map
                                         else []))
        checked(head)
        prompt_config = spec.prompt_config(backbone)
        prompt = new_prompt(backbone, prompt_config, config.seed) if prompt_config is not None else None
        model = FineTuned(backbone, head, label_map.to_list() if label_map else [], prompt=prompt)
        apply_strategy(model, spec.strategy, spec.top)
        train_items = few_shot(train_items, spec.train_limit, config.seed)
        spec.head_fit = spec.resolved_head_fit()  # saved resolved: a resumed run fits as this one did
        extra = {"spec": vars(spec).copy()}
        if prompt_config is not None:
            extra["prompt"] = prompt_config.to_dict()
        for name, content in codec_files(model).items():
            (output.path / name).write_bytes(content)
        write_config(output.path, finetuned_config(model, strategy=spec.strategy, top=spec.top, max_len=spec.max_len,
                                                   **extra))
        return _train(model, spec, config, train_items, val_items, label_map, output, resume=False)


def cloze_fields(backbone: Any, pattern: str | None, verbalizer: str | None, labels: list[str]) -> dict[str, Any]:
    """HeadConfig fields of a cloze pattern (none without one); refuses a backbone without an MLM head."""
    if pattern is None:
        return {}
    check_mlm_backbone(backbone)
    words = parse_verbalizer(verbalizer or "")
    return {"pattern": pattern, "verbalizer": verbalizer_ids(backbone, words, labels or list(words)),
            "mask_id": mask_id(backbone)}


def new_prompt(backbone: Any, prompt_config: PromptConfig, seed: int) -> torch.nn.Module:
    """A prompt module for ``backbone``, initialized with ``seed`` (text inits read by its tokenizer)."""
    tokenizer = backbone.tokenizer
    tokenize = tokenizer.encode if tokenizer is not None else (lambda text: backbone.codec.encode(text, "text"))
    specials = [backbone.cls_id, backbone.sep_id, backbone.pad_id]
    if tokenizer is not None:
        specials += [tokenizer.token_to_id(t) for t in ("[UNK]", "[MASK]")]
    return build_prompt(prompt_config, backbone.model.token_embedding(), tokenize=tokenize, specials=specials,
                        seed=seed)


def few_shot(items: list[Any], limit: int, seed: int) -> list[Any]:
    """``limit`` items drawn with ``seed`` (in their file order), or all of them (``limit`` 0 or too large)."""
    if not limit or limit >= len(items):
        return items
    import random

    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _resume(out: str | Path, config: TrainConfig, train: Any, val: Any, options: CorpusOptions | None
            ) -> dict[str, Any]:
    if (Path(out) / "config.json").is_file() and read_config(out, KIND).get("spec", {}).get("head_fit") == "logreg":
        raise OptionError(f"{out}: a --head-fit logreg head is fit in one go, there is nothing to resume "
                          "(run again with --force)")
    with RunOutput(out, resume=True) as output:
        saved = read_config(output.path, KIND)
        spec = FinetuneSpec(**{"head_fit": "sgd", **saved.get("spec", {})})  # before --head-fit: the trainer
        meta = read_checkpoint_meta(output.path)
        stops = {k: v for k, v in (("max_steps", config.max_steps), ("epochs", config.epochs),
                                   ("max_time", config.max_time)) if v is not None}
        train_config = TrainConfig.from_dict(meta["config"]).replace(quiet=config.quiet, device=config.device, **stops)
        checked(train_config)
        train_items = read_task_data(train, spec, options)
        val_items = read_task_data(val, spec, options) if val is not None else None
        labels = saved.get("labels") or []
        label_map = LabelMap(labels) if labels else None
        if label_map is not None and label_map.to_list() != labels:
            raise InputError(f"{out}: the saved labels are not in the order dlnlp gives them")
        seed_everything(train_config.seed)
        # the architecture and frozen weights as at the start; the trainer then loads the checkpoint
        info = saved["backbone"]
        head = HeadConfig.from_dict(saved["head"])
        backbone = load_backbone(info["source"]["path"], "cpu", init=info["source"].get("init", "pretrained"),
                                 keep_mlm_head=head.verbalizer is not None, dropout=spec.backbone_dropout)
        prompt = None
        if saved.get("prompt"):
            prompt = new_prompt(backbone, PromptConfig.from_dict(saved["prompt"]), train_config.seed)
        model = FineTuned(backbone, head, labels, prompt=prompt)
        apply_strategy(model, spec.strategy, spec.top)
        train_items = few_shot(train_items, spec.train_limit, train_config.seed)
        return _train(model, spec, train_config, train_items, val_items, label_map, output, resume=True)


def _train(model: FineTuned, spec: FinetuneSpec, config: TrainConfig, train_items: list[Any],
           val_items: list[Any] | None, label_map: LabelMap | None, output: RunOutput, *, resume: bool
           ) -> dict[str, Any]:
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    task = spec.task
    labels = model.labels
    started = time.perf_counter()
    train_data = encode(model, train_items, label_map, spec)
    val_data = encode(model, val_items, label_map, spec) if val_items is not None else None
    if train_data.labels is None:
        raise InputError("the training data has no labels")
    segments, pad = model.backbone.segments, model.backbone.pad_id
    cached = spec.strategy == "features"
    model.to(device)
    extract_seconds = 0.0
    if cached:
        t0 = time.perf_counter()
        train_x = compute_features(model, train_data, spec.eval_batch_size, dtype)
        val_x = compute_features(model, val_data, spec.eval_batch_size, dtype) if val_data is not None else None
        extract_seconds = time.perf_counter() - t0
        log(f"frozen features of {len(train_data):,} training and {len(val_data) if val_data else 0:,} validation "
            f"examples computed in {extract_seconds:.1f} s", quiet=config.quiet)
        if spec.resolved_head_fit() == "logreg":
            return _fit_logreg_head(model, spec, config, train_x, train_data.labels, val_x,
                                    val_data.labels if val_data is not None else None, output, started,
                                    extract_seconds)
        trained: torch.nn.Module = CachedHead(model.head)
        lengths = [x.shape[0] for x in train_x] if task == "tag" else [1] * len(train_data)
        source = LengthBuckets(lengths, _batch_size(config), lambda idx: cached_batch(train_x, train_data.labels, idx,
                                                                                      task), seed=config.seed)
    else:
        trained = model
        source = LengthBuckets(train_data.lengths(), _batch_size(config),
                               lambda idx: collate([train_data.rows[i] for i in idx],
                                                   [train_data.labels[i] for i in idx], pad, segments),
                               seed=config.seed)
    steps_per_epoch = source.batches_per_epoch
    total = config.max_steps or (math.ceil((config.epochs or 1) * steps_per_epoch) if config.epochs else None)
    if not resume:
        changes: dict[str, Any] = {}
        if config.warmup_steps == 0 and spec.warmup_ratio and total:
            changes["warmup_steps"] = int(round(spec.warmup_ratio * total))  # HF's warmup_ratio rounds up;
        if config.eval_interval == 0 and val_data is not None:
            changes["eval_interval"] = steps_per_epoch  # each epoch, and at the end
        metric, mode = best_metric(task)
        changes.update(best_metric=metric if val_data is not None else "val_loss", best_mode=mode)
        config = config.replace(**changes)
    checked(config)

    def loss_fn(net: torch.nn.Module, batch: dict[str, torch.Tensor], state: Any) -> tuple[torch.Tensor, Any]:
        y = batch["labels"]
        return loss_for(task, net(**{k: v for k, v in batch.items() if k != "labels"}), y), None

    timer = _Timer()
    history: list[float] = []

    def val_fn(net: torch.nn.Module) -> dict[str, Any]:
        t0 = time.perf_counter()
        if cached:
            was = net.training
            net.eval()
            with torch.no_grad():
                if task == "tag":
                    logits = [net(x.unsqueeze(0).to(device))[0].float().cpu() for x in val_x]
                else:
                    logits = list(torch.cat([net(val_x[i:i + 1024].to(device)).float().cpu()
                                             for i in range(0, len(val_x), 1024)]))
            net.train(was)
        else:
            logits = logits_in_order(model, val_data, spec.eval_batch_size, dtype)
            net.train()
        result = scores(task, labels, logits, val_data.labels)
        out = {"val_loss": _val_loss(task, logits, val_data.labels)}
        for key in ("accuracy", "macro_f1", "f1", "precision", "recall", "mse", "pearson"):
            if key in result:
                out[key] = result[key]
        history.append(out[config.best_metric])
        timer.seconds += time.perf_counter() - t0
        return out

    def on_step(trainer: Trainer) -> None:
        if spec.patience and len(history) > spec.patience:
            best_before = history[: -spec.patience]
            recent = history[-spec.patience:]
            better = (lambda a, b: a > b) if config.best_mode == "max" else (lambda a, b: a < b)
            reference = max(best_before) if config.best_mode == "max" else min(best_before)
            if not any(better(v, reference) for v in recent):
                log(f"early stopping: no better {config.best_metric} in {spec.patience} validations",
                    quiet=config.quiet)
                trainer.request_stop("early_stop")
                history.clear()  # asked once

    groups = _param_groups(trained, model, spec, config, cached)
    trainer = Trainer(trained, config, source, out_dir=output.path, loss_fn=loss_fn,
                      val_fn=val_fn if val_data is not None else None, resume=resume, on_step=on_step,
                      on_save=output.commit, param_groups=groups)
    result = trainer.fit()
    if model.prompt is not None and (output.path / WEIGHTS_NAME).is_file():
        # a deep prompt's reparameterizing MLP served training only: keep the prefix it computes
        state = load_weights(output.path)
        module = type(model.prompt)(model.prompt.config)
        module.load_state_dict({k[len("prompt."):]: v for k, v in state.items() if k.startswith("prompt.")})
        folded = fold_state(state, module)
        if folded is not state:
            save_weights(folded, output.path / WEIGHTS_NAME)
    train_seconds = max(result.elapsed - timer.seconds, 1e-9)
    examples = min(result.steps * _batch_size(config), int(result.epochs * len(train_data)) or result.steps)
    summary = {
        "out": str(output.target), "task": task, "strategy": spec.strategy,
        **({"head_fit": "sgd"} if cached else {}), "steps": result.steps,
        "epochs": round(result.epochs, 4), "stopped_by": result.stopped_by,
        "best": {config.best_metric: result.best_value} if result.best_value is not None else None,
        "train_seconds": round(train_seconds, 3), "feature_seconds": round(extract_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "train_examples_per_s": round(examples / train_seconds, 2),
        "trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
        "train_examples": len(train_data),
        "labels": labels,
    }
    log(f"fine-tuned {summary['trainable_parameters']:,} parameters in {summary['total_seconds']:.1f} s; best "
        f"{summary['best']}", quiet=config.quiet)
    return summary


def _fit_logreg_head(model: FineTuned, spec: FinetuneSpec, config: TrainConfig, train_x: torch.Tensor,
                     train_y: Sequence[int], val_x: torch.Tensor | None, val_y: Sequence[int] | None,
                     output: RunOutput, started: float, extract_seconds: float) -> dict[str, Any]:
    """``--head-fit logreg``: the head's linear layer becomes a logistic regression fit on the cached
    features (:func:`~dlnlp.transfer.logreg.fit_logistic`; dropout has no say at inference), saved as
    the trainer saves a head; ``metrics.jsonl`` gets one line with the L2 search and the validation scores."""
    from dlnlp.io.modeldir import MetricsLog
    from dlnlp.transfer.logreg import fit_logistic

    head, labels, task = model.head, model.labels, spec.task
    t0 = time.perf_counter()
    with torch.no_grad():
        fit = fit_logistic(head.combine(train_x), torch.as_tensor(list(train_y)), len(labels), seed=config.seed)
        head.classifier.weight.copy_(fit.linear.weight)
        head.classifier.bias.copy_(fit.linear.bias)
    train_seconds = max(time.perf_counter() - t0, 1e-9)
    record: dict[str, Any] = {"head_fit": "logreg", "l2": fit.l2, "held_out_accuracy": fit.held_out_accuracy,
                              "held_out": {str(k): round(v, 4) for k, v in fit.held_out.items()},
                              "train_seconds": round(train_seconds, 3)}
    best = None
    if val_x is not None and val_y is not None:
        head.eval()
        with torch.no_grad():
            logits = list(head(val_x.to(head.classifier.weight.device)).float().cpu())
        result = scores(task, labels, logits, val_y)
        record["val_loss"] = _val_loss(task, logits, val_y)
        record.update({k: result[k] for k in ("accuracy", "macro_f1") if k in result})
        best = {"accuracy": result["accuracy"]}
    save_weights({k: v.detach().contiguous() for k, v in model.state_dict().items()}, output.path / WEIGHTS_NAME)
    with MetricsLog(output.path) as metrics:
        metrics.write(**record)
    output.commit()
    summary = {
        "out": str(output.target), "task": task, "strategy": spec.strategy, "head_fit": "logreg",
        "l2": fit.l2, "held_out_accuracy": fit.held_out_accuracy, "steps": 0, "epochs": 0,
        "stopped_by": "converged", "best": best, "train_seconds": round(train_seconds, 3),
        "feature_seconds": round(extract_seconds, 3), "total_seconds": round(time.perf_counter() - started, 3),
        "train_examples_per_s": round(len(train_y) / train_seconds, 2),
        "trainable_parameters": sum(p.numel() for p in head.parameters()),
        "train_examples": len(train_y), "labels": labels,
    }
    log(f"logistic regression head (L2 {fit.l2:g}, held-out accuracy {fit.held_out_accuracy:.4f}) fit in "
        f"{train_seconds:.1f} s; validation {best}", quiet=config.quiet)
    return summary


def _batch_size(config: TrainConfig) -> int:
    return int(config.extra.get("batch_size", 32))


def _param_groups(trained: torch.nn.Module, model: FineTuned, spec: FinetuneSpec, config: TrainConfig,
                  cached: bool) -> list[dict[str, Any]] | None:
    """The head at ``--head-lr``; backbone layers at ``lr * decay ** (L - l)`` with ``--layer-lr-decay``."""
    groups: list[dict[str, Any]] = []
    if spec.head_lr is not None:
        groups.append({"params": list(trained.head.parameters()), "lr": spec.head_lr})
    if not cached and spec.layer_lr_decay < 1:
        depths = {f"backbone.{k}": v for k, v in model.backbone.depths().items()}
        groups += layer_decay_groups(trained, depths, spec.layer_lr_decay, top=model.backbone.num_hidden)
    return groups or None


def zero_shot_model(backbone_path: str | Path, pattern: str, verbalizer: str, device: Any = "cpu",
                    max_len: int = 128) -> tuple[FineTuned, dict[str, Any]]:
    """A cloze classifier straight from a pretrained MLM (no training): the labels are the verbalizer's; returns the model (eval mode) and a config like a fine-tuned directory's."""
    backbone = load_backbone(backbone_path, "cpu", keep_mlm_head=True)
    labels = LabelMap(parse_verbalizer(verbalizer)).to_list()  # in the order dlnlp gives labels ids
    head = HeadConfig(task="classify", num_labels=len(labels), dim=backbone.dim,
                      **cloze_fields(backbone, pattern, verbalizer, labels))
    checked(head)
    model = FineTuned(backbone, head, labels)
    apply_strategy(model, "features")
    spec = FinetuneSpec(pattern=pattern, verbalizer=verbalizer, max_len=max_len, strategy="full")
    return model.to(device).eval(), {"task": "classify", "max_len": max_len, "spec": vars(spec).copy()}


def evaluate(directory: str | Path, data: Sequence[str] | Any, *, device: str = "auto", batch_size: int = 64,
             options: CorpusOptions | None = None, text_field: str | None = None, pair_field: str | None = None,
             label_field: str | None = None, token_column: int | None = None, tag_column: int | None = None,
             pattern: str | None = None, verbalizer: str | None = None, max_len: int = 128) -> dict[str, Any]:
    """Scores of a fine-tuned directory on labeled data: accuracy, macro-F1 and the confusion matrix;
    conlleval span precision/recall/F1 per type and token accuracy for ``tag``; MSE for ``regress``.

    With ``pattern`` and ``verbalizer``, ``directory`` is a pretrained MLM backbone scored zero-shot."""
    check_int("--batch-size", batch_size, 1, 1 << 20)
    dev = resolve_device(device)
    if (pattern is None) != (verbalizer is None):
        raise OptionError("--pattern and --verbalizer go together (a cloze pattern and each label's word)")
    if pattern is not None:
        model, config = zero_shot_model(directory, pattern, verbalizer, dev, max_len)
    else:
        model, config = load_finetuned(directory, dev)
    saved = FinetuneSpec(**config.get("spec", {}))
    spec = FinetuneSpec(task=config["task"], max_len=int(config.get("max_len", 128)),
                        text_field=text_field if text_field is not None else saved.text_field,
                        pair_field=pair_field if pair_field is not None else saved.pair_field,
                        label_field=label_field if label_field is not None else saved.label_field,
                        token_column=token_column if token_column is not None else saved.token_column,
                        tag_column=tag_column if tag_column is not None else saved.tag_column)
    items = read_task_data(data, spec, options)
    labels = model.labels
    label_map = LabelMap(labels) if labels else None
    encoded = encode(model, items, label_map, spec)
    if encoded.labels is None:
        raise InputError("the data has no labels to evaluate against")
    t0 = time.perf_counter()
    logits = logits_in_order(model, encoded, batch_size, resolve_precision("auto", dev))
    seconds = time.perf_counter() - t0
    result = scores(spec.task, labels, logits, encoded.labels)
    result["seconds"] = round(seconds, 3)
    return result


def _structured(inputs: Sequence[str] | None, text_field: str | None) -> bool:
    from dlnlp.io.corpus import input_kind

    specs = [str(s) for s in inputs or []]
    return text_field is not None or any(input_kind(s) != "text" or s.endswith((".tsv", ".tsv.gz")) for s in specs)


def predict_records(directory: str | Path, inputs: Sequence[str] | None, *, device: str = "auto",
                    batch_size: int = 64, options: CorpusOptions | None = None, text_field: str | None = None,
                    pair_field: str | None = None, token_column: int | None = None
                    ) -> tuple[FineTuned, Any]:
    """(model, iterator) of predictions in input order, streamed: ``(Example, probabilities)`` for
    classify/pair/regress, ``(rows, tags)`` for tag (``rows`` the sentence's input lines as read).

    Plain lines are texts (``pair``: two texts separated by a tab); ``.tsv``/``.csv``/``.jsonl``/``.parquet``
    inputs, or ``--text-field``, are read by field as in training (no label needed)."""
    from dlnlp.io.corpus import iter_lines
    from dlnlp.io.labeled import Example, Sentence
    from dlnlp.transfer.predict import predict_examples, predict_sentences

    check_int("--batch-size", batch_size, 1, 1 << 20)
    dev = resolve_device(device)
    model, config = load_finetuned(directory, dev)
    saved = FinetuneSpec(**config.get("spec", {}))
    task, max_len = config["task"], int(config.get("max_len", 128))
    dtype = resolve_precision("auto", dev)
    if task == "tag":
        column = token_column if token_column is not None else saved.token_column

        def blocks() -> Any:
            rows: list[str] = []
            for line in iter_lines(inputs, options, require_text=False, long_lines="error"):
                if line.strip():
                    rows.append(line)
                    continue
                if rows:
                    yield rows
                rows = []
            if rows:
                yield rows

        def sentences() -> Any:
            for rows in blocks():
                try:
                    tokens = [r.split()[column] for r in rows]
                except IndexError:
                    raise InputError(f"a row has no token column {column}: {rows[0]!r}") from None
                yield Sentence(tokens, None, ""), rows

        def run() -> Any:
            pending: dict[int, list[str]] = {}

            def only_sentences() -> Any:
                for i, (sentence, rows) in enumerate(sentences()):
                    pending[i] = rows
                    yield sentence

            for i, (_, tags) in enumerate(predict_sentences(model, only_sentences(), batch_size=batch_size,
                                                            max_len=max_len, dtype=dtype)):
                yield pending.pop(i), tags

        return model, run()
    pair = pair_field if pair_field is not None else saved.pair_field
    if _structured(inputs, text_field):
        field = text_field if text_field is not None else saved.text_field
        examples: Any = read_labeled(inputs, field, pair if task == "pair" else None, None, options, labeled=False)
    else:
        def plain() -> Any:
            for number, line in enumerate(iter_lines(inputs, options, require_text=False, long_lines="error"), 1):
                if task == "pair":
                    text, tab, second = line.partition("\t")
                    if not tab:
                        raise InputError(f"line {number}: --task pair reads two texts separated by a tab")
                    yield Example(text, None, second, f"line {number}")
                else:
                    yield Example(line, None, None, f"line {number}")

        examples = plain()
    return model, predict_examples(model, examples, batch_size=batch_size, max_len=max_len, dtype=dtype)
