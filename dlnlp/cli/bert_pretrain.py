"""``dlnlp bert pretrain`` and ``dlnlp bert eval``: masked-LM pretraining of a BERT and its evaluation.

Two plain command functions, registered in the ``bert`` group by :mod:`dlnlp.cli.bert`; the recipes
they call, usable from Python, are in :mod:`dlnlp.recipes.bert`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    INPUT,
    Device,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    OutDir,
    Precision,
    Quiet,
    Seed,
    Streaming,
    TextField,
    Threads,
    TrainingOptions,
    corpus_options,
    given_options,
    print_json,
    training_options,
)

MODEL = "Model options"
PRETRAIN = "Pretraining options"

DocPerLine = Annotated[bool, typer.Option("--doc-per-line", help="Each line is a document (cut into sentences after "
                                          ". ! ?); default: one sentence a line, documents separated by blank "
                                          "lines.", rich_help_panel=INPUT)]


@training_options(batch_size=32, lr=5e-4, weight_decay=0.01, schedule="linear", warmup=200, eval_interval=250,
                  eval_batches=20)
def pretrain(
    ctx: typer.Context,
    inputs: Inputs = None,
    out: OutDir = ...,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="A WordPiece tokenizer with [PAD] "
                                                     "[UNK] [CLS] [SEP] [MASK] (dlnlp tokenize train --model "
                                                     "wordpiece).", rich_help_panel=INPUT)] = None,
    layers: Annotated[int, typer.Option("--layers", help="Transformer blocks.", rich_help_panel=MODEL)] = 4,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads per block.", rich_help_panel=MODEL)] = 4,
    dim: Annotated[int, typer.Option("--dim", help="Hidden size.", rich_help_panel=MODEL)] = 256,
    intermediate: Annotated[int, typer.Option("--intermediate", help="Feed-forward size.",
                                              rich_help_panel=MODEL)] = 1024,
    max_len: Annotated[int, typer.Option("--max-len", help="Sequence length in tokens, [CLS] and [SEP] included "
                                         "(and the model's positions).", rich_help_panel=MODEL)] = 128,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout on embeddings, attention and residuals.",
                                           rich_help_panel=MODEL)] = 0.1,
    mlm_prob: Annotated[float, typer.Option("--mlm-prob", help="Share of the tokens selected for masked-LM "
                                            "(80% [MASK], 10% random, 10% kept).", rich_help_panel=PRETRAIN)] = 0.15,
    next_sentence: Annotated[str, typer.Option("--next-sentence", help="nsp (next-sentence prediction, BERT), sop "
                                               "(sentence order, ALBERT) or none.", rich_help_panel=PRETRAIN)] = "nsp",
    whole_word_mask: Annotated[bool, typer.Option("--whole-word-mask", help="Mask all WordPieces of a word "
                                                  "together.", rich_help_panel=PRETRAIN)] = False,
    short_seq_prob: Annotated[float, typer.Option("--short-seq-prob", help="Probability of a shorter sequence "
                                                  "(BERT's 0.1).", rich_help_panel=PRETRAIN)] = 0.1,
    doc_per_line: DocPerLine = False,
    objective: Annotated[str, typer.Option("--objective", help="mlm (masked LM, BERT) or electra (replaced-token "
                                           "detection, Clark et al. 2020: a generator fills the masked positions "
                                           "and the model, its discriminator, labels every token original or "
                                           "replaced; needs --next-sentence none).",
                                           rich_help_panel=PRETRAIN)] = "mlm",
    generator_layers: Annotated[int, typer.Option("--generator-layers", help="electra: the generator's blocks, "
                                                  "at the model's width (0: half of --layers).",
                                                  rich_help_panel=PRETRAIN)] = 0,
    rtd_weight: Annotated[float, typer.Option("--rtd-weight", help="electra: the weight of the replaced-token "
                                              "loss beside the generator's masked-LM loss (the paper's 50).",
                                              rich_help_panel=PRETRAIN)] = 50.0,
    training: TrainingOptions = None,
    device: Device = "auto",
    threads: Threads = None,
    precision: Precision = "auto",
    seed: Seed = 0,
    force: Force = False,
    quiet: Quiet = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    streaming: Streaming = False,
) -> None:
    """Pretrain a BERT as a masked LM (dynamic masking) with next-sentence or sentence-order prediction,
    or as ELECTRA's discriminator (--objective electra).

    Example: dlnlp bert pretrain brown/train.txt --tokenizer wp.json --layers 4 --heads 4 --dim 256
    --max-len 128 --max-time 1800 --val brown/valid.txt --out brown-bert
    """
    from dlnlp.recipes.bert import PretrainSettings, resume_bert_pretraining, start_bert_pretraining

    if training.resume:
        result = resume_bert_pretraining(out, training.stops(), quiet=quiet, device=device, compile=training.compile,
                                         keep_data=training.keep_data, given=given_options(ctx), inputs=inputs)
    else:
        model_args = {"n_layer": layers, "n_head": heads, "dim": dim, "intermediate": intermediate,
                      "max_len": max_len, "dropout": dropout, "attn_dropout": dropout}
        settings = PretrainSettings(batch_size=training.batch_size, next_sentence=next_sentence, mlm_prob=mlm_prob,
                                    whole_word_mask=whole_word_mask, short_seq_prob=short_seq_prob,
                                    doc_per_line=doc_per_line, objective=objective,
                                    generator_layers=generator_layers, rtd_weight=rtd_weight)
        config = training.train_config(device=device, precision=precision, seed=seed, quiet=quiet)
        result = start_bert_pretraining(inputs, out, model_args, config, settings, tokenizer=tokenizer,
                                        val=training.val, val_fraction=training.val_fraction,
                                        options=corpus_options(text_field, encoding_errors, streaming=streaming),
                                        force=force, keep_data=training.keep_data)
    if json:
        print_json(result)


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A BERT model directory with its masked-LM head.",
                                              show_default=False)],
    inputs: Inputs = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.",
                                            rich_help_panel=COMMON)] = 32,
    doc_per_line: Annotated[Optional[bool], typer.Option("--doc-per-line/--blank-line-docs", help="How the text "
                                                         "marks documents (default: as in pretraining).",
                                                         rich_help_panel=INPUT, show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Masking seed: the same seed gives the same numbers.",
                                      rich_help_panel=COMMON)] = 0,
    device: Device = "auto",
    threads: Threads = None,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Masked-LM loss, perplexity and accuracy over masked tokens (fixed masking seed), and next-sentence accuracy.

    The same seed gives the same numbers on every run; next-sentence (or sentence-order) accuracy is
    reported when the model was trained with that head.

    Example: dlnlp bert eval brown-bert brown/valid.txt --json
    """
    from dlnlp.recipes.bert import evaluate_bert_dir

    result = evaluate_bert_dir(model_dir, inputs, batch_size=batch_size, device=device, seed=seed,
                               doc_per_line=doc_per_line, options=corpus_options(text_field, encoding_errors))
    if json:
        print_json(result)
        return
    line = (f"MLM loss {result['mlm_loss']:.4f}  perplexity {result['perplexity']:.3f}  accuracy "
            f"{result['mlm_accuracy']:.4f}  ({result['masked_tokens']:,} masked tokens)")
    if "nsp_accuracy" in result:
        line += f"  {result['next_sentence']} accuracy {result['nsp_accuracy']:.4f} ({result['sequences']:,} pairs)"
    typer.echo(line)
