"""The recipe behind ``dlnlp bert pretrain`` / ``dlnlp bert eval``: data, model directory, trainer, evaluation.

A run goes through :mod:`dlnlp.recipes.lm`'s flow (:func:`~dlnlp.recipes.lm.new_lm_run`: the locked
staging directory, the tokenizer saved beside the weights, config.json; the summary), with BERT's
sentence shards (:mod:`dlnlp.training.bert_data`) in place of a token stream. config.json holds the
model (``"model"``, :class:`~dlnlp.models.bert.BertConfig`), the pretraining settings
(``"pretrain"``) and the trainer's config; ``model.safetensors`` keeps the weights of the lowest
validation loss (masked-LM plus next-sentence loss, averaged over the masked tokens).
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlnlp.errors import DlnlpError, ModelDirError, OptionError, UsageError, checked
from dlnlp.io.corpus import CorpusOptions
from dlnlp.io.modeldir import read_config
from dlnlp.kernels.device import resolve_device, seed_everything
from dlnlp.kernels.memory import check_width
from dlnlp.models.bert import IGNORE_INDEX, KIND, Bert, BertConfig, bert_config_dict
from dlnlp.models.electra import RTD_WEIGHT, ElectraPretraining
from dlnlp.models.registry import load_model
from dlnlp.progress import log, run_started
from dlnlp.recipes.lm import (
    check_transformer_memory,
    new_lm_run,
    parameter_count,
    resumed_lm_run,
    run_summary,
)
from dlnlp.settings import DictConfig
from dlnlp.training.bert_data import (
    NEXT_SENTENCE,
    BertData,
    PretrainingBatches,
    continuation_ids,
    load_bert_data,
    prepare_bert_data,
)
from dlnlp.training.config import TrainConfig
from dlnlp.training.trainer import Trainer, to_device

EVAL_SEED = 0  # the masking seed of validation during training and of `bert eval` by default
OBJECTIVES = ("mlm", "electra")


@dataclass
class PretrainSettings(DictConfig):
    """How sequences are built and masked; saved under ``"pretrain"`` in config.json."""

    batch_size: int = 32
    next_sentence: str = "nsp"       # nsp | sop | none
    mlm_prob: float = 0.15
    whole_word_mask: bool = False
    short_seq_prob: float = 0.1      # BERT's short_seq_prob
    doc_per_line: bool = False
    objective: str = "mlm"           # mlm | electra (replaced-token detection, dlnlp.models.electra)
    generator_layers: int = 0        # electra: the generator's blocks (0: half the discriminator's)
    rtd_weight: float = RTD_WEIGHT   # electra: lambda, the discriminator loss's weight

    def validate(self) -> None:
        """Raise OptionError naming the option at fault."""
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.next_sentence not in NEXT_SENTENCE:
            raise UsageError(f"--next-sentence must be one of {', '.join(NEXT_SENTENCE)}, got {self.next_sentence!r}")
        if not 0 < self.mlm_prob < 1:
            raise OptionError(f"--mlm-prob must be in (0, 1), got {self.mlm_prob}")
        if not 0 <= self.short_seq_prob <= 1:
            raise OptionError(f"--short-seq-prob must be in [0, 1], got {self.short_seq_prob}")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "electra" and self.next_sentence != "none":
            raise UsageError("--objective electra has no sentence task: add --next-sentence none")
        if self.generator_layers < 0:
            raise OptionError(f"--generator-layers must be >= 0, got {self.generator_layers}")
        if not self.rtd_weight > 0:
            raise OptionError(f"--rtd-weight must be > 0, got {self.rtd_weight}")




def start_bert_pretraining(
    inputs: Sequence[str] | None, out: str | Path, model_args: dict[str, Any], train_config: TrainConfig,
    settings: PretrainSettings, *, tokenizer: str | None, val: str | Path | None = None, val_fraction: float = 0.1,
    options: CorpusOptions | None = None, force: bool = False, keep_data: bool = False,
) -> dict[str, Any]:
    """Tokenize the corpus into ``out/data``, write config.json and the tokenizer, pretrain, return a summary.

    ``model_args`` are :class:`~dlnlp.models.bert.BertConfig` fields (the vocabulary, padding id and
    heads come from the tokenizer and ``settings``); ``tokenizer`` a WordPiece tokenizer file.
    """
    started = run_started()  # --max-time counts the command's setup too
    if tokenizer is None:
        raise OptionError("--tokenizer is required: a WordPiece tokenizer (dlnlp tokenize train --model wordpiece)")
    settings.validate()
    checked(train_config)
    # ELECTRA's product is its discriminator: a BERT encoder without pretraining heads
    model_config = BertConfig(vocab_size=1, nsp_head=settings.next_sentence != "none",
                              mlm_head=settings.objective == "mlm", **model_args)
    checked(model_config)
    check_width("--dim", model_config.dim)
    check_width("--intermediate", model_config.intermediate)
    # Before reading the corpus: the parameters alone (the vocabulary is not known yet).
    check_bert_memory(model_config, train_config)

    def make_run_config(run: Any) -> dict[str, Any]:
        model_config.vocab_size = run.data.vocab_size
        model_config.pad_id = run.data.specials.pad
        checked(model_config)
        check_bert_memory(model_config, train_config, settings.batch_size)
        return bert_config_dict(model_config, level="tokenizer", pretrain=settings.to_dict(),
                                train=train_config.to_dict(), data=run.data.meta)

    prepare = functools.partial(prepare_bert_data, doc_per_line=settings.doc_per_line)
    with new_lm_run(inputs, out, make_run_config, tokenizer=tokenizer, val=val, val_fraction=val_fraction,
                    options=options, force=force, prepare=prepare, load=load_bert_data,
                    device=train_config.device, keep_data=keep_data) as run:
        seed_everything(train_config.seed)
        return _fit(model_config, train_config, settings, run.data, run.output, run.tokenizer, resume=False,
                    started=started)


def _resume_view(config: dict[str, Any]) -> dict[str, Any]:
    """The model and pretraining options of a BERT run (config.json), by CLI parameter name, for --resume."""
    model, pretrain = config.get("model", {}), config.get("pretrain", {})
    return {"layers": model.get("n_layer"), "heads": model.get("n_head"), "dim": model.get("dim"),
            "intermediate": model.get("intermediate"), "max_len": model.get("max_len"),
            "dropout": model.get("dropout"), **pretrain}


def resume_bert_pretraining(out: str | Path, stops: dict[str, Any], *, quiet: bool = False, device: str = "auto",
                            compile: bool = False, keep_data: bool = False, given: dict[str, Any] | None = None,
                            inputs: Sequence[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` from its checkpoint; ``stops`` (max_steps/epochs/max_time) override;
    ``given`` options and a corpus given again (``inputs``) must be the run's (``--resume`` refuses a change)."""
    from dlnlp.tokenization import load_tokenizer

    started = run_started()
    with resumed_lm_run(out, KIND, stops, quiet=quiet, device=device, compile=compile, load_data=load_bert_data,
                        prepare=_bert_prepare(out), keep_data=keep_data, given=given, inputs=inputs,
                        view=_resume_view) as (output, config, train_config, data):
        model_config = BertConfig.from_dict(config["model"])
        settings = PretrainSettings.from_dict(config.get("pretrain", {}))
        check_bert_memory(model_config, train_config, settings.batch_size)
        return _fit(model_config, train_config, settings, data, output, load_tokenizer(output.path), resume=True,
                    started=started)


def _bert_prepare(out: str | Path) -> Callable[..., Any]:
    """The spooler a run in ``out`` started with (its --doc-per-line), to spool its corpus again."""
    try:
        pretrain = read_config(out, KIND).get("pretrain", {})
    except DlnlpError:
        pretrain = {}
    return functools.partial(prepare_bert_data, doc_per_line=PretrainSettings.from_dict(pretrain).doc_per_line)


def check_bert_memory(config: BertConfig, train_config: TrainConfig, batch_size: int | None = None) -> None:
    """Fail before allocating when pretraining ``config`` clearly needs more memory than the device has
    (with ``batch_size``, a batch of ``max_len`` sequences' activations too)."""
    check_transformer_memory(train_config, "bert pretraining", vocab=config.vocab_size, dim=config.dim,
                             layers=config.n_layer, positions=config.max_len, mlp_dim=config.intermediate,
                             batch=batch_size, seq=config.max_len if batch_size else None)


def pretraining_batches(corpus: Any, data: BertData, config: BertConfig, settings: PretrainSettings,
                        tokenizer: Any, seed: int) -> PretrainingBatches:
    """The batch source of ``corpus`` for a model of ``config`` pretrained with ``settings``."""
    return PretrainingBatches(
        corpus, settings.batch_size, max_len=config.max_len, specials=data.specials, vocab_size=data.vocab_size,
        next_sentence=settings.next_sentence, mlm_prob=settings.mlm_prob, short_seq_prob=settings.short_seq_prob,
        continuation=continuation_ids(tokenizer) if settings.whole_word_mask else None, seed=seed)


def _fit(model_config: BertConfig, train_config: TrainConfig, settings: PretrainSettings, data: BertData,
         output: Any, tokenizer: Any, *, resume: bool, started: float | None = None) -> dict[str, Any]:
    train = pretraining_batches(data.train, data, model_config, settings, tokenizer, train_config.seed)
    val = pretraining_batches(data.val, data, model_config, settings, tokenizer, EVAL_SEED) \
        if data.val is not None else None
    electra = settings.objective == "electra"
    model = ElectraPretraining(model_config, settings.generator_layers, settings.rtd_weight) if electra \
        else Bert(model_config)
    if not resume:
        c = model_config
        objective = (f"ELECTRA replaced-token detection (generator of {model.generator.config.n_layer} layers, "
                     f"lambda {settings.rtd_weight:g}), masking" if electra else "masking")
        log(f"BERT {c.n_layer} layers x {c.n_head} heads x {c.dim} dims, sequences of {c.max_len}, "
            f"{parameter_count(model):,} parameters, vocabulary {c.vocab_size}; {data.train.num_tokens:,} training "
            f"tokens in {len(data.train):,} sentences ({len(train.plan(0)[0]):,} sequences an epoch), "
            f"{data.val.num_tokens if data.val is not None else 0:,} validation tokens; {objective} "
            f"{settings.mlm_prob:.0%}{' whole words' if settings.whole_word_mask else ''}, next sentence "
            f"{settings.next_sentence}", quiet=train_config.quiet)
    result = Trainer(model, train_config, train, val, out_dir=output.path, resume=resume,
                     on_save=output.commit, started=started).fit()
    return run_summary(result, output.target, parameter_count(model), train_config.quiet)


@torch.no_grad()
def evaluate_mlm(model: Bert, batches: PretrainingBatches, device: torch.device) -> dict[str, Any]:
    """Masked-LM loss (nats per masked token), its perplexity and accuracy over ``batches.iter_eval()``;
    next-sentence (or sentence-order) loss and accuracy when the batches have labels for them."""
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64, device=device)
    nsp_nll = torch.zeros((), dtype=torch.float64, device=device)
    correct = nsp_correct = masked = sequences = 0
    try:
        for batch in batches.iter_eval():
            batch = to_device(batch, device)
            out = model(**batch)
            labels = batch["mlm_labels"]
            targets = labels[labels != IGNORE_INDEX]
            nll += F.cross_entropy(out.mlm_logits.float(), targets, reduction="sum").double()
            correct += int((out.mlm_logits.argmax(-1) == targets).sum())
            masked += targets.numel()
            sequences += labels.shape[0]
            if "nsp_labels" in batch:
                nsp_nll += F.cross_entropy(out.nsp_logits.float(), batch["nsp_labels"], reduction="sum").double()
                nsp_correct += int((out.nsp_logits.argmax(-1) == batch["nsp_labels"]).sum())
    finally:
        model.train(was_training)
    if not masked:
        raise DlnlpError("the text has no token to mask")
    loss = nll.item() / masked
    result: dict[str, Any] = {"mlm_loss": loss, "perplexity": math.exp(min(loss, 700)),
                              "mlm_accuracy": correct / masked, "masked_tokens": masked, "sequences": sequences}
    if batches.next_sentence != "none":
        result.update({"next_sentence": batches.next_sentence, "nsp_loss": nsp_nll.item() / sequences,
                       "nsp_accuracy": nsp_correct / sequences})
    return result


def evaluate_bert_dir(model_dir: str | Path, inputs: Sequence[str] | None, *, batch_size: int = 32,
                      device: str = "auto", seed: int = EVAL_SEED, doc_per_line: bool | None = None,
                      options: CorpusOptions | None = None) -> dict[str, Any]:
    """:func:`evaluate_mlm` of a BERT model directory on a text, built into sequences and masked as in
    pretraining with a fixed seed: the same numbers on every run.

    The text is tokenized into a temporary directory (shards, as in pretraining). Next-sentence
    accuracy is measured when the model has that head (with the task it was pretrained on: NSP or SOP).
    """
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    loaded = load_model(model_dir, dev, kind=KIND)
    model: Bert = loaded.model
    tokenizer = getattr(loaded.codec, "tokenizer", None)
    if tokenizer is None:
        raise ModelDirError(f"{model_dir}: no tokenizer.json beside the weights; bert eval reads raw text")
    if not model.config.mlm_head:
        raise ModelDirError(f"{model_dir}: this BERT has no masked-LM head (an encoder-only checkpoint or an "
                            "ELECTRA discriminator); "
                            "it cannot be evaluated on masked tokens")
    settings = PretrainSettings.from_dict(loaded.config.get("pretrain", {}))
    settings.batch_size = batch_size
    if not model.config.nsp_head:
        settings.next_sentence = "none"
    elif settings.next_sentence == "none":
        settings.next_sentence = "nsp"
    if doc_per_line is not None:
        settings.doc_per_line = doc_per_line
    with tempfile.TemporaryDirectory(prefix="dlnlp-bert-eval-") as tmp:
        data = prepare_bert_data(inputs, tmp, tokenizer=tokenizer, val_fraction=0.0,
                                 doc_per_line=settings.doc_per_line, options=options)
        batches = pretraining_batches(data.train, data, model.config, settings, tokenizer, seed)
        result = evaluate_mlm(model, batches, dev)
    return {**result, "seed": seed}
