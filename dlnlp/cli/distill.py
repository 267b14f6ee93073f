"""``dlnlp distill``: train a small student on a teacher's outputs (:func:`dlnlp.recipes.distill.distill`)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.finetune import PairField
from dlnlp.cli.options import (
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

DISTILL = "Distillation options"


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)


@training_options(batch_size=32, lr=1e-4, weight_decay=0.01, schedule="linear", warmup=0, epochs=3.0, clip=1.0,
                  eval_interval=0)
def distill(
    teacher: Annotated[Path, typer.Argument(help="The teacher: a dlnlp finetune (or distill) output, an HF BERT "
                                            "sequence-classification checkpoint, or for --task lm a dlnlp GPT/RNN "
                                            "language model.", show_default=False)],
    train: Annotated[list[str], typer.Argument(help="Labeled training data (tsv/csv/jsonl/parquet, as finetune), or "
                                               "for --task lm a text corpus.", show_default=False)],
    out: OutDir = ...,
    student: Annotated[Optional[str], typer.Option(
        "--student", help="bert:layers=K (K of the teacher's layers, DistilBERT's initialization), "
        "bert:layers=L,dim=D[,heads=H,intermediate=I,pool=mean] (from scratch), "
        "bilstm[:embed=E,hidden=H,vocab=V,vectors=FILE] (BiLSTM + max-pooling on words), same[:init=random] (the "
        "teacher's architecture), or for --task lm gpt:layers=L,dim=D.", rich_help_panel=DISTILL)] = None,
    task: Annotated[str, typer.Option("--task", help="classify (the teacher's classify or pair task) or lm.",
                                      rich_help_panel=DISTILL)] = "classify",
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature T of the soft targets "
                                               "(the loss is scaled by T^2).", rich_help_panel=DISTILL)] = 2.0,
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of the soft-target term; 1 - alpha goes to the "
                                         "hard labels (0: hard labels only).", rich_help_panel=DISTILL)] = 0.5,
    hidden_weight: Annotated[float, typer.Option("--hidden-weight", help="Weight of 1 - cos(student, teacher) "
                                                 "on the pooled vectors the heads read (0: off).",
                                                 rich_help_panel=DISTILL)] = 0.0,
    mse_weight: Annotated[float, typer.Option("--mse-weight", help="Weight of the logit MSE term (Tang et al.; "
                                              "0: off).", rich_help_panel=DISTILL)] = 0.0,
    unlabeled: Annotated[Optional[list[str]], typer.Option("--unlabeled", help="Unlabeled text for the transfer set "
                                                           "(lines, or --text-field of tsv/jsonl rows); repeatable.",
                                                           rich_help_panel=DISTILL)] = None,
    augment: Annotated[Optional[str], typer.Option("--augment", help="Augment the labeled texts for the transfer "
                                                   "set with mask, pos, ngram (comma-separated; Tang et al. 2019).",
                                                   rich_help_panel=DISTILL)] = None,
    augment_factor: Annotated[int, typer.Option("--augment-factor", help="Augmented sentences drawn per example "
                                                "(duplicates dropped).", rich_help_panel=DISTILL)] = 20,
    pos_lexicon: Annotated[Optional[str], typer.Option("--pos-lexicon", help="--augment pos: a CoNLL file of words "
                                                       "and POS tags (each word's most frequent tag is used), e.g. "
                                                       "conll2000's train.txt.", rich_help_panel=DISTILL)] = None,
    generations: Annotated[int, typer.Option("--generations", help="Born-again networks: N students in a row, each "
                                             "the next one's teacher (OUT/gen1..genN).",
                                             rich_help_panel=DISTILL)] = 1,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="--task lm: keep the teacher's k most likely tokens "
                                                 "per position.", rich_help_panel=DISTILL)] = None,
    teacher_cache: Annotated[bool, typer.Option("--teacher-cache/--no-teacher-cache", help="--task lm: compute the "
                                                "teacher's next-token distribution once over the corpus and cache "
                                                "it (the whole distribution for <= 256 tokens, else the top --top-k, "
                                                "64 by default), or run the teacher on every batch.",
                                                rich_help_panel=DISTILL)] = True,
    cache_dir: Annotated[Optional[str], typer.Option("--cache-dir", help="Where the teacher's outputs are cached "
                                                     "(default $DLNLP_CACHE_DIR/teacher or ~/.cache/dlnlp/teacher).",
                                                     rich_help_panel=DISTILL)] = None,
    max_len: Annotated[Optional[int], typer.Option("--max-len", help="Tokens per example (default: the teacher's).",
                                                   rich_help_panel=DISTILL)] = None,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", help="Warmup over this share of the steps (when "
                                                "--warmup is 0).", rich_help_panel=DISTILL)] = 0.1,
    text_field: TextField = None,
    text_pair_field: PairField = None,
    label_field: LabelField = None,
    encoding_errors: EncodingErrors = "strict",
    training: TrainingOptions = ...,
    device: Device = "auto",
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
) -> None:
    """Distill a teacher into a smaller student; the student's directory is a fine-tuned one (dlnlp predict
    and evaluate read it). The teacher's outputs are computed once and cached.

    Example: dlnlp distill mr-full train.tsv --val dev.tsv --student bert:layers=3 --augment mask,pos,ngram
    --pos-lexicon conll2000/train.txt --out mr-3layer
    """
    from dlnlp.errors import OptionError, check_int
    from dlnlp.recipes.distill import DistillSpec
    from dlnlp.recipes.distill import distill as run

    check_int("--batch-size", training.batch_size, 1, 1 << 20)
    if training.resume:
        raise OptionError("distill does not resume (--resume); run it again with --force")
    spec = DistillSpec(student=student, task=task, temperature=temperature, alpha=alpha, hidden_weight=hidden_weight,
                       mse_weight=mse_weight, unlabeled=list(unlabeled or []),
                       augment=[a.strip() for a in (augment or "").split(",") if a.strip()],
                       augment_factor=augment_factor, pos_lexicon=pos_lexicon, generations=generations,
                       cache_dir=cache_dir, max_len=max_len, top_k=top_k, teacher_cache=teacher_cache,
                       warmup_ratio=warmup_ratio,
                       text_field=text_field, pair_field=text_pair_field, label_field=label_field)
    config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
    config.extra["batch_size"] = training.batch_size
    summary = run(teacher, train, out, spec, config, val=training.val, force=force,
                  options=corpus_options(None, encoding_errors))
    if json:
        print_json(summary)
