"""``dlnlp finetune``: adapt a pretrained backbone to a classification, pair, tagging or regression task.

Thin over :func:`dlnlp.recipes.finetune.finetune`; ``dlnlp predict`` and ``dlnlp evaluate`` read what it
writes (:mod:`dlnlp.cli.predict`, :mod:`dlnlp.cli.evaluate`).
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    INPUT,
    Device,
    EncodingErrors,
    Force,
    Json,
    LabelField,
    OutDir,
    Precision,
    Quiet,
    Seed,
    TextField,
    TrainingOptions,
    corpus_options,
    print_json,
    training_options,
)

TASK = "Task options"
PROMPT = "Prompt options"

Task = Annotated[str, typer.Option("--task", help="classify (a label per text), pair (a label per text pair), tag "
                                   "(a tag per word, CoNLL columns) or regress (a number per text, MSE).",
                                   rich_help_panel=TASK)]
PairField = Annotated[Optional[str], typer.Option("--text-pair-field", help="Column holding the second text "
                                                  "(--task pair).", rich_help_panel=INPUT)]
TokenColumn = Annotated[int, typer.Option("--token-column", help="CoNLL column of the words (--task tag).",
                                          rich_help_panel=INPUT)]
TagColumn = Annotated[int, typer.Option("--tag-column", help="CoNLL column of the tags, -1 the last (--task tag; "
                                        "BIO or IOB tags).", rich_help_panel=INPUT)]


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


@training_options(batch_size=32, lr=5e-5, weight_decay=0.01, schedule="linear", warmup=0, epochs=3.0, clip=1.0,
                  eval_interval=0)
def finetune(
    backbone: Annotated[Path, typer.Argument(help="A dlnlp model directory with hidden states (bert, gpt, rnn_lm) "
                                            "or an HF BERT/GPT-2 checkpoint directory.", show_default=False)],
    train: Annotated[list[str], typer.Argument(help="Training data: tsv/csv/jsonl/parquet (--text-field, "
                                               "--label-field), or CoNLL columns for --task tag.",
                                               show_default=False)],
    out: OutDir = ...,
    task: Task = "classify",
    strategy: Annotated[str, typer.Option("--strategy", help="features (backbone frozen, its features computed "
                                          "once), full (every weight trains), top (the top --top layers and the "
                                          "head), or on a frozen backbone prompt (soft prompt vectors), deep-prompt "
                                          "(prefix keys/values in every layer) or input-prompt (prompt vectors "
                                          "computed from the input).", rich_help_panel=TASK)] = "full",
    top: Annotated[int, typer.Option("--top", help="Layers that train with --strategy top.",
                                     rich_help_panel=TASK)] = 0,
    layer: Annotated[str, typer.Option("--layer", help="Hidden state the head reads: last, -2, or N (0 = "
                                       "embeddings).", rich_help_panel=TASK)] = "last",
    layers: Annotated[Optional[str], typer.Option("--layers", help="Several layers instead: last4-mean, "
                                                  "last4-concat or mix (a learned softmax-weighted mix of all "
                                                  "layers times a scale, ELMo's).", rich_help_panel=TASK)] = None,
    pool: Annotated[str, typer.Option("--pool", help="auto (BERT's pooler when fine-tuning a BERT that has one, as "
                                      "HF's classifiers; else mean, or last for left-to-right LMs), pooler, cls, "
                                      "mean, max or last.", rich_help_panel=TASK)] = "auto",
    head_fit: Annotated[str, typer.Option("--head-fit", help="With --strategy features: logreg (logistic regression "
                                          "on standardized features by full-batch L-BFGS, the L2 strength chosen on "
                                          "a held-out tenth of train; --lr/--epochs unused), sgd (dropout + linear "
                                          "trained by the optimizer, --lr/--epochs), or auto: logreg for classify and "
                                          "pair, sgd for tag, regress and --layers mix.",
                                          rich_help_panel=TASK)] = "auto",
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout before the head's linear layer.",
                                           rich_help_panel=TASK)] = 0.1,
    max_len: Annotated[int, typer.Option("--max-len", help="Tokens per example, special tokens included (longer "
                                         "texts are cut).", rich_help_panel=TASK)] = 128,
    layer_lr_decay: Annotated[float, typer.Option("--layer-lr-decay", help="Layer l trains at lr * decay^(L-l) "
                                                  "(1: off).", rich_help_panel=TASK)] = 1.0,
    backbone_dropout: Annotated[Optional[float], typer.Option("--backbone-dropout", help="The backbone's own "
                                                              "dropout while training (default: as saved; 0.1 "
                                                              "fine-tunes a BERT pretrained with --dropout 0 "
                                                              "as BERT is).",
                                                              rich_help_panel=TASK)] = None,
    head_lr: Annotated[Optional[float], typer.Option("--head-lr", help="Learning rate of the head (default --lr).",
                                                     rich_help_panel=TASK)] = None,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Warmup over this share of the steps "
                                                "(when --warmup is 0).", rich_help_panel=TASK)] = 0.1,
    patience: Annotated[int, typer.Option("--patience", help="Early stopping: stop after this many validations "
                                          "without improvement (0: off).", rich_help_panel=TASK)] = 0,
    prompt_length: Annotated[int, typer.Option("--prompt-length", help="Prompt vectors (prompt, input-prompt) or "
                                               "prefix positions per layer (deep-prompt).",
                                               rich_help_panel=PROMPT)] = 20,
    prompt_init: Annotated[str, typer.Option("--prompt-init", help="random, vocab (sampled vocabulary embeddings) "
                                             "or a text whose token embeddings start the prompt (\"Classify the "
                                             "sentiment:\").", rich_help_panel=PROMPT)] = "random",
    prompt_position: Annotated[str, typer.Option("--prompt-position", help="Encoders with [CLS]: first (the "
                                                 "prompt before [CLS], its first vector's output read as [CLS]'s, "
                                                 "as PEFT does) or after-cls ([CLS] keeps position 0).",
                                                 rich_help_panel=PROMPT)] = "first",
    prefix_projection: Annotated[int, typer.Option("--prefix-projection", help="deep-prompt: reparameterize the "
                                                   "prefixes by an MLP of this width while training (0: off; "
                                                   "folded away when saving).", rich_help_panel=PROMPT)] = 0,
    prompt_hidden: Annotated[int, typer.Option("--prompt-hidden", help="input-prompt: width of the network "
                                               "mapping the pooled input to the prompt.",
                                               rich_help_panel=PROMPT)] = 64,
    pattern: Annotated[Optional[str], typer.Option("--pattern", help="A cloze pattern for an MLM backbone, "
                                                   "e.g. \"{text} It was [MASK].\" (with --verbalizer).",
                                                   rich_help_panel=PROMPT)] = None,
    verbalizer: Annotated[Optional[str], typer.Option("--verbalizer", help="Each label's word at [MASK]: "
                                                      "positive=great,negative=terrible.",
                                                      rich_help_panel=PROMPT)] = None,
    train_limit: Annotated[int, typer.Option("--train-limit", help="Few-shot: train on this many examples drawn "
                                             "with --seed (0: all).", rich_help_panel=TASK)] = 0,
    init: Annotated[str, typer.Option("--init", help="pretrained, or random (the backbone's architecture trained "
                                      "from scratch, a baseline).", rich_help_panel=TASK)] = "pretrained",
    text_field: TextField = None,
    text_pair_field: PairField = None,
    label_field: LabelField = None,
    token_column: TokenColumn = 0,
    tag_column: TagColumn = -1,
    encoding_errors: EncodingErrors = "strict",
    training: TrainingOptions = ...,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Fine-tune a backbone on labeled data; validates each epoch (or every --eval-interval steps) and keeps
    the best weights by accuracy (span F1 for tag). With --strategy features or top the output holds the
    trained part only and names its backbone by path and content hash.

    Example: dlnlp finetune minilm train.tsv --val dev.tsv --task classify --epochs 2 --out mr-model

    Example: dlnlp finetune minilm train.tsv --val dev.tsv --strategy features --layers last4-mean --out mr-probe

    Example: dlnlp finetune minilm train.tsv --val dev.tsv --strategy deep-prompt --prompt-length 20 --lr 3e-2 --out mr-deep

    Example: dlnlp finetune bert30 train.tsv --val dev.tsv --pattern "{text} It was [MASK]." --verbalizer 1=great,0=terrible --train-limit 32 --out mr-pet
    """
    from dlnlp.errors import check_int
    from dlnlp.recipes.finetune import FinetuneSpec
    from dlnlp.recipes.finetune import finetune as run

    check_int("--batch-size", training.batch_size, 1, 1 << 20)
    spec = FinetuneSpec(task=task, strategy=strategy, top=top, layer=layer, layers=layers, pool=pool, dropout=dropout,
                        backbone_dropout=backbone_dropout,
                        max_len=max_len, layer_lr_decay=layer_lr_decay, head_lr=head_lr, warmup_ratio=warmup_ratio,
                        patience=patience, text_field=text_field, pair_field=text_pair_field,
                        label_field=label_field, token_column=token_column, tag_column=tag_column, init=init,
                        prompt_length=prompt_length, prompt_init=prompt_init,
                        prompt_position=prompt_position, prefix_projection=prefix_projection,
                        prompt_hidden=prompt_hidden, pattern=pattern, verbalizer=verbalizer, train_limit=train_limit,
                        head_fit=head_fit)
    config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
    config.extra["batch_size"] = training.batch_size
    summary = run(backbone, train, out, spec, config, val=training.val, force=force, resume=training.resume,
                  options=corpus_options(None, encoding_errors))
    if json:
        print_json(summary)
