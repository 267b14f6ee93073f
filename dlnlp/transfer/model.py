"""A backbone with a task head: the fine-tuned model, an ``nn.Module`` that maps a batch to logits.

    v_j   = pool(h_j, mask)                 one vector per chosen hidden state j (classify, pair, regress)
    v_j,w = h_j[first sub-token of word w]  one vector per word (tag: the label sits on the first piece)
    u     = combine_j(v_j)                  the layer itself, the mean of the last four, their concatenation,
                                            or ELMo's mix gamma * sum_j softmax(s)_j v_j (Peters et al. 2018)
    logits = W Dropout(u) + b               W ~ N(0, 0.02), b = 0 (BERT's classifier, Devlin et al. 2019)

``pool`` is one of :data:`POOLS`: ``pooler`` is BERT's pretrained ``tanh(W h[CLS] + b)`` on the last
layer, what HF's ``BertForSequenceClassification`` classifies; ``cls`` the first position's state
itself; ``mean``, ``max`` and ``last`` run over the real tokens only. Pooling comes before the layer
combination (the two commute for every pooling but ``max``); this lets frozen features be cached as
one vector per layer and example.

Strategies (:func:`apply_strategy`) decide which weights train: ``features`` (the backbone frozen),
``top`` (the top N layers, plus what sits above them such as the pooler) and ``full``; ``prompt``,
``deep-prompt`` and ``input-prompt`` train a prompt module (:mod:`dlnlp.transfer.prompt`) and the head
on a frozen backbone. With a cloze pattern (``HeadConfig.verbalizer``) the head is :class:`ClozeHead`,
the backbone's own masked-LM head read at ``[MASK]``. The state
dict of a model whose backbone is partly frozen holds only what trains (:meth:`FineTuned.state_dict`):
a head-only directory is kilobytes and names its backbone by path and content hash instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import OptionError, UsageError
from dlnlp.kernels.pooling import ScalarMix, pool
from dlnlp.settings import DictConfig
from dlnlp.transfer.backbone import Backbone

TASKS = ("classify", "pair", "tag", "regress")
POOLS = ("auto", "pooler", "cls", "mean", "max", "last")
COMBINES = ("single", "mean", "concat", "mix")
STRATEGIES = ("features", "full", "top", "prompt", "deep-prompt", "input-prompt")
PROMPT_STRATEGIES = STRATEGIES[3:]
IGNORE_INDEX = -100
_POOLING = {"cls": "first", "mean": "mean", "max": "max", "last": "last"}  # --pool -> kernels.pooling


@dataclass
class HeadConfig(DictConfig):
    """What the head reads and predicts; saved in the fine-tuned directory's config.json."""

    task: str = "classify"
    num_labels: int = 2
    dim: int = 0                     # the backbone's hidden size
    layers: list[int] = field(default_factory=lambda: [-1])  # indices into the hidden states (0 = embeddings)
    combine: str = "single"
    pool: str = "mean"
    dropout: float = 0.1
    pattern: str | None = None            # a cloze pattern ("{text} It was [MASK].")
    verbalizer: list[int] | None = None   # with a pattern: each label's word, as a token id
    mask_id: int | None = None

    def validate(self) -> HeadConfig:
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.pool not in POOLS[1:]:
            raise UsageError(f"--pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.combine not in COMBINES:
            raise UsageError(f"layer combination must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        if not 0 <= self.dropout < 1:
            raise OptionError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not self.layers or (self.combine == "single" and len(self.layers) != 1):
            raise OptionError(f"layers {self.layers} do not fit the combination {self.combine!r}")
        if self.pool == "pooler" and self.layers != [-1] and self.task != "tag":
            raise OptionError("--pool pooler reads the last layer only (BERT's pooler sits on it); "
                              "give --layer last or another --pool")
        return self

    @property
    def input_dim(self) -> int:
        return self.dim * len(self.layers) if self.combine == "concat" else self.dim


class TaskHead(nn.Module):
    """Layer combination, dropout and a linear map: ``[..., k, D]`` (k chosen layers) -> ``[..., C]``."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.mix = ScalarMix(len(config.layers)) if config.combine == "mix" else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.input_dim, 1 if config.task == "regress" else config.num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)  # BERT's initializer_range, as HF's heads
        nn.init.zeros_(self.classifier.bias)

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        how = self.config.combine
        if how == "single":
            return x[..., 0, :]
        if how == "mean":
            return x.mean(-2)
        if how == "concat":
            return x.flatten(-2)
        return self.mix(x.unbind(-2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.combine(x)))


class ClozeHead(nn.Module):
    """PET's scoring (Schick & Schütze 2021): the logit of label c is the masked-LM logit of its
    verbalizer word v_c at the ``[MASK]`` position, ``s_c = MLM(h_mask)[v_c]``; no parameters of its own."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config.validate()
        if not config.verbalizer or config.mask_id is None:
            raise ValueError("a cloze head needs verbalizer token ids and the [MASK] id")
        self.register_buffer("words", torch.tensor(config.verbalizer, dtype=torch.long), persistent=False)

    def forward(self, hidden: torch.Tensor, input_ids: torch.Tensor, mlm: Any) -> torch.Tensor:
        position = (input_ids == self.config.mask_id).int().argmax(1)
        at_mask = hidden[torch.arange(hidden.shape[0], device=hidden.device), position]
        return mlm(at_mask)[:, self.words]


class FineTuned(nn.Module):
    """``model(input_ids, token_type_ids, attention_mask, word_index)`` -> logits ``[B, C]`` (``[B, W, C]``
    for ``tag``, one row per word; ``[B, 1]`` for ``regress``).

    ``labels`` (the saved label names, in id order) and ``head.config`` say what the logits mean.
    """

    def __init__(self, backbone: Backbone, config: HeadConfig, labels: list[str] | None = None,
                 prompt: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.cloze = config.verbalizer is not None
        self.head = ClozeHead(config) if self.cloze else TaskHead(config)
        self.prompt = prompt  # a dlnlp.transfer.prompt module, or None
        self.labels = list(labels or [])
        if prompt is not None and getattr(prompt.config, "inserts_vectors", False):
            backbone.reserved = prompt.config.length  # the text's room shrinks by the prompt's vectors
        if config.pattern is not None:
            from dlnlp.transfer.prompt import pattern_template

            backbone.template = pattern_template(backbone, config.pattern)
        n = backbone.num_hidden
        for i in config.layers:
            if not -n <= i < n:
                raise OptionError(f"layer {i} is out of range: the backbone has hidden states 0..{n - 1} "
                                  f"(0 = embeddings, {n - 1} or -1 = the top layer)")
        self.layer_index = [i % n for i in config.layers]
        if config.pool == "pooler" and not backbone.has_pooler:
            raise OptionError(f"--pool pooler: the backbone {backbone.source.get('path')} has no pooler "
                              "(give --pool cls or mean)")

    @property
    def config(self) -> HeadConfig:
        return self.head.config

    def layer_inputs(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                     attention_mask: torch.Tensor | None = None, word_index: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """What the head reads: ``[B, k, D]`` (one pooled vector per chosen layer) or ``[B, W, k, D]``
        (tag: one per word and layer)."""
        c = self.config
        top_only = self.layer_index == [self.backbone.num_hidden - 1]
        feats = self.backbone(input_ids, token_type_ids, attention_mask, layers=None if top_only else self.layer_index,
                              prompt=self.prompt)
        hidden = (feats.last_hidden_state,) if top_only else feats.hidden_states
        if c.task == "tag":
            if word_index is None:
                raise ValueError("the tag task needs word_index (each word's first sub-token position)")
            index = word_index.unsqueeze(-1).expand(-1, -1, hidden[0].shape[-1])
            return torch.stack([h.gather(1, index) for h in hidden], dim=2)
        if c.pool == "pooler":
            return self.backbone.pooler(hidden[0]).unsqueeze(1)
        return torch.stack([pool(h, attention_mask, _POOLING[c.pool]) for h in hidden], dim=1)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, word_index: torch.Tensor | None = None,
                **ignored: Any) -> torch.Tensor:
        if self.cloze:
            hidden = self.backbone(input_ids, token_type_ids, attention_mask, layers=None,
                                   prompt=self.prompt).last_hidden_state
            return self.head(hidden, input_ids, self.backbone.model.mlm_logits)
        return self.head(self.layer_inputs(input_ids, token_type_ids, attention_mask, word_index))

    # --- what is saved: the trained part ---------------------------------------------------------
    def backbone_trains_whole(self) -> bool:
        return all(p.requires_grad for p in self.backbone.parameters())

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """Every tensor when the whole backbone trains; else the head and the trainable backbone
        parameters only (the frozen rest is the referenced backbone's)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self.backbone_trains_whole():
            return state
        trainable = {prefix + name for name, p in self.named_parameters() if p.requires_grad}
        return OrderedDict((k, v) for k, v in state.items()
                           if k in trainable or k.startswith(prefix + "head."))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.backbone_trains_whole():
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        expected = set(self.state_dict())
        missing = sorted(expected - set(state_dict))
        unexpected = sorted(set(state_dict) - expected)
        if strict and (missing or unexpected):
            raise RuntimeError(f"state dict does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)


def loss_for(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (classify, pair; tag over words, padding ``-100`` left out) or MSE (regress)."""
    if task == "regress":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    if task == "tag":
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits.float(), labels)


def apply_strategy(model: FineTuned, strategy: str, top: int = 0) -> None:
    """Set which weights train: ``features`` (head only), ``top`` (the top ``top`` layers, what sits above
    them and the head) or ``full`` (everything)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    backbone = model.backbone
    if strategy == "full":
        backbone.requires_grad_(True)
        return
    backbone.requires_grad_(False)
    if strategy in PROMPT_STRATEGIES:
        if model.prompt is None:
            raise UsageError(f"--strategy {strategy} needs a prompt module (dlnlp.transfer.prompt.build_prompt)")
        model.prompt.requires_grad_(True)
        return
    if strategy == "features":
        return
    layers = backbone.num_hidden - 1
    if not 1 <= top <= layers:
        raise OptionError(f"--top must be between 1 and {layers} (the backbone's layers), got {top}")
    for prefix, depth in backbone.depths().items():
        if depth > layers - top:
            module_path = prefix.split(".")
            target: Any = backbone
            for part in module_path:
                target = getattr(target, part)
            if isinstance(target, nn.Parameter):
                target.requires_grad_(True)
            else:
                target.requires_grad_(True)


class CachedHead(nn.Module):
    """The head alone, trained on cached frozen features: ``model(features)`` -> logits. Its state
    dict has the same names as a head-only :class:`FineTuned` (``head.*``)."""

    def __init__(self, head: TaskHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, **ignored: Any) -> torch.Tensor:
        return self.head(features)
