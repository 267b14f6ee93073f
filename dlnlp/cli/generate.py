"""``dlnlp generate``: decode text from a GPT or RNN language model directory.

Greedy, sampling (temperature / top-k / top-p) and beam search through :mod:`dlnlp.decoding`.
Prompts come from ``--prompt`` or stdin (one per line). Without ``--json`` each result is printed
as prompt + continuation; sampling and greedy decoding stream the text as it is produced. With
``--json`` one JSON object per prompt: the text, token ids and scores of every returned hypothesis.
"""

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dlnlp.cli.options import COMMON, Device, Json, Seed

DECODE = "Decoding options"


def register(app: typer.Typer) -> None:
    """Add the top-level ``generate`` command to the root app."""
    app.command("generate")(generate)


class Codec:
    """Text <-> ids for a model directory: a CharVocab, a dlnlp Tokenizer, or plain ids."""

    def __init__(self, codec: Any, level: str, eos_id: int | None, vocab_size: int) -> None:
        self.codec, self.level, self.eos_id, self.vocab_size = codec, level, eos_id, vocab_size

    def encode(self, text: str) -> list[int]:
        from dlnlp.errors import InputError

        if self.level == "ids":
            from dlnlp.tokenization.ids import parse_id_line

            ids = parse_id_line(text, where="prompt")
            if any(i >= self.vocab_size for i in ids):
                raise InputError(f"prompt: id {max(ids)} is outside the vocabulary ({self.vocab_size})")
        elif self.level == "char":
            ids = self.codec.encode(text or "\n", errors="strict")
        else:
            ids = self.codec.encode(text)
        if not ids:
            if self.eos_id is None:
                raise InputError("empty prompt: this model has no end-of-text token to start from; give a prompt")
            ids = [self.eos_id]  # a document start, as GPT-2 does with <|endoftext|>
        return ids

    def join(self, prompt: str, continuation: str) -> str:
        return f"{prompt} {continuation}" if self.level == "ids" and prompt and continuation else prompt + continuation

    def decode(self, ids: list[int]) -> str:
        if self.eos_id is not None and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        if self.level == "ids":
            return " ".join(map(str, ids))
        return self.codec.decode(ids)

    def continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """The text ``new_ids`` add after the prompt: decoded in context, since a tokenizer may put
        spaces or merge bytes across the boundary (WordPiece, sentencepiece, byte-level BPE)."""
        if self.level in ("ids", "char"):
            return self.decode(new_ids)
        prefix = self.codec.decode(prompt_ids)
        whole = self.decode(list(prompt_ids) + list(new_ids))
        return whole[len(prefix):] if whole.startswith(prefix) else self.decode(new_ids)


def load_decoder(model_dir: Path, device: Any) -> tuple[Any, Codec]:
    """A NextTokenModel and its codec for a ``gpt`` or ``rnn_lm`` model directory."""
    from dlnlp.errors import ModelDirError
    from dlnlp.io.modeldir import read_config

    kind = read_config(model_dir)["kind"]
    if kind == "gpt":
        from dlnlp.decoding import GPTNextToken
        from dlnlp.recipes.gpt import load_gpt_dir

        model, codec, config = load_gpt_dir(model_dir, device)
        eos = config.get("eos_id")
        if eos is None and codec is not None and config["level"] == "tokenizer":
            eos = codec.eos_id
        lm = GPTNextToken(model, pad_id=0)
        return lm, Codec(codec, config["level"], eos, model.config.vocab_size)
    if kind == "rnn_lm":
        from dlnlp.decoding.interface import rnn_lm_next_token
        from dlnlp.models.rnn_lm import load_model_dir

        model, codec, config = load_model_dir(model_dir, device)
        eos = getattr(codec, "eos_id", None) if config["level"] == "tokenizer" else None
        vocab = config["model"]["vocab_size"]
        return rnn_lm_next_token(model, vocab), Codec(codec, config["level"], eos, vocab)
    raise ModelDirError(f"{model_dir}: holds a {kind!r} model; dlnlp generate decodes gpt and rnn_lm models")


def _read_prompts(prompt: str | None) -> list[str]:
    from dlnlp.cli.options import checked_utf8
    from dlnlp.errors import InputError

    if prompt is not None:
        return [checked_utf8(prompt, "--prompt")]
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


class _Streamer:
    """Print a continuation as its tokens arrive; subword pieces are decoded with all tokens so far."""

    def __init__(self, codec: Codec, prompt_ids: list[int]) -> None:
        self.codec, self.prompt_ids, self.ids, self.printed = codec, prompt_ids, [], ""

    def __call__(self, row: int, token: int) -> None:
        if self.codec.eos_id is not None and token == self.codec.eos_id:
            return
        self.ids.append(token)
        text = self.codec.continuation(self.prompt_ids, self.ids) if self.codec.level != "ids" else " " + str(token)
        if self.codec.level == "ids":
            sys.stdout.write(text)
        elif text.startswith(self.printed) and not text.endswith("\ufffd"):
            sys.stdout.write(text[len(self.printed):])
            self.printed = text
        sys.stdout.flush()

    def finish(self) -> None:
        if self.codec.level != "ids":
            text = self.codec.continuation(self.prompt_ids, self.ids)
            if text.startswith(self.printed):
                sys.stdout.write(text[len(self.printed):])
        sys.stdout.write("\n")
        sys.stdout.flush()


def generate(
    model_dir: Annotated[Path, typer.Argument(help="A GPT or RNN model directory.", show_default=False)],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Text to continue; without it, prompts "
                                                  "are read from stdin, one per line.")] = None,
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
    temperature: Annotated[float, typer.Option("--temperature", help="Softmax temperature (sampling; 0 is greedy).",
                                               rich_help_panel=DECODE)] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample among the k most likely tokens.",
                                                 rich_help_panel=DECODE)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling threshold.",
                                                   rich_help_panel=DECODE)] = None,
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
    import torch

    from dlnlp.cli.options import print_json
    from dlnlp.decoding import DecodeConfig
    from dlnlp.decoding import generate as decode
    from dlnlp.errors import DlnlpError
    from dlnlp.kernels.device import resolve_device, seed_everything

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
    dev = resolve_device(device)
    lm, codec = load_decoder(model_dir, dev)
    config.eos_id = codec.eos_id
    texts = _read_prompts(prompt)
    prompts = [codec.encode(t) for t in texts]
    seed_everything(seed)
    generator = torch.Generator(device=dev).manual_seed(seed)
    stream = not json and strategy != "beam" and num_return == 1
    step = 1 if stream else batch_size
    for start in range(0, len(prompts), step):
        chunk = prompts[start:start + step]
        streamer = None
        if stream:
            sys.stdout.write(texts[start])
            sys.stdout.flush()
            streamer = _Streamer(codec, chunk[0])
        results = decode(lm, chunk, config, generator=generator, on_token=streamer)
        if streamer is not None:
            streamer.finish()
            continue
        for offset, hyps in enumerate(results):
            text = texts[start + offset]
            if json:
                out = [{"text": codec.continuation(chunk[offset], h.tokens), "tokens": h.tokens, "score": h.score,
                        "logprob": h.logprob, "finished": h.finished} for h in hyps]
                print_json({"prompt": text, "prompt_tokens": chunk[offset], "text": out[0]["text"],
                            "tokens": out[0]["tokens"], "score": out[0]["score"], "logprob": out[0]["logprob"],
                            "hypotheses": out})
            else:
                for h in hyps:
                    sys.stdout.write(codec.join(text, codec.continuation(chunk[offset], h.tokens)) + "\n")
                sys.stdout.flush()
