"""A pretrained model seen by transfer code: text in, every layer's hidden states out.

:class:`Backbone` wraps any dlnlp model with ``features()`` (BERT, GPT, the RNN LMs) with the text
codec it was trained with, and knows how that model reads text:

* an encoder that ``reads_segments`` (BERT) gets ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with
  segment ids 0/1 and an attention mask, as in pretraining (Devlin et al. 2019, section 3);
* a left-to-right LM (GPT, RNN) gets the text's ids, a pair joined by its end-of-text token; the
  padding goes on the right, which a causal model never sees from the real tokens.

:func:`load_backbone` reads a dlnlp model directory, or an HF checkpoint directory converted on the
fly by the family's own importer (the code behind ``dlnlp bert import``). :func:`content_hash` is
the reference a head-only fine-tuned directory keeps to its backbone.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlnlp.errors import InputError, ModelDirError, OptionError
from dlnlp.models.features import Features, Layers
from dlnlp.models.registry import get_family, load_model

# HF config.json "model_type" -> the dlnlp family whose hf_converter imports it
HF_MODEL_TYPES = {"bert": "bert", "gpt2": "gpt"}
# files whose bytes define what a backbone computes on text: weights and tokenizer/vocabulary
HASHED_SUFFIXES = (".safetensors", ".bin")
HASHED_NAMES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json")


def content_hash(directory: str | Path) -> str:
    """SHA-256 over the names and bytes of a model directory's weights and tokenizer files, sorted.

    The identity of a backbone: a head trained on it refuses another (``config.json`` and logs are
    left out, so a moved or re-described checkpoint keeps its hash)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and (p.suffix in HASHED_SUFFIXES or p.name in HASHED_NAMES))
    if not files:
        raise ModelDirError(f"{directory}: no weights to identify the backbone by")
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass
class EncodedText:
    """One example as ids: ``ids``, segment ids ``types`` (None for a model without segments)."""

    ids: list[int]
    types: list[int] | None = None


@dataclass
class EncodedWords:
    """A sentence as ids with the position of each word's first sub-token (``starts``); words past the
    length limit have none (``len(starts) < words``)."""

    ids: list[int]
    starts: list[int]
    words: int


class Backbone(nn.Module):
    """A pretrained model and its text codec: ``backbone(ids, types, mask, layers)`` -> Features.

    ``num_hidden`` counts the hidden states (layers + 1, the embedding output first), ``dim`` their
    width, ``max_len`` the longest input in tokens. ``source`` is ``{"path", "sha256"}`` of the
    directory it was read from; ``config`` that directory's config.json (heads removed).
    """

    def __init__(self, model: nn.Module, codec: Any, config: dict[str, Any], source: dict[str, Any],
                 codec_files: dict[str, bytes], *, keep_mlm_head: bool = False) -> None:
        super().__init__()
        if not hasattr(model, "features"):
            raise ModelDirError(f"{source.get('path')}: a {config.get('kind')!r} model has no hidden states to "
                                "fine-tune (backbones: models with features(), such as bert, gpt, rnn_lm)")
        # cloze patterns (dlnlp.transfer.prompt) read the pretrained masked-LM head: kept for them only
        self.template: tuple[list[int], list[int]] | None = None  # token ids around the text (a cloze pattern)
        self.reserved = 0  # positions taken by soft-prompt vectors, left out of the text's room
        if hasattr(model, "drop_pretraining_heads") and not keep_mlm_head:
            model.drop_pretraining_heads()
            if hasattr(model, "config") and hasattr(model.config, "to_dict"):
                config = {**config, "model": model.config.to_dict()}
        self.model = model
        self.codec = codec
        self.config = config
        self.source = source
        self.codec_files = codec_files
        self.segments = bool(getattr(model, "reads_segments", False))
        model_config = getattr(model, "config", None)
        self.max_len = int(getattr(model_config, "max_len", 0) or getattr(model_config, "block_size", 0) or 1 << 20)
        tokenizer = getattr(codec, "tokenizer", None)
        self.tokenizer = tokenizer
        if self.segments:
            ids = {name: tokenizer.token_to_id(name) if tokenizer is not None else None
                   for name in ("[CLS]", "[SEP]", "[PAD]")}
            if ids["[CLS]"] is None or ids["[SEP]"] is None:
                raise ModelDirError(f"{source.get('path')}: the tokenizer has no [CLS] and [SEP] tokens")
            self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]
            self.pad_id = ids["[PAD]"] if ids["[PAD]"] is not None else getattr(model_config, "pad_id", 0)
        else:
            self.cls_id = self.sep_id = None
            self.pad_id = getattr(codec, "eos_id", None) or 0
        with torch.no_grad():
            was = model.training
            model.eval()
            probe = self.forward(torch.full((1, 2), self.pad_id if not self.segments else self.cls_id,
                                            dtype=torch.long, device=self.device))
            model.train(was)
        self.num_hidden = len(probe.hidden_states)
        self.dim = probe.last_hidden_state.shape[-1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_pooler(self) -> bool:
        return getattr(self.model, "pooler", None) is not None

    def pooler(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pretrained pooler ``tanh(W h[CLS] + b)`` on ``[B, T, D]`` (what HF's classifiers read)."""
        return self.model.pool(hidden)

    def prompt_position(self, prompt: nn.Module | None = None) -> int:
        """Where soft-prompt vectors go: first for a left-to-right model (its tokens then all see them)
        and for ``--prompt-position first``; after ``[CLS]`` for an encoder that reads segments under
        ``after-cls`` (so ``[CLS]`` keeps position 0, where its pooler and ``--pool cls`` read it)."""
        position = getattr(getattr(prompt, "config", None), "position", "after-cls")
        return 1 if self.segments and position == "after-cls" else 0

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, layers: Layers = "all",
                prompt: nn.Module | None = None) -> Features:
        """Hidden states of the text's positions. ``prompt`` (:mod:`dlnlp.transfer.prompt`) gives vectors
        inserted at :meth:`prompt_position` (attended to, given positions and segment 0 like tokens,
        and dropped from the returned states, so pooling and word positions see the text only) and/or
        prefix keys/values for every layer. Placed first in an encoder, the first prompt vector's state
        is returned in ``[CLS]``'s place (what a pooler or ``--pool cls`` reads: Lester et al.'s and
        PEFT's classifier) and ``[CLS]``'s own state is dropped with the other prompt vectors'."""
        if prompt is None:
            if self.segments:
                return self.model.features(input_ids, token_type_ids, attention_mask, layers=layers)
            # right padding: a left-to-right model's real tokens never see it
            return self.model.features(input_ids, layers=layers)
        if not hasattr(self.model, "token_embedding"):
            raise ModelDirError(f"{self.source.get('path')}: prompts need a transformer backbone (bert, gpt); a "
                                f"{self.config.get('kind')!r} model has no input embeddings to extend")
        embedding = self.model.token_embedding()
        vectors, prefix = prompt(input_ids, attention_mask, embedding)
        extra: dict[str, Any] = {"prefix": prefix} if prefix is not None else {}
        k = 0
        if vectors is not None:
            b, at, k = input_ids.shape[0], self.prompt_position(prompt), vectors.shape[1]
            tokens = embedding(input_ids)
            vectors = vectors.to(tokens.dtype).expand(b, -1, -1)
            extra["inputs_embeds"] = torch.cat([tokens[:, :at], vectors, tokens[:, at:]], dim=1)
            if token_type_ids is not None:
                token_type_ids = torch.cat([token_type_ids[:, :at], token_type_ids.new_zeros(b, k),
                                            token_type_ids[:, at:]], dim=1)
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask[:, :at], attention_mask.new_ones(b, k),
                                            attention_mask[:, at:]], dim=1)
        if self.segments:
            feats = self.model.features(input_ids, token_type_ids, attention_mask, layers=layers, **extra)
        else:
            feats = self.model.features(input_ids, layers=layers, **extra)
        if not k:
            return feats
        at = self.prompt_position(prompt)
        # first in an encoder: keep vector 1 as [CLS]'s stand-in and skip vectors 2..K and [CLS]
        keep = 1 if self.segments and at == 0 else at

        def text(h: torch.Tensor) -> torch.Tensor:
            return torch.cat([h[:, :keep], h[:, keep + k:]], dim=1)

        hidden = tuple(text(h) for h in feats.hidden_states) if feats.hidden_states is not None else None
        return Features(text(feats.last_hidden_state), hidden)

    # --- text -> ids ----------------------------------------------------------------------------
    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.tokenizer is not None and hasattr(self.tokenizer, "encode_batch"):
            return self.tokenizer.encode_batch(list(texts))
        return [self.codec.encode(t, where="text") if t else [] for t in texts]

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
               max_len: int | None = None) -> list[EncodedText]:
        """Each text (and its pair) as model input, cut to ``max_len`` tokens in all (the longer of the
        two texts loses tokens first, as HF's ``truncation=True``)."""
        limit = min(max_len or self.max_len, self.max_len - self.reserved)
        first = self._ids(texts)
        second = self._ids(pairs) if pairs is not None else None
        before, after = self.template or ([], [])
        if self.template is not None and pairs is not None:
            raise InputError("a cloze pattern places one text ({text}): it does not read text pairs")
        out = []
        for i, a in enumerate(first):
            b = second[i] if second is not None else None
            if self.segments:
                room = limit - (3 if b is not None else 2) - len(before) - len(after)
                a, b = _truncate_pair(a, b, room)  # the text is cut, never the pattern around it
                ids = [self.cls_id, *before, *a, *after, self.sep_id]
                types = [0] * len(ids)
                if b is not None:
                    ids += [*b, self.sep_id]
                    types += [1] * (len(b) + 1)
                out.append(EncodedText(ids, types))
            else:
                join = [] if b is None else ([self.codec.eos_id] if self.codec.eos_id is not None else [])
                room = limit - len(join) - len(before) - len(after)
                a, b = _truncate_pair(a, b, room)
                ids = [*before, *a, *after, *join, *(b or [])]
                if not ids:
                    ids = [self.pad_id]
                out.append(EncodedText(ids))
        return out

    def encode_words(self, sentences: Sequence[Sequence[str]], max_len: int | None = None) -> list[EncodedWords]:
        """Each pre-tokenized sentence as ids with its words' first sub-token positions (the label of a
        word sits there, Devlin et al. 2019, section 5.3); a word that encodes to nothing gets the
        unknown token, so every word keeps a position."""
        limit = min(max_len or self.max_len, self.max_len - self.reserved)
        flat = [w if i == 0 or self.segments else " " + w for s in sentences for i, w in enumerate(s)]
        pieces = self._ids(flat) if flat else []
        unk = getattr(self.tokenizer, "unk_id", None)
        out, at = [], 0
        budget = limit - (1 if self.segments else 0)  # room left for [SEP]
        for sentence in sentences:
            ids = [self.cls_id] if self.segments else []
            starts: list[int] = []
            for _ in sentence:
                piece = pieces[at] or ([unk] if unk is not None else [self.pad_id])
                at += 1
                if len(ids) >= budget:
                    continue  # past the limit: the word gets no position (HF truncates the same way)
                starts.append(len(ids))
                ids.extend(piece[: budget - len(ids)])
            if self.segments:
                ids.append(self.sep_id)
            out.append(EncodedWords(ids, starts, len(sentence)))
        return out

    # --- structure, for top-N training and layer-wise learning rates -----------------------------
    def depths(self) -> dict[str, int]:
        """Parameter-name prefixes -> depth: 0 for what sits below the first layer (embeddings), ``l``
        for layer ``l``, and the top layer's depth for what sits above it (a final LayerNorm, BERT's
        pooler). Prefixes are relative to this module (``model.blocks.3``)."""
        blocks_name = None
        for name, child in self.model.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == self.num_hidden - 1:
                blocks_name = name
                break
        if blocks_name is None:
            raise ModelDirError(f"{self.source.get('path')}: the layers of a {self.config.get('kind')!r} model are "
                                "not a stack this command can split (use --strategy features or full)")
        depths: dict[str, int] = {}
        seen_blocks = False
        top = self.num_hidden - 1
        for name, child in self.model.named_children():
            if name == blocks_name:
                for i in range(len(child)):
                    depths[f"model.{name}.{i}"] = i + 1
                seen_blocks = True
            elif any(True for _ in child.parameters()):
                depths[f"model.{name}"] = top if seen_blocks else 0
        for name, _ in self.model.named_parameters(recurse=False):
            depths[f"model.{name}"] = 0
        return depths


def _truncate_pair(a: list[int], b: list[int] | None, room: int) -> tuple[list[int], list[int] | None]:
    """Cut the longer of ``a`` and ``b`` one token at a time until both fit in ``room`` (HF's longest_first)."""
    room = max(room, 0)
    if b is None:
        return a[:room], None
    la, lb = len(a), len(b)
    while la + lb > room:
        if la >= lb:
            la -= 1
        else:
            lb -= 1
    return a[:la], b[:lb]


def _is_dlnlp_dir(directory: Path) -> bool:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "format_version" in config and "dlnlp_version" in config


def _hf_model_type(directory: Path) -> str | None:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("model_type") if isinstance(config, dict) else None


def _codec_files(codec: Any) -> dict[str, bytes]:
    """The files the codec writes beside a model (its tokenizer or vocabulary), kept in memory."""
    if codec is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        codec.save(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def load_backbone(path: str | Path, device: str | torch.device = "cpu", *, init: str = "pretrained",
                  keep_mlm_head: bool = False, dropout: float | None = None) -> Backbone:
    """The backbone in a dlnlp model directory or an HF checkpoint directory (converted on the fly).

    ``init="random"``: the same architecture with fresh weights (the family's own initialization),
    for a from-scratch baseline; the tokenizer is still the directory's. ``keep_mlm_head``: keep the
    pretrained masked-LM head (cloze patterns read it); other pretraining heads are dropped.
    ``dropout``: the backbone's dropout (and attention dropout, where it has one) while it trains, in
    place of the saved one; a model pretrained without dropout (as Geiping & Goldstein 2023 cram BERT)
    fine-tunes with it back on. The weights are the same either way.
    """
    directory = Path(path)
    if init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: no such backbone directory (a dlnlp model or an HF checkpoint)")
    if _is_dlnlp_dir(directory):
        loaded = load_model(directory, device)
        files = _codec_files(loaded.codec)
        source = {"path": str(directory.resolve()), "sha256": content_hash(directory), "format": "dlnlp"}
    else:
        model_type = _hf_model_type(directory)
        kind = HF_MODEL_TYPES.get(model_type or "")
        if kind is None:
            raise InputError(f"{directory}: neither a dlnlp model directory nor an HF checkpoint dlnlp imports "
                             f"(model_type {model_type!r}; imported: {', '.join(HF_MODEL_TYPES)})")
        converter = get_family(kind).resolve("hf_converter")
        with tempfile.TemporaryDirectory() as tmp:
            converter(directory, Path(tmp) / "model")
            loaded = load_model(Path(tmp) / "model", device)
            files = _codec_files(loaded.codec)
        source = {"path": str(directory.resolve()), "sha256": content_hash(directory), "format": "hf"}
    model = loaded.model
    if init == "random":
        family = loaded.family
        model = family.build(family.config_class.from_dict(loaded.config["model"])).to(device)
        source = {**source, "init": "random"}
    if dropout is not None:
        model = _with_dropout(model, loaded, dropout, device)
    return Backbone(model, loaded.codec, loaded.config, source, files, keep_mlm_head=keep_mlm_head)


DROPOUT_FIELDS = ("dropout", "attn_dropout")


def _with_dropout(model: nn.Module, loaded: Any, dropout: float, device: str | torch.device) -> nn.Module:
    """``model`` rebuilt with every dropout field of its config set to ``dropout``, its weights kept."""
    settings = loaded.config["model"]
    fields = [name for name in DROPOUT_FIELDS if name in settings]
    if not fields:
        raise OptionError(f"--backbone-dropout: a {loaded.config.get('kind')!r} backbone has no dropout setting")
    family = loaded.family
    rebuilt = family.build(family.config_class.from_dict({**settings, **dict.fromkeys(fields, dropout)}))
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.to(device)


def rebuild_backbone(config: dict[str, Any], codec: Any, source: dict[str, Any],
                     codec_files: dict[str, bytes], *, keep_mlm_head: bool = False) -> Backbone:
    """A backbone of the architecture in ``config`` (a saved backbone config.json) with fresh weights,
    to load saved weights into."""
    family = get_family(config["kind"])
    model = family.build(family.config_class.from_dict(config["model"]))
    return Backbone(model, codec, config, source, codec_files, keep_mlm_head=keep_mlm_head)
