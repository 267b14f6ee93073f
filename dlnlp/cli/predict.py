"""``dlnlp predict``: one prediction per input line (or row, or CoNLL sentence), in order, streamed."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.finetune import PairField
from dlnlp.cli.options import (
    COMMON,
    INPUT,
    Device,
    EncodingErrors,
    InferenceBatchSize,
    Inputs,
    TextField,
    corpus_options,
)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def predict(
    model_dir: Annotated[Path, typer.Argument(help="A directory written by dlnlp finetune.", show_default=False)],
    inputs: Inputs = None,
    probs: Annotated[bool, typer.Option("--probs", help="Every label's probability after the predicted label "
                                        "(label:probability, tab-separated).", rich_help_panel=COMMON)] = False,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per input: label, score and with --probs "
                                       "every label's probability (tag: tokens and tags).",
                                       rich_help_panel=COMMON)] = False,
    text_field: TextField = None,
    text_pair_field: PairField = None,
    token_column: Annotated[Optional[int], typer.Option("--token-column", help="CoNLL column of the words "
                                                        "(default: the training's).", rich_help_panel=INPUT)] = None,
    encoding_errors: EncodingErrors = "strict",
    batch_size: InferenceBatchSize = 64,
    device: Device = "auto",
) -> None:
    """Predict: for each input line (a text; for pair two texts separated by a tab) or tsv/jsonl/csv row, the
    label and its probability, tab-separated; for a regression model the value; for a tagger the input's
    CoNLL columns with the predicted tag added as a last column.

    Example: dlnlp predict mr-model sentences.txt --probs
    """
    import json as jsonlib

    from dlnlp.recipes.finetune import predict_records

    model, records = predict_records(model_dir, inputs, device=device, batch_size=batch_size,
                                     options=corpus_options(None, encoding_errors), text_field=text_field,
                                     pair_field=text_pair_field, token_column=token_column)
    labels = model.labels
    task = model.config.task
    write = sys.stdout.write
    for record in records:
        if task == "tag":
            rows, tags = record
            if json:
                write(jsonlib.dumps({"tokens": [r.split()[0] for r in rows], "tags": tags}, ensure_ascii=False) + "\n")
            else:
                write("".join(f"{row} {tag}\n" for row, tag in zip(rows, tags, strict=True)) + "\n")
            continue
        example, p = record
        if task == "regress":
            value = float(p.reshape(-1)[0])
            write((jsonlib.dumps({"value": value}) if json else f"{value:.6g}") + "\n")
            continue
        values = p.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        if json:
            obj = {"label": labels[best], "score": round(values[best], 6)}
            if probs:
                obj["probs"] = {name: round(v, 6) for name, v in zip(labels, values, strict=True)}
            write(jsonlib.dumps(obj, ensure_ascii=False) + "\n")
        elif probs:
            write(labels[best] + "\t" + "\t".join(f"{n}:{v:.4f}" for n, v in zip(labels, values, strict=True)) + "\n")
        else:
            write(f"{labels[best]}\t{values[best]:.4f}\n")
    sys.stdout.flush()
