"""BERT: a bidirectional transformer encoder pretrained as a masked LM (Devlin et al., 2019), nanoGPT-style.

    h_0 = Dropout(LN(E_tok[x_t] + E_pos[t] + E_type[s_t]))    token + learned position + segment
    h_l = Block_l(h_{l-1})   for l = 1..L                     post-LN blocks, bidirectional attention
    pooled = tanh(W_p h_L[CLS] + b_p)                         the pooler (section 3, "[CLS]")
    MLM:  p(x_t | x_masked) = softmax(LN(GELU(W_t h_L,t + b_t)) E_tok^T + b)   decoder tied to E_tok
    NSP:  p(IsNext | A, B) = softmax(W_nsp pooled + b_nsp)    two classes: 0 = IsNext, 1 = NotNext

The blocks are :class:`dlnlp.kernels.transformer.TransformerBlock` with ``norm_first=False`` (the
original post-LayerNorm layer: ``x = LN(x + Dropout(Attention(x)))``, ``x = LN(x + Dropout(MLP(x)))``)
and a key padding mask; the attention is the shared SDPA one. BERT's own details: exact (erf) GELU,
LayerNorm epsilon 1e-12, dropout 0.1 on embeddings, attention probabilities and residual branches,
weights drawn from N(0, 0.02) with zero biases (``initializer_range``), the padding row of the token
embedding zero and never updated through the embedding (HF's ``padding_idx``).

Pretraining minimises the MLM cross-entropy over the selected positions (labels ``-100`` elsewhere)
plus the next-sentence cross-entropy. With ``mlm_labels`` given, the MLM head runs on the selected
positions only (about 15% of the tokens), as NVIDIA's and other fast BERT pretraining code does: the
decoder over the whole vocabulary is the largest matrix product of a small BERT, and the loss is the
same. :mod:`dlnlp.models.bert_hf` maps HF ``BertModel`` / ``BertForMaskedLM`` / ``BertForPreTraining``
checkpoints onto this module; the names in comments on the layers are HF's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import OptionError
from dlnlp.kernels.transformer import ACTIVATIONS, TransformerBlock, activation_fn, dropout_layer, tie_weights
from dlnlp.models.features import Features, Layers, layer_indices
from dlnlp.models.registry import Family, register
from dlnlp.models.weights import TiedWeights, load_torch_model, saved_text_codec
from dlnlp.settings import DictConfig
from dlnlp.tokenization.train import WORDPIECE_SPECIALS

KIND = "bert"
FORMAT_VERSION = 1
IGNORE_INDEX = -100  # unselected positions of mlm_labels (PyTorch's and HF's convention)
SPECIAL_TOKENS = WORDPIECE_SPECIALS


@dataclass
class BertConfig(DictConfig):
    """Hyperparameters; saved under ``"model"`` in the model directory's config.json.

    The defaults are a small BERT for CPU pretraining (BERT-base is dim 768, 12 layers, 12 heads,
    intermediate 3072). ``pooler`` is false for HF ``BertForMaskedLM`` checkpoints, which have none.
    """

    vocab_size: int
    dim: int = 256
    n_layer: int = 4
    n_head: int = 4
    intermediate: int = 1024
    max_len: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attn_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_id: int = 0
    mlm_head: bool = True
    nsp_head: bool = True
    pooler: bool = True



    def validate(self) -> BertConfig:
        """Raise ValueError (an OptionError naming the ``bert pretrain`` option) for settings out of range."""
        for option, value in (("--layers", self.n_layer), ("--heads", self.n_head), ("--dim", self.dim),
                              ("--intermediate", self.intermediate), ("--max-len", self.max_len),
                              ("vocab_size", self.vocab_size), ("type_vocab_size", self.type_vocab_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"{option} must be >= 1, got {value}")
        if self.dim % self.n_head:
            raise OptionError(f"--dim ({self.dim}) must be divisible by --heads ({self.n_head})")
        for option, p in (("--dropout", self.dropout), ("attn_dropout", self.attn_dropout)):
            if not 0.0 <= p < 1.0:
                raise OptionError(f"{option} must be in [0, 1), got {p}")
        if not self.layer_norm_eps > 0:
            raise OptionError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if self.activation not in ACTIVATIONS:
            raise OptionError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise OptionError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")
        if self.nsp_head and not self.pooler:
            raise OptionError("the next-sentence head reads the pooled output: it needs the pooler")
        return self


class BertOutput(NamedTuple):
    """What :meth:`Bert.forward` returns; fields it did not compute are None.

    ``mlm_logits`` is ``[B, T, V]`` without ``mlm_labels``; with them it holds the selected positions
    only, ``[N, V]`` in row-major order (the targets are ``mlm_labels[mlm_labels != -100]``).
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    mlm_logits: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None


class Bert(TiedWeights, nn.Module):
    """The encoder with its optional heads: ``model(ids, types, mask, mlm_labels, nsp_labels)`` ->
    :class:`BertOutput`; every layer's hidden states with :meth:`features`."""

    # How transfer code (dlnlp.transfer) feeds text: ``[CLS] A [SEP] (B [SEP])`` with segment ids and
    # an attention mask, the way the model was pretrained.
    reads_segments = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c = config.validate()
        self.config = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim, padding_idx=c.pad_id)  # word_embeddings
        self.pos_emb = nn.Embedding(c.max_len, c.dim)  # position_embeddings ("absolute")
        self.type_emb = nn.Embedding(c.type_vocab_size, c.dim)  # token_type_embeddings (segments A/B)
        self.emb_ln = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)
        self.drop = dropout_layer(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.n_head, mlp_dim=c.intermediate, dropout=c.dropout, attn_dropout=c.attn_dropout,
                             norm_first=False, activation=c.activation, layer_norm_eps=c.layer_norm_eps)
            for _ in range(c.n_layer)
        )
        self.pooler = nn.Linear(c.dim, c.dim) if c.pooler else None  # pooler.dense, then tanh
        if c.mlm_head:
            self.mlm_dense = nn.Linear(c.dim, c.dim)  # cls.predictions.transform.dense
            self.mlm_act = activation_fn(c.activation)
            self.mlm_ln = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)  # cls.predictions.transform.LayerNorm
            self.mlm_decoder = nn.Linear(c.dim, c.vocab_size)  # weight tied to tok_emb, bias = cls.predictions.bias
        self.nsp = nn.Linear(c.dim, 2) if c.nsp_head else None  # cls.seq_relationship
        self.apply(self._init_weights)
        if c.mlm_head:
            tie_weights(self.mlm_decoder, self.tok_emb)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initializer_range 0.02 for every matrix, zero biases; LayerNorm stays at (1, 0)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def token_embedding(self) -> nn.Embedding:
        """The input token embedding (HF's ``get_input_embeddings``): what soft prompts live beside."""
        return self.tok_emb

    @property
    def has_mlm_head(self) -> bool:
        return bool(self.config.mlm_head)

    # --- the encoder ---------------------------------------------------------------------------
    def features(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        layers: Layers = "all",
        *,
        inputs_embeds: torch.Tensor | None = None,
        prefix: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Features:
        """``input_ids`` ``[B, T]`` -> hidden states ``[B, T, dim]`` (:class:`~dlnlp.models.features.Features`).

        As HF's ``output_hidden_states``: ``hidden_states[0]`` is the embedding output (after its
        LayerNorm and dropout), ``hidden_states[l]`` the output of block ``l``; the last one is
        ``last_hidden_state``. ``attention_mask`` ``[B, T]`` is 1 for real tokens and 0 for padding
        (HF's convention): padding is never attended to, so the real tokens' states do not depend on it.
        ``token_type_ids`` default to segment 0.

        ``inputs_embeds`` ``[B, T, dim]`` replaces ``tok_emb(input_ids)`` (soft prompts: vectors that are
        no token; positions and segments are added to them as to tokens). ``prefix``: one
        ``(keys, values)`` pair per layer, each ``[B or 1, heads, P, dim / heads]``, attended to by every
        position before the sequence's own keys (prefix tuning; :mod:`dlnlp.kernels.attention`).
        """
        embedded = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds
        b, t = embedded.shape[:2]
        if t > self.config.max_len:
            raise ValueError(f"sequence of {t} tokens exceeds the model's maximum length {self.config.max_len}")
        positions = torch.arange(t, device=embedded.device)
        x = embedded + self.pos_emb(positions)
        x = x + (self.type_emb(token_type_ids) if token_type_ids is not None else self.type_emb.weight[0])
        x = self.drop(self.emb_ln(x))
        key_padding_mask = None
        # a mask of all ones changes nothing: leave it out so SDPA takes its unmasked fast path
        if attention_mask is not None and not bool(attention_mask.all()):
            key_padding_mask = attention_mask.bool()
        keep = layer_indices(layers, self.config.n_layer + 1)
        hidden = [x] if keep else None  # collected only when asked (pretraining collects nothing)
        for i, block in enumerate(self.blocks):
            x = block(x, key_padding_mask=key_padding_mask, prefix=prefix[i] if prefix is not None else None)
            if hidden is not None:
                hidden.append(x)
        if hidden is None:
            return Features(x)
        return Features(x, tuple(hidden[i] for i in keep))

    def encode(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden state ``[B, T, dim]`` (HF's ``last_hidden_state``)."""
        return self.features(input_ids, token_type_ids, attention_mask, layers=None).last_hidden_state

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooler on hidden states ``[B, T, dim]``: ``tanh(W h[:, 0] + b)`` -> ``[B, dim]``."""
        if self.pooler is None:
            raise ValueError("this BERT has no pooler (HF BertForMaskedLM checkpoints have none)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def pooled(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled ``[CLS]`` output ``[B, dim]`` (HF's ``pooler_output``)."""
        return self.pool(self.encode(input_ids, token_type_ids, attention_mask))

    # --- the heads -----------------------------------------------------------------------------
    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The MLM head on hidden states ``[..., dim]`` -> logits ``[..., vocab_size]``."""
        if not self.config.mlm_head:
            raise ValueError("this BERT has no masked-LM head")
        return self.mlm_decoder(self.mlm_ln(self.mlm_act(self.mlm_dense(hidden))))

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        nsp_labels: torch.Tensor | None = None,
    ) -> BertOutput:
        """The heads' logits and losses (see :class:`BertOutput`).

        ``mlm_labels`` ``[B, T]``: the original id at each selected position, -100 elsewhere;
        ``nsp_labels`` ``[B]``: 0 when segment B follows A, 1 when it is random (HF's convention).
        ``loss`` is the mean MLM cross-entropy over the selected positions plus the NSP
        cross-entropy when ``nsp_labels`` are given. A batch with no selected position has an MLM
        loss of 0 (not NaN), so one such batch does not spoil a run.
        """
        c = self.config
        h = self.encode(input_ids, token_type_ids, attention_mask)
        mlm_logits = mlm_loss = nsp_logits = nsp_loss = None
        if mlm_labels is not None:
            selected = mlm_labels != IGNORE_INDEX
            # the head over the selected positions only: same loss, ~1/7 of the decoder's work
            mlm_logits = self.mlm_logits(h[selected])
            targets = mlm_labels[selected]
            if targets.numel():
                mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
            else:
                mlm_loss = mlm_logits.sum() * 0.0
        elif c.mlm_head:
            mlm_logits = self.mlm_logits(h)
        if c.nsp_head:
            nsp_logits = self.nsp(self.pool(h))
            if nsp_labels is not None:
                nsp_loss = F.cross_entropy(nsp_logits.float(), nsp_labels.view(-1))
        elif nsp_labels is not None:
            raise ValueError("nsp_labels given but this BERT has no next-sentence head")
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        loss = sum(losses[1:], losses[0]) if losses else None
        return BertOutput(loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits)

    def drop_pretraining_heads(self) -> None:
        """Remove the MLM and NSP heads (a fine-tuned encoder never computes them; the pooler stays)."""
        c = self.config
        if c.mlm_head:
            del self.mlm_dense, self.mlm_act, self.mlm_ln, self.mlm_decoder
        self.nsp = None
        c.mlm_head = c.nsp_head = False

    # --- saving --------------------------------------------------------------------------------
    def tied_weights(self) -> tuple[str, ...]:
        """The output matrix is the token embedding's: saved once, as the embedding."""
        return ("mlm_decoder.weight",) if self.config.mlm_head else ()



def special_token_ids(tokenizer: Any) -> dict[str, int | None]:
    """``{"[PAD]": id, "[UNK]": ..., "[CLS]": ..., "[SEP]": ..., "[MASK]": ...}`` of a WordPiece tokenizer
    (None for a token it lacks)."""
    return {name: tokenizer.token_to_id(name) for name in SPECIAL_TOKENS}


def bert_config_dict(config: BertConfig, **extra: Any) -> dict[str, Any]:
    """The model directory's config.json for a BERT (kind, format_version, model hyperparameters)."""
    from dlnlp.io.modeldir import make_config

    return make_config(KIND, FORMAT_VERSION, model=config.to_dict(), **extra)


def save_bert(model: Bert, directory: str | Path, *, force: bool = False, files: dict[str, Any] | None = None,
              **extra: Any) -> Path:
    """Write ``model`` as a model directory (config.json with ``extra`` fields, model.safetensors, ``files``)."""
    from dlnlp.io.modeldir import write_model_dir

    return write_model_dir(directory, bert_config_dict(model.config, **extra), model.state_dict_for_save(),
                           files, force=force)


def load_bert(directory: str | Path, device: str | torch.device = "cpu") -> tuple[Bert, dict[str, Any]]:
    """Read a BERT model directory: the model in eval mode on ``device`` and its config.json."""
    return load_torch_model(directory, KIND, (FORMAT_VERSION,), lambda d: Bert(BertConfig.from_dict(d)), device)


register(Family(KIND, load_bert, (FORMAT_VERSION,), BertConfig, Bert, save_bert, saved_text_codec,
                hf_converter="dlnlp.models.bert_hf:import_hf_bert",
                description="bidirectional transformer encoder (masked LM, sentence embeddings)"))
