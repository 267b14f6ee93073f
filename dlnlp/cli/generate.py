"""``dlnlp generate``: decode text from a GPT or RNN language model directory.

Greedy, sampling (temperature / top-k / top-p) and beam search through :mod:`dlnlp.decoding`.
Prompts come from ``--prompt`` or stdin (one per line). Without ``--json`` each result is printed
as prompt + continuation; one prompt decoded by sampling or greedy search streams as it is produced.
Several results are separated by a line ``---`` (:data:`SEPARATOR`) when any of them spans several
lines or ``--num-return`` is above 1, so that a reader can tell where each ends. With ``--json`` one
JSON object per prompt: the text, token ids and scores of every returned hypothesis.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import (
    COMMON,
    DECODE,
    Device,
    Force,
    Json,
    OutFile,
    Prime,
    Quiet,
    Seed,
    Temperature,
    Threads,
    TopK,
    TopP,
)

SEPARATOR = "---"  # between results in text output when one spans lines (a YAML document separator)


def register(app: typer.Typer) -> None:
    """Add the top-level ``generate`` command to the root app."""
    app.command("generate")(generate)


def _read_prompts(prompt: str | None) -> list[str]:
    from dlnlp.cli.options import checked_utf8
    from dlnlp.errors import InputError

    if prompt is not None:
        return [prompt]
    if sys.stdin.isatty():
        raise InputError("no --prompt and nothing on stdin (give --prompt TEXT or pipe prompts, one per line)")
    raw = getattr(sys.stdin, "buffer", None)  # bytes: decoded strictly whatever the locale
    lines = []
    for number, line in enumerate(raw if raw is not None else sys.stdin, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"<stdin>:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start + 1})") from None
        lines.append(checked_utf8(line, f"<stdin>:{number}").rstrip("\n").rstrip("\r"))
    if not lines:
        raise InputError("stdin holds no prompts")
    return lines


def generate(
    model_dir: Annotated[Path, typer.Argument(help="A GPT or RNN model directory.", show_default=False)],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Text to continue; without it, prompts "
                                                  "are read from stdin, one per line.")] = None,
    prime: Prime = None,
    strategy: Annotated[str, typer.Option("--strategy", help="greedy, sample or beam.", rich_help_panel=DECODE)]
    = "sample",
    num_beams: Annotated[int, typer.Option("--num-beams", "-k", help="Beams (beam search).",
                                           rich_help_panel=DECODE)] = 4,
    num_return: Annotated[int, typer.Option("--num-return", "-n", help="Hypotheses per prompt: the n best "
                                            "(beam) or n samples.", rich_help_panel=DECODE)] = 1,
    length_penalty: Annotated[float, typer.Option("--length-penalty", help="alpha: beam scores are log p / "
                                                  "length**alpha (1: average per token, 0: sum).",
                                                  rich_help_panel=DECODE)] = 1.0,
    length_norm: Annotated[str, typer.Option("--length-norm", help="power (log p / |Y|^alpha, HF's convention) "
                                             "or gnmt (log p / ((5+|Y|)/6)^alpha).", rich_help_panel=DECODE)]
    = "power",
    temperature: Temperature = 1.0,
    top_k: TopK = None,
    top_p: TopP = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate at most.",
                                                rich_help_panel=DECODE)] = 100,
    min_new_tokens: Annotated[int, typer.Option("--min-new-tokens", help="End-of-text is forbidden before this "
                                                "many new tokens.", rich_help_panel=DECODE)] = 0,
    no_repeat_ngram: Annotated[int, typer.Option("--no-repeat-ngram", help="Never repeat an n-gram of this size "
                                                 "(0: off).", rich_help_panel=DECODE)] = 0,
    soft_prompt: Annotated[Optional[Path], typer.Option("--soft-prompt", help="A directory written by dlnlp gpt "
                                                        "prompt-tune for this model: its vectors are read before "
                                                        "every prompt.", rich_help_panel=DECODE)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts decoded together.",
                                            rich_help_panel=COMMON)] = 16,
    seed: Seed = 0,
    device: Device = "auto",
    threads: Threads = None,
    json: Json = False,
    output: OutFile = None,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Generate text from a trained model: greedy, sampling or beam search.

    Example: dlnlp generate shakes-gpt --prompt "ROMEO:" --strategy beam --num-beams 4 --max-new-tokens 40

    Example: dlnlp generate brown-gpt --soft-prompt mr-prompt --prompt "the film" --strategy beam

    Example: printf 'def main\\nimport os\\n' | dlnlp generate run --strategy sample --top-p 0.9 --json

    Several results in text output are separated by a line '---' when one of them spans several lines or
    --num-return is above 1; --json is the format for programs.
    """
    from dlnlp.cli.options import prompt_option
    from dlnlp.decoding import DecodeConfig
    from dlnlp.decoding.text import TextGenerator
    from dlnlp.errors import DlnlpError, checked

    config = DecodeConfig(strategy=strategy, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                          num_beams=num_beams, num_return=num_return, length_penalty=length_penalty,
                          length_norm=length_norm, temperature=temperature, top_k=top_k, top_p=top_p,
                          no_repeat_ngram=no_repeat_ngram)
    checked(config)
    if batch_size < 1:
        raise DlnlpError(f"--batch-size must be >= 1, got {batch_size}")
    prompt, _ = prompt_option(prompt, prime)
    if output is not None:
        from dlnlp.io.atomic import check_can_write

        check_can_write(output, force, inputs=[model_dir], directory=False)
    vectors = None
    if soft_prompt is not None:
        from dlnlp.recipes.prompt_tune import load_soft_prompt

        vectors, _ = load_soft_prompt(soft_prompt, model_dir)
    generator = TextGenerator.load(model_dir, device, soft_prompt=vectors)
    texts = _read_prompts(prompt)
    with _open_output(output, force) as sink:
        count = _write_results(generator, texts, config, sink, seed=seed, batch_size=batch_size, json=json,
                               per_prompt=not json and strategy != "beam" and num_return == 1)
    if output is not None:
        from dlnlp.progress import log

        log(f"wrote {output}: {count} results for {len(texts)} prompts", quiet=quiet)


def _open_output(output: Path | None, force: bool):
    """The stream results go to: an atomic file for --output (renamed into place at the end), else stdout."""
    import contextlib

    if output is None or str(output) == "-":
        return contextlib.nullcontext(sys.stdout)
    from dlnlp.io.atomic import atomic_open

    return atomic_open(output, "w", force=force, check=False)


def _write_results(generator, texts: list[str], config, out, *, seed: int, batch_size: int, json: bool,
                   per_prompt: bool) -> int:
    """Decode ``texts`` and write the results to ``out`` (text or JSON lines); returns how many."""
    import io
    import json as json_module

    codec = generator.codec
    # One prompt by sampling or greedy search streams as it is decoded. Several are decoded the same way
    # (one at a time: the same samples) but printed at the end, when the framing can be decided.
    live = per_prompt and len(texts) == 1
    stream = out if live else (io.StringIO() if per_prompt else None)
    results = generator.run(texts, config, seed=seed, batch_size=batch_size, stream=stream)
    if json:
        count = 0
        for text, prompt_ids, hyps in results:
            found = [{"text": codec.continuation(prompt_ids, h.tokens), "tokens": h.tokens, "score": h.score,
                      "logprob": h.logprob, "finished": h.finished} for h in hyps]
            out.write(json_module.dumps({"prompt": text, "prompt_tokens": prompt_ids, "text": found[0]["text"],
                                         "tokens": found[0]["tokens"], "score": found[0]["score"],
                                         "logprob": found[0]["logprob"], "hypotheses": found},
                                        ensure_ascii=False, default=str) + "\n")
            out.flush()
            count += len(found)
        return count
    printed = [codec.join(text, codec.continuation(prompt_ids, h.tokens))
               for text, prompt_ids, hyps in results for h in hyps]
    if live:
        return len(printed)
    framed = config.num_return > 1 or any("\n" in text for text in printed)
    out.write(("\n" + SEPARATOR + "\n" if framed else "\n").join(printed) + "\n")
    out.flush()
    return len(printed)
