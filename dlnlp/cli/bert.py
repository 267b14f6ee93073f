"""``dlnlp bert``: pretrain and evaluate BERTs, import and export HF checkpoints, fill masks, embed
sentences and rank them.

The commands are thin over :mod:`dlnlp.recipes.bert` (``pretrain`` and ``eval``, declared in
:mod:`dlnlp.cli.bert_pretrain`), :mod:`dlnlp.models.bert_hf` and :mod:`dlnlp.recipes.bert_inference`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.bert_pretrain import evaluate, pretrain
from dlnlp.cli.options import (
    COMMON,
    Device,
    EncodingErrors,
    Force,
    InferenceBatchSize,
    Inputs,
    Json,
    Layer,
    Normalize,
    OutDir,
    Pool,
    Quiet,
    TextField,
    Threads,
    corpus_options,
    print_json,
    run_conversion,
)

app = typer.Typer(help="BERT encoders: pretrain and evaluate, import/export HF checkpoints, fill-mask, sentence "
                  "embeddings.", no_args_is_help=True)
app.command("pretrain")(pretrain)
app.command("eval")(evaluate)

ModelDir = Annotated[Path, typer.Argument(help="A BERT model directory.", show_default=False)]


def _lines(inputs: Optional[list[str]], text_field: Optional[str], encoding_errors: str):
    """Every input line, blank ones included (one output per line), none cut."""
    from dlnlp.io.corpus import iter_lines

    return iter_lines(inputs, corpus_options(text_field, encoding_errors), require_text=False, long_lines="error")


@app.command("import")
def import_hf(
    hf_dir: Annotated[Path, typer.Argument(help="A HF BERT checkpoint directory (config.json, model.safetensors, "
                                           "tokenizer.json or vocab.txt).", show_default=False)],
    out: OutDir = ...,
    force: Force = False,
    json: Json = False,
) -> None:
    """Convert a HF BertModel, BertForMaskedLM or BertForPreTraining checkpoint into a dlnlp BERT directory.

    Example: dlnlp bert import ./all-MiniLM-L6-v2 --out minilm
    """
    from dlnlp.models.bert_hf import import_hf_bert

    run_conversion(import_hf_bert, hf_dir, out, force=force, json=json)


@app.command("export")
def export_hf(
    model_dir: ModelDir,
    hf_dir: Annotated[Path, typer.Argument(help="The HF checkpoint directory to write.", show_default=False)],
    force: Force = False,
    json: Json = False,
) -> None:
    """Write a dlnlp BERT as a HF checkpoint (BertForPreTraining, BertForMaskedLM or BertModel) with its tokenizer.

    The architecture is the one its heads allow; BertModel.from_pretrained loads any of them.

    Example: dlnlp bert export my-bert ./my-bert-hf
    """
    from dlnlp.models.bert_hf import export_hf_bert
    from dlnlp.progress import warn

    run_conversion(export_hf_bert, model_dir, hf_dir, force=force, json=json, warn=warn)


@app.command("fill-mask")
def fill_mask(
    model_dir: ModelDir,
    inputs: Inputs = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Candidates per [MASK].", rich_help_panel=COMMON)] = 5,
    batch_size: InferenceBatchSize = 32,
    device: Device = "auto",
    threads: Threads = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per input line: the text and, per [MASK], "
                                       "the candidates (token, token_id, score, sequence).",
                                       rich_help_panel=COMMON)] = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Fill the [MASK] tokens of each line: the top K tokens with their probabilities, one line per input
    (candidates separated by tabs, masks by ' | '). Needs a model with its masked-LM head.

    Example: echo "the capital of france is [MASK] ." | dlnlp bert fill-mask my-bert --top-k 3
    """
    import json as jsonlib
    import sys

    from dlnlp.io.corpus import describe_inputs
    from dlnlp.recipes.bert_inference import check_fill_mask, load_bert_text
    from dlnlp.recipes.bert_inference import fill_mask as fill

    bert = load_bert_text(model_dir, device)
    check_fill_mask(bert, top_k)  # before reading any input
    lines = _lines(inputs, text_field, encoding_errors)
    for line, masks in fill(bert, lines, top_k=top_k, batch_size=batch_size, where=describe_inputs(inputs)):
        if json:
            record = {"text": line, "masks": [[vars(f) for f in fills] for fills in masks]}
            sys.stdout.write(jsonlib.dumps(record, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(" | ".join("\t".join(f"{f.token} {f.score:.4f}" for f in fills) for fills in masks) + "\n")
    sys.stdout.flush()


@app.command()
def embed(
    model_dir: ModelDir,
    inputs: Inputs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write ('-': stdout, text only).",
                                      rich_help_panel=COMMON, show_default=False)] = ...,
    fmt: Annotated[str, typer.Option("--format", help="npy, safetensors (one tensor 'embeddings') or text (one "
                                     "vector a line); auto: from --out's suffix (.npy, .safetensors, else text).",
                                     rich_help_panel=COMMON)] = "auto",
    pool: Pool = "mean",
    layer: Layer = None,
    normalize: Normalize = False,
    batch_size: InferenceBatchSize = 32,
    device: Device = "auto",
    threads: Threads = None,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """One vector per input line (row i = line i, blank lines included), streamed in batches to a .npy,
    safetensors or text file.

    Example: dlnlp bert embed minilm sentences.txt --pool mean --normalize --out vectors.npy
    """
    import time

    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.rows import open_row_writer, row_format
    from dlnlp.progress import Progress
    from dlnlp.recipes.bert_inference import check_embed_args, embed_lines, load_bert_text

    check_can_write(out, force, inputs=[*(inputs or []), model_dir], directory=False)
    fmt = row_format(out, fmt)
    bert = load_bert_text(model_dir, device)
    check_embed_args(bert, pool, layer, batch_size)
    start = time.perf_counter()
    lines = _lines(inputs, text_field, encoding_errors)
    with Progress("embed", unit="line", quiet=quiet) as progress, \
            open_row_writer(out, fmt, bert.model.config.dim, force=force) as writer:
        for vectors in embed_lines(bert, lines, pool=pool, layer=layer, normalize=normalize, batch_size=batch_size):
            writer.write(vectors)
            progress.update(len(vectors))
    if json:
        print_json({"out": str(out), "format": fmt, "rows": writer.rows, "dim": writer.dim,
                    "seconds": round(time.perf_counter() - start, 3)})


@app.command()
def similar(
    model_dir: ModelDir,
    inputs: Inputs = None,
    query: Annotated[str, typer.Option("--query", "-q", help="The text to compare every line with.",
                                       show_default=False)] = ...,
    top: Annotated[int, typer.Option("--top", help="How many lines to print, most similar first.",
                                     rich_help_panel=COMMON)] = 10,
    pool: Pool = "mean",
    layer: Layer = None,
    batch_size: InferenceBatchSize = 32,
    device: Device = "auto",
    threads: Threads = None,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Rank the input lines by cosine similarity of their sentence vectors to --query: the --top best as
    'cosine<TAB>line number<TAB>line'.

    Example: dlnlp bert similar minilm reviews.txt --query "a moving film" --top 5
    """
    from dlnlp.cli.options import checked_utf8
    from dlnlp.recipes.bert_inference import check_embed_args, load_bert_text, rank_lines

    text = checked_utf8(query, "--query")
    bert = load_bert_text(model_dir, device)
    check_embed_args(bert, pool, layer, batch_size)
    ranked = rank_lines(bert, text, _lines(inputs, text_field, encoding_errors), top=top, pool=pool, layer=layer,
                        batch_size=batch_size)
    if json:
        print_json({"query": text, "results": [{"cosine": c, "line": n, "text": t} for c, n, t in ranked]})
    else:
        for cosine, number, line in ranked:
            typer.echo(f"{cosine:.4f}\t{number}\t{line}")
