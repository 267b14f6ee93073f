"""A soft prompt for a frozen left-to-right LM (a dlnlp GPT): learned on a target corpus, decoded with.

    h_0 = [P; W_e[x_1..x_T]] + pos[0 .. K+T-1]       K prompt vectors first, then the text
    loss = -(1/T) sum_t log p(x_{t+1} | P, x_{<=t})   the LM loss of the text only (Lester et al. 2021)

Only ``P in R^{K x D}`` trains; the LM is bit-identical afterwards. A prompt directory holds::

    config.json        {"kind": "soft_prompt", "format_version": 1, "prompt": PromptConfig,
                        "backbone": {"path", "sha256", "config"}}
    model.safetensors  {"prompt.weight": [K, D]}

and refers to its LM by path and content hash, as a head-only fine-tuned directory does
(:func:`dlnlp.transfer.saved.check_backbone_source`). Decoding with it (``dlnlp generate --soft-prompt``)
runs the prompt vectors through the model first, so the KV cache holds them before the text's tokens
(:class:`dlnlp.decoding.interface.GPTNextToken`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import ModelDirError
from dlnlp.io.modeldir import WEIGHTS_NAME, load_weights, make_config, read_config
from dlnlp.transfer.prompt import PromptConfig, SoftPrompt

KIND = "soft_prompt"
FORMAT_VERSION = 1


class PromptedLM(nn.Module):
    """``model(ids [B, T], targets [B, T]) -> loss`` of an LM with ``prompt`` (``[K, D]`` vectors) before
    the text; ``prompt`` None is the LM alone. The LM's position limit counts the prompt."""

    def __init__(self, lm: nn.Module, prompt: SoftPrompt | None) -> None:
        super().__init__()
        self.lm = lm
        self.prompt = prompt

    @property
    def length(self) -> int:
        return self.prompt.weight.shape[0] if self.prompt is not None else 0

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits at the text's positions ``[B, T, V]``."""
        if self.prompt is None:
            return self.lm(ids)[0]
        embeds = self.lm.token_embedding()(ids)
        vectors = self.prompt.weight.to(embeds.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
        logits, _ = self.lm(None, inputs_embeds=torch.cat([vectors, embeds], dim=1))
        return logits[:, self.length:]

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.logits(ids)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """The prompt only while the LM is frozen (what trained); everything when the LM trains too."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if any(p.requires_grad for p in self.lm.parameters()):
            return state
        return OrderedDict((k, v) for k, v in state.items() if k.startswith(prefix + "prompt."))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return super().load_state_dict(state_dict, strict=False, assign=assign)


@torch.no_grad()
def stream_loss(model: PromptedLM, ids: torch.Tensor, batch_size: int = 32) -> tuple[float, int]:
    """Mean next-token loss over a token stream in consecutive windows of ``block_size - K`` tokens,
    each read after the prompt (every token after a window's first predicted once)."""
    was = model.training
    model.eval()
    block = model.lm.config.block_size - model.length
    device = next(model.parameters()).device
    n = len(ids)
    starts = list(range(0, n - 1, block))
    full = [s for s in starts if s + block + 1 <= n]
    batches = [torch.stack([ids[s:s + block + 1] for s in full[i:i + batch_size]]) for i in range(0, len(full), batch_size)]
    batches += [ids[s:].unsqueeze(0) for s in starts if s + block + 1 > n and n - s >= 2]  # the tail, alone
    total, count = 0.0, 0
    for part in batches:
        part = part.to(device)
        logits = model.logits(part[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), part[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += part[:, 1:].numel()
    model.train(was)
    return total / max(count, 1), count


def soft_prompt_config(prompt: SoftPrompt, source: dict[str, Any], lm_config: dict[str, Any]) -> dict[str, Any]:
    return make_config(KIND, FORMAT_VERSION, prompt=prompt.config.to_dict(),
                       backbone={"path": source["path"], "sha256": source["sha256"], "config": lm_config})


def load_soft_prompt(directory: str | Path, model_dir: str | Path | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ``[K, D]`` prompt of a prompt directory and its config.json; refused when the LM it was learned
    for (``model_dir``, else the path it names) has a different content hash."""
    from dlnlp.transfer.backbone import content_hash
    from dlnlp.transfer.saved import check_backbone_source

    directory = Path(directory)
    config = read_config(directory, KIND, (FORMAT_VERSION,))
    source = config.get("backbone") or {}
    if model_dir is None:
        check_backbone_source(source, directory)
    elif content_hash(model_dir) != source.get("sha256"):
        raise ModelDirError(f"{directory}: this soft prompt was learned for {source.get('path')} (content hash "
                            f"{str(source.get('sha256'))[:12]}...), not for {model_dir}")
    state = load_weights(directory / WEIGHTS_NAME)
    if "prompt.weight" not in state:
        raise ModelDirError(f"{directory}/{WEIGHTS_NAME}: no prompt.weight")
    PromptConfig.from_dict(config["prompt"])  # well-formed
    return state["prompt.weight"].float(), config
