"""``dlnlp evaluate``: score a fine-tuned model on labeled data (:func:`dlnlp.recipes.finetune.evaluate`)."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.finetune import PairField
from dlnlp.cli.options import (
    INPUT,
    Device,
    EncodingErrors,
    InferenceBatchSize,
    Json,
    LabelField,
    TextField,
    corpus_options,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A directory written by dlnlp finetune (with --pattern: a "
                                              "pretrained MLM backbone).", show_default=False)],
    data: Annotated[list[str], typer.Argument(help="Labeled data in the training data's format.", show_default=False)],
    text_field: TextField = None,
    text_pair_field: PairField = None,
    label_field: LabelField = None,
    token_column: Annotated[Optional[int], typer.Option("--token-column", help="CoNLL column of the words "
                                                        "(default: the training's).", rich_help_panel=INPUT)] = None,
    tag_column: Annotated[Optional[int], typer.Option("--tag-column", help="CoNLL column of the gold tags "
                                                      "(default: the training's).", rich_help_panel=INPUT)] = None,
    pattern: Annotated[Optional[str], typer.Option("--pattern", help="Zero-shot: MODEL_DIR is a pretrained MLM "
                                                   "backbone scored by this cloze pattern (\"{text} It was "
                                                   "[MASK].\"), no training.", rich_help_panel=INPUT)] = None,
    verbalizer: Annotated[Optional[str], typer.Option("--verbalizer", help="Zero-shot: each label's word at [MASK] "
                                                      "(1=great,0=terrible).", rich_help_panel=INPUT)] = None,
    max_len: Annotated[int, typer.Option("--max-len", help="Zero-shot: tokens per example.",
                                         rich_help_panel=INPUT)] = 128,
    encoding_errors: EncodingErrors = "strict",
    batch_size: InferenceBatchSize = 64,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Accuracy, macro-F1 and the confusion matrix (classify, pair); conlleval span precision, recall and F1
    per type with token accuracy (tag); MSE and Pearson's r (regress).

    Example: dlnlp evaluate mr-model dev.tsv

    Example: dlnlp evaluate bert30 dev.tsv --pattern "{text} It was [MASK]." --verbalizer 1=great,0=terrible
    """
    from dlnlp.evaluation.classification import confusion_table
    from dlnlp.recipes.finetune import evaluate as run

    result = run(model_dir, data, device=device, batch_size=batch_size, options=corpus_options(None, encoding_errors),
                 text_field=text_field, pair_field=text_pair_field, label_field=label_field,
                 token_column=token_column, tag_column=tag_column, pattern=pattern, verbalizer=verbalizer,
                 max_len=max_len)
    if json:
        print_json(result)
        return
    out = sys.stdout
    if "per_type" in result:
        out.write(f"tokens {result['tokens']}  chunks gold {result['gold_chunks']}  predicted "
                  f"{result['predicted_chunks']}  correct {result['correct_chunks']}\n")
        out.write(f"accuracy {100 * result['accuracy']:6.2f}  precision {100 * result['precision']:6.2f}  recall "
                  f"{100 * result['recall']:6.2f}  F1 {100 * result['f1']:6.2f}\n")
        for name, s in result["per_type"].items():
            out.write(f"{name:>12}  precision {100 * s['precision']:6.2f}  recall {100 * s['recall']:6.2f}  "
                      f"F1 {100 * s['f1']:6.2f}  gold {s['gold']}  predicted {s['predicted']}\n")
    elif "confusion" in result:
        out.write(f"examples {result['examples']}  accuracy {100 * result['accuracy']:.2f}  macro-F1 "
                  f"{100 * result['macro_f1']:.2f}\n")
        out.write(confusion_table(result) + "\n")
    else:
        out.write(f"examples {result['examples']}  mse {result['mse']:.6g}  pearson {result['pearson']:.4f}\n")
    out.flush()
