"""``dlnlp generate``: decode text from a GPT or RNN language model directory.

Greedy, sampling (temperature / top-k / top-p) and beam search through :mod:`dlnlp.decoding`.
Prompts come from ``--prompt`` or stdin (one per line). Without ``--json`` each result is printed
as prompt + continuation; sampling and greedy decoding stream the text as it is produced. With
``--json`` one JSON object per prompt: the text, token ids and scores of every returned hypothesis.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dlnlp.cli.options import COMMON, DECODE, Device, Json, Prime, Seed, Temperature, TopK, TopP


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
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts decoded together.",
                                            rich_help_panel=COMMON)] = 16,
    seed: Seed = 0,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Generate text from a trained model: greedy, sampling or beam search.

    Example: dlnlp generate shakes-gpt --prompt "ROMEO:" --strategy beam --num-beams 4 --max-new-tokens 40

    Example: printf 'def main\\nimport os\\n' | dlnlp generate run --strategy sample --top-p 0.9 --json
    """
    from dlnlp.cli.options import print_json, prompt_option
    from dlnlp.decoding import DecodeConfig
    from dlnlp.decoding.text import TextGenerator
    from dlnlp.errors import DlnlpError

    config = DecodeConfig(strategy=strategy, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                          num_beams=num_beams, num_return=num_return, length_penalty=length_penalty,
                          length_norm=length_norm, temperature=temperature, top_k=top_k, top_p=top_p,
                          no_repeat_ngram=no_repeat_ngram)
    try:
        config.validate()
    except ValueError as exc:
        raise DlnlpError(str(exc)) from None
    if batch_size < 1:
        raise DlnlpError(f"--batch-size must be >= 1, got {batch_size}")
    prompt, _ = prompt_option(prompt, prime)
    generator = TextGenerator.load(model_dir, device)
    codec = generator.codec
    texts = _read_prompts(prompt)
    stream = not json and strategy != "beam" and num_return == 1
    results = generator.run(texts, config, seed=seed, batch_size=batch_size,
                            stream=sys.stdout if stream else None)
    for text, prompt_ids, hyps in results:
        if stream:
            continue
        if json:
            out = [{"text": codec.continuation(prompt_ids, h.tokens), "tokens": h.tokens, "score": h.score,
                    "logprob": h.logprob, "finished": h.finished} for h in hyps]
            print_json({"prompt": text, "prompt_tokens": prompt_ids, "text": out[0]["text"],
                        "tokens": out[0]["tokens"], "score": out[0]["score"], "logprob": out[0]["logprob"],
                        "hypotheses": out})
        else:
            for h in hyps:
                sys.stdout.write(codec.join(text, codec.continuation(prompt_ids, h.tokens)) + "\n")
            sys.stdout.flush()
