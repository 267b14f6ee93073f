"""``dlnlp ngram``: count-based n-gram language models (KenLM-compatible modified Kneser-Ney)."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    EncodingErrors,
    Force,
    Inputs,
    Json,
    OutDir,
    Quiet,
    Seed,
    TempDir,
    Temperature,
    TextField,
    TmpDirAlias,
    TopK,
    TopP,
    corpus_options,
    parse_memory,
    print_json,
    temp_dir,
)
from dlnlp.errors import OptionError

app = typer.Typer(help="N-gram language models: train, evaluate, score, generate, ARPA export/import.",
                  no_args_is_help=True)

ModelDir = Annotated[Path, typer.Argument(help="An n-gram model directory (from `dlnlp ngram train` or `import`).",
                                          show_default=False)]

def _load(model_dir: Path):
    from dlnlp.models.ngram import KIND
    from dlnlp.models.registry import load_model

    return load_model(model_dir, kind=KIND).model


@app.command()
def train(
    inputs: Inputs = None,
    out: OutDir = ...,
    order: Annotated[int, typer.Option("--order", help="N-gram order (1 or more).")] = 3,
    smoothing: Annotated[str, typer.Option(
        "--smoothing", "-s",
        help="modified-kn (KenLM's, default), kn, witten-bell, add-k, mle or stupid-backoff (scores, not normalized).",
    )] = "modified-kn",
    k: Annotated[float, typer.Option("--k", help="The k of add-k smoothing (1: Laplace).")] = 1.0,
    min_count: Annotated[int, typer.Option("--min-count", help="Words seen fewer times become <unk>.")] = 1,
    max_vocab: Annotated[Optional[int], typer.Option("--max-vocab", help="Keep only the most frequent words.")] = None,
    memory: Annotated[Optional[str], typer.Option(
        "--memory", help="Memory budget for counting, a size such as 500M or 2G (a plain number is bytes): the corpus is counted in chunks and sorted "
                         "count shards spill to disk past it, then merge. Estimation still holds the distinct "
                         "n-grams in memory (tens of bytes each). Default: count in memory, fastest.",
        metavar="SIZE")] = None,
    temp: TempDir = None,
    tmp_dir: TmpDirAlias = None,
    force: Force = False,
    json_out: Json = False,
    quiet: Quiet = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Train an n-gram model on text, one sentence per line (whitespace-tokenized).

    Example: dlnlp ngram train ../shared/corpora/brown/train.txt --order 5 --out brown5
    """
    import time

    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.corpus import describe_inputs, iter_lines
    from dlnlp.models.ngram import train as train_model
    from dlnlp.progress import Progress, log, warn

    if order < 1:
        raise OptionError(f"--order must be >= 1, got {order}")
    spill_dir = temp_dir(temp, tmp_dir)
    budget = None if memory is None else parse_memory(memory, plain="B")
    check_can_write(out, force, inputs=inputs, directory=True)
    start = time.perf_counter()
    lines = iter_lines(inputs, corpus_options(text_field, encoding_errors))
    with Progress("counting", unit="tok", quiet=quiet) as progress:
        model = train_model(lines, order, smoothing, k=k, min_count=min_count, max_vocab=max_vocab,
                            memory_bytes=budget, warn=warn, temp_dir=str(spill_dir) if spill_dir else None,
                            on_chunk=lambda n: progress.update(n))
    model.info["corpus"] = describe_inputs(inputs)
    model.save(out, force=force)
    seconds = time.perf_counter() - start
    result = {"out": str(out), "order": order, "smoothing": smoothing, "vocab_size": len(model.vocab),
              "ngram_counts": model.counts(), "tokens": model.info.get("tokens"),
              "discounts": model.info.get("discounts"), "seconds": round(seconds, 3)}
    counts = " / ".join(f"{c:,}" for c in model.counts())
    log(f"{smoothing} order {order}: {result['tokens']:,} tokens, n-grams {counts}; wrote {out} in {seconds:.1f}s",
        quiet=quiet)
    if json_out:
        print_json(result)


@app.command("eval")
def evaluate(
    model_dir: ModelDir,
    files: Annotated[Optional[list[str]], typer.Argument(help="Text files ('-' or nothing: stdin).",
                                                         show_default=False)] = None,
    json_out: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """Perplexity and cross-entropy of text, with and without OOV tokens (as KenLM's query reports).

    Example: dlnlp ngram eval brown5 ../shared/corpora/brown/valid.txt --json
    """
    from dlnlp.io.corpus import iter_lines

    model = _load(model_dir)
    result = model.evaluate(iter_lines(files, corpus_options(text_field, encoding_errors)))
    if json_out:
        print_json(result)
        return
    note = "" if model.normalized else " (stupid backoff: scores, not probabilities)"
    typer.echo(f"Perplexity including OOVs:\t{result['perplexity']:.4f}{note}")
    typer.echo(f"Perplexity excluding OOVs:\t{result['perplexity_excl_oov']:.4f}")
    typer.echo(f"Cross-entropy (bits/token):\t{result['cross_entropy']:.4f}")
    typer.echo(f"Cross-entropy excluding OOVs:\t{result['cross_entropy_excl_oov']:.4f}")
    typer.echo(f"OOVs:\t{result['oov']}")
    typer.echo(f"Tokens:\t{result['tokens']}")
    typer.echo(f"Sentences:\t{result['sentences']}")


@app.command()
def score(
    model_dir: ModelDir,
    file: Annotated[str, typer.Argument(help="Text file, or '-' for stdin.")] = "-",
    words: Annotated[bool, typer.Option("--words", help="Per word, as KenLM's query prints: word=ID ORDER "
                                        "LOG10PROB for each word and </s> (an OOV word has id 0, <unk>), then "
                                        "Total and OOV.")] = False,
    json: Json = False,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
) -> None:
    """One line out per line in: log10 probability, token count (words + </s>), perplexity and the sentence
    (tab-separated), so that `sort` ranks the lines; --json: one object per line.

    Example: cat sentences.txt | dlnlp ngram score brown5 | sort -t$'\\t' -k3 -g | head

    Example: dlnlp ngram score brown5 test.txt --words
    """
    import json as json_module
    from itertools import repeat

    from dlnlp.io.corpus import iter_chunks, iter_lines

    model = _load(model_dir)
    out = sys.stdout
    # One row per input line: a line over the length limit is refused, not cut (io.corpus).
    lines = iter_lines([file], corpus_options(text_field, encoding_errors), require_text=False, long_lines="error")
    for chunk in iter_chunks(lines, 4096):
        totals, lengths, oovs = model.score_lines(chunk)
        per_word = model.score_words(chunk) if words else repeat(None)
        rows = []
        for line, total, n, oov, scored in zip(chunk, totals.tolist(), lengths.tolist(), oovs.tolist(), per_word,
                                               strict=False):
            if json:
                record = {"text": line, "log10_prob": total, "tokens": n, "oov": oov,
                          "perplexity": 10.0 ** (-total / n)}
                if words:
                    record["words"] = [{"word": w, "id": i, "order": o, "log10_prob": p, "oov": i == 0}
                                       for w, i, o, p in scored]
                rows.append(json_module.dumps(record, ensure_ascii=False) + "\n")
            elif words:
                rows.append("\t".join([*(f"{w}={i} {o} {p:.4f}" for w, i, o, p in scored),
                                       f"Total: {total:.4f} OOV: {oov}"]) + "\n")
            else:
                rows.append(f"{total:.4f}\t{n}\t{10.0 ** (-total / n):.4f}\t{line}\n")
        out.write("".join(rows))
        out.flush()


@app.command()
def generate(
    model_dir: ModelDir,
    num: Annotated[int, typer.Option("--num", "-n", help="Number of sentences.")] = 1,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most words per sentence.")] = 30,
    temperature: Temperature = 1.0,
    top_k: TopK = None,
    top_p: TopP = None,
    seed: Seed = 0,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Words the sentences start with.")] = "",
) -> None:
    """Sample sentences from the model, one per line.

    Example: dlnlp ngram generate brown5 --num 3 --top-k 50 --seed 1 --prompt "The jury"
    """
    from dlnlp.cli.options import checked_utf8
    from dlnlp.models.ngram import check_generate_args

    check_generate_args(num=num, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed)
    checked_utf8(prompt, "--prompt")
    model = _load(model_dir)
    out = sys.stdout
    for sentence in model.generate(num=num, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, seed=seed, prompt=prompt):
        out.write(sentence + "\n")
        out.flush()  # each sentence as soon as it is sampled: `... --num 100000 | head -1` ends at once


@app.command()
def export(
    model_dir: ModelDir,
    arpa: Annotated[Path, typer.Argument(help="Output ARPA file (.gz/.bz2/.xz compress).", show_default=False)],
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Write the model as an ARPA file (log10 probabilities and backoffs) that KenLM and SRILM load.

    A stupid-backoff model is written too, with a warning: its scores are not probabilities, so the
    perplexities other tools compute from the file are not perplexities.

    Example: dlnlp ngram export brown5 brown5.arpa.gz
    """
    from dlnlp.io.arpa import write_arpa
    from dlnlp.io.atomic import check_can_write
    from dlnlp.progress import warn

    check_can_write(arpa, force, inputs=[model_dir], directory=False)
    model = _load(model_dir)
    if not model.normalized:
        warn(f"{model_dir} is a {model.smoothing} model: its scores are not probabilities (they do not sum to "
             "one), so tools that read the ARPA file as a language model compute no true perplexity")
    write_arpa(model, arpa, force=force, quiet=quiet)


@app.command("import")
def import_arpa(
    arpa: Annotated[Path, typer.Argument(help="ARPA file (plain, .gz, .bz2 or .xz).", show_default=False)],
    out: OutDir = ...,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Read an ARPA file (e.g. from KenLM's lmplz) into an n-gram model directory that scores identically.

    Example: dlnlp ngram import lm.arpa --out lm
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.models.ngram import load_arpa
    from dlnlp.progress import warn

    check_can_write(out, force, inputs=[arpa], directory=True)
    from dlnlp.progress import log

    model = load_arpa(arpa, warn=warn, quiet=quiet)
    model.save(out, force=force)
    log(f"wrote {out}: order {model.order}, {len(model.vocab)} words, {sum(model.counts())} n-grams", quiet=quiet)
