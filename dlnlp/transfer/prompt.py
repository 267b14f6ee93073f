"""Prompts on a frozen backbone: soft prompts, deep prompts, input-dependent prompts, cloze patterns.

Every prompt module is called as ``prompt(input_ids, attention_mask, embedding) -> (vectors, prefix)``
by :meth:`dlnlp.transfer.backbone.Backbone.forward`: ``vectors`` ``[B or 1, K, D]`` are inserted among
the input embeddings, ``prefix`` is one ``(keys, values)`` pair per layer for the shared attention
kernel (:mod:`dlnlp.kernels.attention`). Only the prompt (and the task head) trains.

* :class:`SoftPrompt` (``--strategy prompt``; Lester et al. 2021, "The Power of Scale for
  Parameter-Efficient Prompt Tuning"): K free vectors ``P in R^{K x D}`` in the token-embedding space,
  inserted after ``[CLS]`` of an encoder (before everything for a left-to-right LM). They receive
  position and segment embeddings like tokens. Initialized ``random`` (N(0, 1), as PEFT's and
  P-tuning v2's ``nn.Embedding``), ``vocab`` (the embeddings of K tokens drawn from the vocabulary,
  special tokens excepted) or from a text (its tokens' embeddings, repeated to fill K and cut to K,
  PEFT's ``TEXT`` init: "initialize from a discrete prompt").
* :class:`DeepPrompt` (``--strategy deep-prompt``; Li & Liang 2021 prefix tuning, Liu et al. 2022
  P-tuning v2): keys and values ``K^l_p, V^l_p in R^{K x D}`` for every layer l, attended to by every
  position (positionless, never masked). With ``--prefix-projection H`` they are reparameterized
  during training as ``MLP(E)`` with ``E in R^{K x D}``, ``MLP(x) = W_2 tanh(W_1 x + b_1) + b_2``
  (``W_2 in R^{2 L D x H}``), which Li & Liang found steadier to optimize; the MLP is folded away when
  saving (:meth:`DeepPrompt.fold`): only the ``L x 2 x K x D`` prefix it computes is kept.
* :class:`InputPrompt` (``--strategy input-prompt``; the seed's prompt made from the input, as in
  Wu et al. 2022 IDPG): ``P(x) = P_0 + reshape(W_2 tanh(W_1 m(x) + b_1) + b_2)`` where ``m(x)`` is the
  mean of the input tokens' (frozen) embeddings, real tokens only. ``W_2`` starts at zero, so training
  starts from the plain soft prompt ``P_0``.
* Cloze patterns (``--pattern "{text} It was [MASK]." --verbalizer 1=great,0=terrible``; Schick &
  Schütze 2021, PET): :func:`verbalizer_ids` and :func:`pattern_template`; the score of label c is the
  masked-LM logit of its word at ``[MASK]`` (:class:`dlnlp.transfer.model.ClozeHead`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlnlp.errors import InputError, ModelDirError, OptionError
from dlnlp.settings import DictConfig

PROMPT_STRATEGIES = ("prompt", "deep-prompt", "input-prompt")
PROMPT_POSITIONS = ("first", "after-cls")
MASK_TOKEN = "[MASK]"
TEXT_SLOT = "{text}"


@dataclass
class PromptConfig(DictConfig):
    """The prompt's shape; saved under ``"prompt"`` in a fine-tuned directory's config.json."""

    strategy: str = "prompt"
    length: int = 20          # K: vectors (prompt, input-prompt) or prefix positions per layer (deep-prompt)
    init: str = "random"      # random | vocab | a text (prompt, input-prompt)
    projection: int = 0       # deep-prompt: hidden size of the reparameterizing MLP (0: none; folded on save)
    hidden: int = 64          # input-prompt: hidden size of the prompt network
    dim: int = 0              # the backbone's width
    layers: int = 0           # the backbone's layers (deep-prompt)
    heads: int = 0            # the backbone's attention heads (deep-prompt)
    # first: before [CLS], the first vector's output standing in for [CLS]'s (PEFT's placement);
    # after-cls: [CLS] keeps position 0. Directories saved before this field read after-cls.
    position: str = "after-cls"

    def validate(self) -> PromptConfig:
        if self.strategy not in PROMPT_STRATEGIES:
            raise OptionError(f"prompt strategy must be one of {', '.join(PROMPT_STRATEGIES)}, got {self.strategy!r}")
        low = 0 if self.strategy == "deep-prompt" else 1  # a deep prompt of length 0 is the plain model
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < low:
            raise OptionError(f"--prompt-length must be >= {low}, got {self.length}")
        if self.position not in PROMPT_POSITIONS:
            raise OptionError(f"--prompt-position must be one of {', '.join(PROMPT_POSITIONS)}, got {self.position!r}")
        if self.projection < 0 or self.hidden < 1:
            raise OptionError(f"--prefix-projection must be >= 0 and the prompt network's width >= 1, got "
                              f"{self.projection} and {self.hidden}")
        if self.strategy == "deep-prompt" and self.init != "random":
            raise OptionError("--prompt-init: a deep prompt starts random (its keys and values are no embeddings)")
        if self.strategy == "deep-prompt" and (self.heads < 1 or self.dim % self.heads):
            raise OptionError(f"a deep prompt needs the backbone's heads (got {self.heads} for width {self.dim})")
        return self

    @property
    def inserts_vectors(self) -> bool:
        return self.strategy != "deep-prompt"


def _init_vectors(config: PromptConfig, embedding: nn.Embedding, tokenize: Any, specials: Sequence[int],
                  generator: torch.Generator | None) -> torch.Tensor:
    """``[K, D]`` start of a soft prompt: random, sampled vocabulary embeddings, or a text's embeddings."""
    k, weight = config.length, embedding.weight.detach()
    if config.init == "random":
        return torch.randn(k, weight.shape[1], generator=generator)
    if config.init == "vocab":
        allowed = torch.ones(weight.shape[0], dtype=torch.bool)
        allowed[[i for i in specials if i is not None and 0 <= i < weight.shape[0]]] = False
        candidates = allowed.nonzero().squeeze(1)
        ids = candidates[torch.randint(len(candidates), (k,), generator=generator)]
    else:
        if tokenize is None:
            raise OptionError("--prompt-init TEXT: the backbone has no tokenizer to read the text with")
        found = list(tokenize(config.init))
        if not found:
            raise OptionError(f"--prompt-init {config.init!r}: the text has no tokens")
        ids = torch.tensor((found * (k // len(found) + 1))[:k])
    return weight[ids.to(weight.device)].float().cpu().clone()


class SoftPrompt(nn.Module):
    """K trainable input vectors, the same for every example (Lester et al. 2021)."""

    def __init__(self, config: PromptConfig, start: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        self.weight = nn.Parameter(start if start is not None else torch.zeros(config.length, config.dim))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, embedding: nn.Embedding
                ) -> tuple[torch.Tensor, None]:
        return self.weight.unsqueeze(0), None


class InputPrompt(nn.Module):
    """``P(x) = P_0 + MLP(mean token embedding of x)``: a prompt made from the input (module docstring)."""

    def __init__(self, config: PromptConfig, start: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        k, d = config.length, config.dim
        self.weight = nn.Parameter(start if start is not None else torch.zeros(k, d))
        self.net = nn.Sequential(nn.Linear(d, config.hidden), nn.Tanh(), nn.Linear(config.hidden, k * d))
        nn.init.zeros_(self.net[2].weight)  # starts as the plain soft prompt P_0
        nn.init.zeros_(self.net[2].bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, embedding: nn.Embedding
                ) -> tuple[torch.Tensor, None]:
        with torch.no_grad():  # the embedding is frozen: no graph through it
            tokens = embedding(input_ids)
        mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).unsqueeze(-1)
        mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1)
        delta = self.net(mean.to(self.weight.dtype)).view(-1, *self.weight.shape)
        return self.weight.unsqueeze(0) + delta, None


class DeepPrompt(nn.Module):
    """Prefix keys and values for every layer, optionally reparameterized by an MLP (module docstring).

    ``prefix`` ``[L, 2, K, D]`` (no projection) or ``embedding`` ``[K, D]`` and ``mlp`` (projection)."""

    def __init__(self, config: PromptConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config.validate()
        k, d, n = config.length, config.dim, config.layers
        if config.projection:
            self.embedding = nn.Parameter(torch.randn(k, d, generator=generator))
            self.mlp = nn.Sequential(nn.Linear(d, config.projection), nn.Tanh(), nn.Linear(config.projection, n * 2 * d))
        else:
            self.prefix = nn.Parameter(torch.randn(n, 2, k, d, generator=generator))

    def values(self) -> torch.Tensor:
        """``[L, 2, K, D]``: every layer's prefix keys (0) and values (1)."""
        c = self.config
        if c.projection:
            return self.mlp(self.embedding).view(c.length, c.layers, 2, c.dim).permute(1, 2, 0, 3)
        return self.prefix

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, embedding: nn.Embedding
                ) -> tuple[None, list[tuple[torch.Tensor, torch.Tensor]]]:
        c = self.config
        x = self.values()
        # [L, 2, K, D] -> per layer [1, H, K, D / H], as the attention kernel splits its own keys
        x = x.view(c.layers, 2, 1, c.length, c.heads, c.dim // c.heads).transpose(3, 4)
        return None, [(layer[0], layer[1]) for layer in x]

    @torch.no_grad()
    def folded_state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The state of the same prompt without its MLP: ``{prefix + "prefix": MLP(E)}``."""
        return {prefix + "prefix": self.values().detach().clone()}


def build_prompt(config: PromptConfig, embedding: nn.Embedding, *, tokenize: Any = None,
                 specials: Sequence[int] = (), seed: int = 0) -> nn.Module:
    """A prompt module for a backbone whose token embedding is ``embedding``; ``tokenize(text) -> ids``
    reads a text init."""
    config.validate()
    generator = torch.Generator().manual_seed(seed)
    if config.strategy == "deep-prompt":
        return DeepPrompt(config, generator)
    start = _init_vectors(config, embedding, tokenize, specials, generator)
    return (SoftPrompt if config.strategy == "prompt" else InputPrompt)(config, start)


def fold_state(state: dict[str, torch.Tensor], module: nn.Module | None, prefix: str = "prompt.") -> dict[str, Any]:
    """``state`` with a deep prompt's MLP replaced by the prefix it computes (nothing else changes)."""
    if not isinstance(module, DeepPrompt) or not module.config.projection:
        return state
    out = {k: v for k, v in state.items() if not k.startswith(prefix)}
    out.update(module.folded_state(prefix))
    return out


# --- cloze patterns (PET) -----------------------------------------------------------------------

def parse_verbalizer(text: str) -> dict[str, str]:
    """``"positive=great,negative=terrible"`` -> ``{"positive": "great", "negative": "terrible"}``."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        label, eq, word = part.partition("=")
        if not eq or not label.strip() or not word.strip():
            raise OptionError(f"--verbalizer: expected LABEL=WORD pairs separated by commas, got {part!r}")
        if label.strip() in pairs:
            raise OptionError(f"--verbalizer: label {label.strip()!r} given twice")
        pairs[label.strip()] = word.strip()
    if len(pairs) < 2:
        raise OptionError("--verbalizer needs a word for at least two labels")
    return pairs


def check_mlm_backbone(backbone: Any) -> None:
    """Refuse a backbone without a masked-LM head (a cloze pattern reads it)."""
    if not getattr(backbone.model, "has_mlm_head", False):
        raise ModelDirError(f"{backbone.source.get('path')}: --pattern needs a masked-LM head and this backbone has "
                            "none (sentence encoders such as all-MiniLM-L6-v2 ship without it): use a BERT "
                            "pretrained by `dlnlp bert pretrain`, or an HF BertForMaskedLM checkpoint")


def mask_id(backbone: Any) -> int:
    found = backbone.tokenizer.token_to_id(MASK_TOKEN) if backbone.tokenizer is not None else None
    if found is None:
        raise ModelDirError(f"{backbone.source.get('path')}: the tokenizer has no {MASK_TOKEN} token")
    return int(found)


def pattern_template(backbone: Any, pattern: str) -> tuple[list[int], list[int]]:
    """Token ids before and after ``{text}`` in ``pattern``; exactly one ``[MASK]`` among them."""
    if pattern.count(TEXT_SLOT) != 1:
        raise OptionError(f"--pattern must hold {TEXT_SLOT} once, got {pattern!r}")
    before, _, after = pattern.partition(TEXT_SLOT)
    ids = [list(backbone.tokenizer.encode(part)) if part.strip() else []
           for part in (before, after)]
    if sum(x.count(mask_id(backbone)) for x in ids) != 1:
        raise OptionError(f"--pattern must hold {MASK_TOKEN} once outside {TEXT_SLOT}, got {pattern!r}")
    return ids[0], ids[1]


def verbalizer_ids(backbone: Any, verbalizer: dict[str, str], labels: Sequence[str]) -> list[int]:
    """The token id of each label's word, in ``labels`` order; each word must be one token (as PET's)."""
    missing = [label for label in labels if label not in verbalizer]
    if missing:
        raise InputError(f"--verbalizer has no word for the label(s) {', '.join(map(repr, missing))} of the data")
    ids = []
    for label in labels:
        word = verbalizer[label]
        pieces = list(backbone.tokenizer.encode(word))
        if len(pieces) != 1:
            raise OptionError(f"--verbalizer: {word!r} (label {label!r}) is {len(pieces)} tokens for this tokenizer; "
                              "each word must be one token")
        ids.append(pieces[0])
    return ids
