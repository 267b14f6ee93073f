"""What ``dlnlp tokenize inspect`` reports: vocabulary, merges, a sample's tokens, fertility."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dlnlp.tokenization.codec import iter_text_chunks
from dlnlp.tokenization.tokenizer import Tokenizer


def fertility(tokenizer: Tokenizer, lines: Iterable[str]) -> dict[str, Any]:
    """Average tokens per whitespace-separated word over a corpus (lower is a better fit), plus
    characters per token. Lines are encoded in batches like ``encode``."""
    words = tokens = chars = count = 0
    for chunk in iter_text_chunks(lines):
        ids = tokenizer.encode_batch(chunk)
        tokens += sum(map(len, ids))
        words += sum(len(line.split()) for line in chunk)
        chars += sum(map(len, chunk))
        count += len(chunk)
    return {
        "lines": count,
        "words": words,
        "tokens": tokens,
        "fertility": tokens / words if words else None,
        "chars_per_token": chars / tokens if tokens else None,
    }


def describe(tokenizer: Tokenizer, sample: str | None = None, corpus: Iterable[str] | None = None) -> dict[str, Any]:
    """A summary of ``tokenizer``; the sample's tokens and the corpus fertility when given."""
    info: dict[str, Any] = {
        "path": tokenizer.path,
        "engine": tokenizer.engine,
        "model": tokenizer.model_type,
        "byte_level": tokenizer.is_byte_level,
        "vocab_size": tokenizer.vocab_size,
        "merges": len(tokenizer.merges()) if tokenizer.engine == "hf" else None,
        "special_tokens": tokenizer.special_tokens,
        "unk_id": tokenizer.unk_id,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "pad_id": tokenizer.pad_id,
    }
    if sample is not None:
        info["sample"] = {"text": sample, "tokens": tokenizer.tokens(sample), "ids": tokenizer.encode(sample)}
    if corpus is not None:
        info["corpus"] = fertility(tokenizer, corpus)
    return info


def format_description(info: dict[str, Any]) -> str:
    """The human-readable form of :func:`describe` (``--json`` prints the dict instead)."""
    out = [
        f"tokenizer      {info['path']}",
        f"engine/model   {info['engine']} / {info['model']}{' (byte-level)' if info['byte_level'] else ''}",
        f"vocab size     {info['vocab_size']}",
    ]
    if info["merges"] is not None and info["model"] == "BPE":
        out.append(f"merges         {info['merges']}")
    specials = ", ".join(f"{token}={token_id}" for token, token_id in info["special_tokens"].items()) or "none"
    out.append(f"special tokens {specials}")
    if "sample" in info:
        sample = info["sample"]
        out.append(f"sample         {sample['text']!r}")
        out.append(f"  {len(sample['tokens'])} tokens  {' '.join(sample['tokens'])}")
        out.append(f"  ids          {' '.join(map(str, sample['ids']))}")
    if "corpus" in info:
        corpus = info["corpus"]
        if corpus["fertility"] is None:
            out.append("fertility      n/a (no words in the corpus)")
        else:
            out.append(
                f"fertility      {corpus['fertility']:.3f} tokens/word "
                f"({corpus['tokens']} tokens, {corpus['words']} words, {corpus['lines']} lines; "
                f"{corpus['chars_per_token']:.2f} chars/token)"
            )
    return "\n".join(out) + "\n"
