"""Text in, text out: decoding a model directory's model on prompts, streamed or whole.

What ``dlnlp generate`` and ``dlnlp rnn sample`` share: the model comes from
:func:`dlnlp.models.registry.load_model`, prompts and continuations go through its
:class:`~dlnlp.tokenization.text_codec.TextCodec`, tokens come from :func:`dlnlp.decoding.generate`::

    gen = TextGenerator.load("run", device="auto")
    for text, prompt_ids, hypotheses in gen.run(["ROMEO:"], DecodeConfig(strategy="sample"), seed=0,
                                                stream=sys.stdout):
        ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from dlnlp.decoding.search import DecodeConfig, Hypothesis, generate


@dataclass
class TextGenerator:
    """A decodable model (``lm``, a NextTokenModel), its codec and the device it runs on."""

    lm: Any
    codec: Any
    device: Any

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str = "auto", *,
             kind: str | tuple[str, ...] | None = None, soft_prompt: Any = None) -> TextGenerator:
        """Load any decodable model directory (``kind`` restricts the kinds accepted); ``soft_prompt``
        (``[K, D]`` vectors) is read before every prompt, by models whose adapter takes one."""
        from dlnlp.errors import InputError
        from dlnlp.kernels.device import resolve_device
        from dlnlp.models.registry import load_model

        dev = resolve_device(device)
        loaded = load_model(model_dir, dev, kind=kind)
        lm = loaded.next_token()
        if soft_prompt is not None:
            if not hasattr(lm, "set_soft_prompt"):
                raise InputError(f"{model_dir}: a {loaded.family.kind!r} model does not read soft prompts (a GPT does)")
            try:
                lm.set_soft_prompt(soft_prompt)
            except ValueError as exc:
                raise InputError(f"--soft-prompt: {exc}") from None
        return cls(lm, loaded.codec, dev)

    def encode(self, texts: Sequence[str], where: str = "prompt") -> list[list[int]]:
        """Prompt ids of each text (an empty text starts from end-of-text, as the codec decides)."""
        return [self.codec.encode(text, where) for text in texts]

    def run(self, texts: Sequence[str], config: DecodeConfig, *, seed: int = 0, batch_size: int = 16,
            stream: TextIO | None = None, where: str = "prompt",
            ) -> Iterator[tuple[str, list[int], list[Hypothesis]]]:
        """Decode each prompt: ``(text, prompt ids, hypotheses)`` per prompt, in order.

        With ``stream`` (greedy or sampling, one hypothesis) each prompt is decoded alone and written
        to ``stream`` as prompt + continuation + newline while its tokens are chosen.
        """
        import torch

        from dlnlp.kernels.device import seed_everything

        config.eos_id = self.codec.eos_id
        prompts = self.encode(texts, where)
        seed_everything(seed)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        step = 1 if stream is not None else batch_size
        for start in range(0, len(prompts), step):
            chunk = prompts[start:start + step]
            on_token = None
            if stream is not None:
                stream.write(texts[start])
                stream.flush()
                decoder = self.codec.stream(chunk[0])

                def on_token(row: int, token: int, decoder: Any = decoder) -> None:
                    piece = decoder.push(token)
                    if piece:
                        stream.write(piece)
                        stream.flush()

            results = generate(self.lm, chunk, config, generator=generator, on_token=on_token)
            if stream is not None:
                stream.write(decoder.finish() + "\n")
                stream.flush()
            for offset, hypotheses in enumerate(results):
                yield texts[start + offset], chunk[offset], hypotheses
