"""``dlnlp tokenize``: train subword tokenizers, encode and decode text streams, inspect a tokenizer.

Thin layer over :mod:`dlnlp.tokenization`; the engines (HF ``tokenizers``, ``sentencepiece``) are
imported inside the commands, so ``dlnlp --help`` and pipelines start fast.
"""

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    EncodingErrors,
    Force,
    Inputs,
    Json,
    OutFile,
    Quiet,
    Streaming,
    TextField,
    Workers,
    corpus_options,
    print_json,
)
from dlnlp.errors import UsageError

app = typer.Typer(
    help="Train subword tokenizers (BPE, WordPiece, Unigram) and encode/decode text with them.",
    no_args_is_help=True,
)

TokenizerPath = Annotated[
    Path, typer.Option("--tokenizer", "-t", help="tokenizer.json (HF) or .model (sentencepiece) file.",
                       show_default=False)
]
Format = Annotated[str, typer.Option("--format", help="ids (space-separated ids), tokens, or jsonl "
                                     '({"ids": [...], "tokens": [...]}).')]
EncodeFormat = Annotated[str, typer.Option("--format", help="ids (space-separated ids), tokens, jsonl "
                                           '({"ids": [...], "tokens": [...]}), or bin: binary id shards in '
                                           "the --output directory, which training commands read directly.")]


def _set_workers(workers: int) -> int:
    """Thread count for the engines; HF reads RAYON_NUM_THREADS when its pool first starts."""
    from dlnlp.errors import check_int

    check_int("--workers", workers, 0, 1024, " (0: all cores)")
    threads = workers if workers > 0 else (os.cpu_count() or 1)
    if workers > 0:
        os.environ["RAYON_NUM_THREADS"] = str(workers)
    return threads


def _check_format(fmt: str) -> None:
    from dlnlp.tokenization.codec import FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


@app.command()
def train(
    inputs: Inputs = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokenizer file to write: tokenizer.json (hf) or "
                                      "NAME.model (sentencepiece).", rich_help_panel=COMMON,
                                      show_default=False)] = ...,
    model: Annotated[str, typer.Option("--model", "-m", help="bpe (= bytelevel-bpe: GPT-2 style byte-level BPE), "
                                       "char-bpe (characters, with <unk>), wordpiece, unigram.")] = "bpe",
    engine: Annotated[str, typer.Option("--engine", help="hf (HF tokenizers) or sentencepiece "
                                        "(models bpe and unigram).")] = "hf",
    vocab_size: Annotated[int, typer.Option("--vocab-size", "-v", help="Vocabulary size, special tokens "
                                            "included.")] = 8000,
    min_frequency: Annotated[int, typer.Option("--min-frequency", help="Minimum count of a pair to be "
                                               "merged (hf bpe, wordpiece).")] = 2,
    special: Annotated[Optional[list[str]], typer.Option(
        "--special", help="A special token (repeat the option for several); replaces the model's defaults: "
        "bpe <|endoftext|>; char-bpe and unigram <unk> <pad> <s> </s>; wordpiece [PAD] [UNK] [CLS] [SEP] "
        "[MASK]; sentencepiece adds them as user-defined symbols to its own <unk> <s> </s>.")] = None,
    no_special: Annotated[bool, typer.Option("--no-special", help="No special tokens (an unknown token is "
                                             "still added where the model needs one).")] = False,
    normalize: Annotated[str, typer.Option("--normalize", help="Unicode normalization: none, nfc, nfd, nfkc "
                                           "or nfkd (sentencepiece: none or nfkc). Byte-level BPE round "
                                           "trips exactly only with none.")] = "none",
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase the text before tokenizing.")] = False,
    byte_fallback: Annotated[bool, typer.Option("--byte-fallback", help="sentencepiece: unknown characters "
                                                "become byte tokens instead of <unk>.")] = False,
    character_coverage: Annotated[float, typer.Option("--character-coverage", help="sentencepiece: share of "
                                                      "characters kept in the alphabet.")] = 1.0,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    streaming: Streaming = False,
    workers: Workers = 0,
    force: Force = False,
    json_output: Json = False,
    quiet: Quiet = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show sentencepiece's own training log (silenced "
                                          "by default; a progress line stands in for it).")] = False,
) -> None:
    """Train a tokenizer on a corpus, streamed in chunks; writes the engine's own file format.

    A line longer than 1,048,576 characters (DLNLP_MAX_LINE_CHARS) is cut into pieces of that length,
    each learned from as a line of its own.

    Example: dlnlp tokenize train corpus.txt --model bpe --vocab-size 8000 --out tok.json

    Example: dlnlp tokenize train data.jsonl --text-field text --engine sentencepiece --model unigram --out tok.model
    """
    from dlnlp.io.atomic import atomic_write_bytes, check_can_write
    from dlnlp.io.corpus import describe_inputs
    from dlnlp.progress import log, warn
    from dlnlp.tokenization.train import TrainSpec, train_tokenizer_on_inputs, trained_vocab_size

    spec = TrainSpec(
        model=model, engine=engine, vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=[] if no_special else special, normalize=normalize, lowercase=lowercase,
        character_coverage=character_coverage, byte_fallback=byte_fallback, threads=_set_workers(workers),
        extra={"minloglevel": 0} if verbose and engine == "sentencepiece" else {},
    )
    check_can_write(out, force, inputs=inputs, directory=False)  # before the (long) training, not after
    if spec.engine == "sentencepiece" and min_frequency != 2:
        warn("--min-frequency is not a sentencepiece option; ignored")
    if spec.model == "unigram" and spec.engine == "hf" and min_frequency != 2:
        warn("--min-frequency does not apply to unigram; ignored")
    start = time.perf_counter()
    trained = train_tokenizer_on_inputs(
        inputs, spec, corpus_options(text_field, encoding_errors, streaming=streaming),
        on_start=lambda: log(f"training {spec.engine} {spec.model} (vocab {spec.vocab_size}) on "
                             f"{describe_inputs(inputs)}", quiet=quiet),
        quiet=quiet or bool(spec.extra),  # sentencepiece's own log replaces the progress line
    )
    seconds = time.perf_counter() - start
    data = trained.data
    atomic_write_bytes(out, data, force=force)
    size = trained_vocab_size(data, spec.engine)
    result = {
        "out": str(out), "engine": spec.engine, "model": spec.model, "vocab_size": size,
        "lines": trained.lines, "chars": trained.chars, "seconds": round(seconds, 3),
    }
    log(f"wrote {out}: vocabulary {size}, {trained.lines} lines in {seconds:.2f}s", quiet=quiet)
    if size < spec.vocab_size:
        warn(f"the vocabulary has {size} entries, fewer than --vocab-size {spec.vocab_size}: "
             "the corpus has no more pairs to merge (or none above --min-frequency)")
    if json_output:
        print_json(result)


@contextlib.contextmanager
def _stdout_stream():
    """stdout as a binary stream; a reader that goes away (`| head`) ends the command quietly (exit 0)."""
    try:
        yield sys.stdout.buffer
    except BrokenPipeError:
        # Click would turn EPIPE into exit 1; like `cat`, stop quietly. Point stdout at /dev/null so
        # the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _open_output(output: Path | None, force: bool):
    """A context manager giving a binary stream: an atomic file for --output, else stdout."""
    if output is None or str(output) == "-":
        return _stdout_stream()
    from dlnlp.io.atomic import atomic_open

    return atomic_open(output, "wb", force=force)


@app.command()
def encode(
    inputs: Inputs = None,
    tokenizer: TokenizerPath = ...,
    fmt: EncodeFormat = "ids",
    output: OutFile = None,
    shard_tokens: Annotated[int, typer.Option("--shard-tokens", help="--format bin: tokens per shard file "
                                              "(cut at line ends).")] = 100_000_000,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    streaming: Streaming = False,
    workers: Workers = 0,
    add_bos: Annotated[bool, typer.Option("--add-bos", help="Start every line with the tokenizer's "
                                          "beginning-of-text token.")] = False,
    add_eos: Annotated[bool, typer.Option("--add-eos", help="End every line with the tokenizer's end-of-text "
                                          "token (as `gpt train --ids -t TOK` and training on text do).")] = False,
    force: Force = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end: on stdout with "
                                              "--output, else on stderr (stdout carries the data).",
                                              rich_help_panel=COMMON)] = False,
    quiet: Quiet = False,
) -> None:
    """Encode text to token ids (or tokens): one line in, one line out, in order; blank lines give
    empty lines and empty input gives no output, so encode | decode gives the input back exactly.

    Lines are limited to 1,048,576 characters (DLNLP_MAX_LINE_CHARS): a longer one stops the command
    with its file and line number, since encoding it whole would take about 150 bytes per character.

    Example: cat corpus.txt | dlnlp tokenize encode -t tok.json > corpus.ids

    Example: dlnlp tokenize encode corpus.txt -t tok.json --format tokens --output corpus.tok

    Example: dlnlp tokenize encode corpus.txt -t tok.json --add-eos | dlnlp gpt train - --ids -t tok.json --out gpt

    Example: dlnlp tokenize encode corpus.txt -t tok.json --add-eos --format bin --output shards/ &&
    dlnlp gpt train shards/ --out gpt
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.corpus import iter_line_blocks
    from dlnlp.progress import Progress
    from dlnlp.tokenization.codec import encode_chunks, rechunk
    from dlnlp.tokenization.tokenizer import load_tokenizer

    if fmt == "bin":
        _encode_shards(inputs, tokenizer, output, shard_tokens, corpus_options(text_field, encoding_errors, streaming=streaming),
                       workers=workers, add_bos=add_bos, add_eos=add_eos, force=force, json_output=json_output,
                       quiet=quiet)
        return
    _check_format(fmt)
    threads = _set_workers(workers)
    if output is not None and str(output) != "-":
        check_can_write(output, force, inputs=[*(inputs or []), tokenizer], directory=False)
    tok = load_tokenizer(tokenizer)
    tok._threads = threads
    # Blank lines and empty input are valid (they encode to empty lines, and to nothing); a line over
    # the limit is refused, not cut, as the output must keep one line per input line.
    chunks = rechunk(iter_line_blocks(inputs, corpus_options(text_field, encoding_errors, streaming=streaming), require_text=False,
                                      long_lines="error"))
    start = time.perf_counter()
    with Progress("encode", unit="line", rate_unit="token", quiet=quiet) as progress, \
            _open_output(output, force) as stream:
        stats = encode_chunks(tok, chunks, stream, fmt, on_chunk=lambda n, t: progress.update(n, rate=t),
                              add_bos=add_bos, add_eos=add_eos)
        stream.flush()
    if json_output:
        import json

        seconds = time.perf_counter() - start
        summary = {"lines": stats.lines, "tokens": stats.tokens, "chars": stats.chars, "seconds": round(seconds, 3)}
        if output is not None and str(output) != "-":
            print_json(summary)
        else:
            print(json.dumps(summary), file=sys.stderr)


def _encode_shards(inputs: list[str] | None, tokenizer: Path, output: Path | None, shard_tokens: int, options,
                   *, workers: int, add_bos: bool, add_eos: bool, force: bool, json_output: bool, quiet: bool) -> None:
    """``encode --format bin``: id shards and their index in the directory ``output`` (dlnlp.io.shards)."""
    from dlnlp.errors import OptionError
    from dlnlp.io.atomic import atomic_directory
    from dlnlp.io.corpus import describe_inputs, iter_line_blocks
    from dlnlp.io.shards import ShardWriter, copy_tokenizer
    from dlnlp.progress import Progress, log
    from dlnlp.tokenization.codec import encode_to_shards, rechunk
    from dlnlp.tokenization.tokenizer import load_tokenizer

    if output is None or str(output) == "-":
        raise OptionError("--format bin writes a directory of shards: give it with --output DIR")
    if shard_tokens < 1:
        raise OptionError(f"--shard-tokens must be >= 1, got {shard_tokens}")
    threads = _set_workers(workers)
    tok = load_tokenizer(tokenizer)
    tok._threads = threads
    chunks = rechunk(iter_line_blocks(inputs, options, require_text=False, long_lines="error"))
    start = time.perf_counter()
    with atomic_directory(output, force=force, inputs=[*(inputs or []), tokenizer]) as directory, \
            Progress("encode", unit="line", rate_unit="token", quiet=quiet) as progress:
        writer = ShardWriter(directory, tok.vocab_size, shard_tokens=shard_tokens)
        stats = encode_to_shards(tok, chunks, writer, on_chunk=lambda n, t: progress.update(n, rate=t),
                                 add_bos=add_bos, add_eos=add_eos)
        identity = {**copy_tokenizer(tok.path, directory), "vocab_size": tok.vocab_size}
        index = writer.finish(tokenizer=identity, eos_id=tok.eos_id, bos_id=tok.bos_id, add_bos=add_bos,
                              add_eos=add_eos, source=describe_inputs(inputs))
    seconds = time.perf_counter() - start
    log(f"wrote {output}: {index['tokens']:,} tokens of {index['documents']:,} lines in {len(index['shards'])} "
        f"shard(s) of {index['dtype']}", quiet=quiet)
    if json_output:
        print_json({"out": str(output), "lines": stats.lines, "tokens": stats.tokens, "chars": stats.chars,
                    "shards": len(index["shards"]), "dtype": index["dtype"], "seconds": round(seconds, 3)})


@app.command()
def decode(
    inputs: Inputs = None,
    tokenizer: TokenizerPath = ...,
    fmt: Format = "ids",
    output: OutFile = None,
    skip_special: Annotated[bool, typer.Option("--skip-special", help="Drop special tokens (kept by default, "
                                               "so that encode | decode is exact).")] = False,
    encoding_errors: EncodingErrors = "strict",
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Decode lines of token ids (or tokens, or jsonl) back to text, one line per line; empty lines
    give blank lines and empty input gives no output.

    Lines are limited to 32 times the text limit of encode (96 times for jsonl): whatever encode writes
    for a line it accepts.

    Example: dlnlp tokenize encode corpus.txt -t tok.json | dlnlp tokenize decode -t tok.json
    """
    from dlnlp.io.atomic import check_can_write
    from dlnlp.io.corpus import describe_inputs, iter_lines
    from dlnlp.progress import Progress
    from dlnlp.tokenization.codec import decode_line_chars, decode_stream
    from dlnlp.tokenization.tokenizer import load_tokenizer

    _check_format(fmt)
    if output is not None and str(output) != "-":
        check_can_write(output, force, inputs=[*(inputs or []), tokenizer], directory=False)
    tok = load_tokenizer(tokenizer)
    where = describe_inputs(inputs)
    # An empty line is valid (an empty text), and so is empty input (nothing to decode), as for encode.
    lines = iter_lines(inputs, corpus_options(None, encoding_errors), require_text=False, long_lines="error",
                       max_chars=decode_line_chars(fmt))
    with Progress("decode", unit="line", rate_unit="token", quiet=quiet) as progress, \
            _open_output(output, force) as stream:
        decode_stream(tok, lines, stream, fmt, where=where, skip_special_tokens=skip_special,
                      on_chunk=lambda n, t: progress.update(n, rate=t))
        stream.flush()


@app.command()
def inspect(
    tokenizer: Annotated[Path, typer.Argument(help="tokenizer.json or .model file.", show_default=False)],
    sample: Annotated[Optional[str], typer.Option("--sample", "-s", help="Show the tokens of this text.")] = None,
    corpus: Annotated[Optional[list[str]], typer.Option("--corpus", help="Measure fertility (tokens per "
                                                        "whitespace word) on this corpus (repeatable).")] = None,
    text_field: TextField = None,
    encoding_errors: EncodingErrors = "strict",
    json_output: Json = False,
) -> None:
    """Show a tokenizer: vocabulary size, merges, special tokens, a sample's tokens, fertility on a corpus.

    A corpus line longer than 1,048,576 characters (DLNLP_MAX_LINE_CHARS) is measured in pieces of that length.

    Example: dlnlp tokenize inspect tok.json --sample "Hello world" --corpus valid.txt
    """
    from dlnlp.io.corpus import iter_lines
    from dlnlp.tokenization.stats import describe, format_description
    from dlnlp.tokenization.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    lines = iter_lines(corpus, corpus_options(text_field, encoding_errors)) if corpus else None
    info = describe(tok, sample, lines)
    if json_output:
        print_json(info)
    else:
        sys.stdout.write(format_description(info))
