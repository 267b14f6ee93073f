"""GPT: a decoder-only transformer language model (Radford et al., 2018/2019), nanoGPT-style.

    h_0 = W_e[x_t] + P[t]                       token embedding + position encoding
    h_l = Block_l(h_{l-1})   for l = 1..L       causal self-attention + MLP, pre-LayerNorm
    p(x_{t+1} | x_{<=t}) = softmax(LN_f(h_L) W_e^T)   output layer tied to the token embedding

Trained to minimise the next-token cross-entropy. The layer names follow GPT-2 (``wte``, ``wpe``,
``h.N.ln_1`` ...) so that :mod:`dlnlp.models.gpt_hf` maps a HF GPT-2 checkpoint onto it one tensor at a
time. The blocks, attention, KV cache and position encodings are the shared ones in
:mod:`dlnlp.kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.kernels.attention import KVCache
from dlnlp.kernels.position import make_position_encoding
from dlnlp.kernels.transformer import TransformerBlock, dropout_layer, tie_weights
from dlnlp.models.features import Features, Layers, layer_indices
from dlnlp.models.registry import Family, register
from dlnlp.models.weights import TiedWeights, load_torch_model, saved_text_codec
from dlnlp.settings import DictConfig

KIND = "gpt"
FORMAT_VERSION = 1


@dataclass
class GPTConfig(DictConfig):
    """Hyperparameters; saved under ``"model"`` in the model directory's config.json."""

    vocab_size: int
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    position: str = "learned"  # or "sinusoidal"
    # Exact erf GELU as in nanoGPT (about 2.5x cheaper than the tanh form on CPU); checkpoints
    # imported from HF GPT-2 use "gelu_tanh" (its "gelu_new").
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    mlp_dim: int | None = None  # 4 * n_embd when None




class GPT(TiedWeights, nn.Module):
    """The language model: ``logits, loss = model(idx, targets)``; every layer's hidden states with
    ``model.features(idx)``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = make_position_encoding(c.position, c.block_size, c.n_embd)
        self.drop = dropout_layer(c.dropout)
        self.h = nn.ModuleList(
            TransformerBlock(c.n_embd, c.n_head, mlp_dim=c.mlp_dim, dropout=c.dropout, bias=c.bias,
                             norm_first=True, activation=c.activation, layer_norm_eps=c.layer_norm_eps)
            for _ in range(c.n_layer)
        )
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 L), so the residual stream's variance does
        # not grow with depth (two residual additions per layer).
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))
        if c.tie_weights:
            tie_weights(self.lm_head, self.wte)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded by default, as nanoGPT reports it."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and isinstance(self.wpe, nn.Embedding):
            n -= self.wpe.weight.numel()
        return n

    def token_embedding(self) -> nn.Embedding:
        """The input token embedding (HF's ``get_input_embeddings``): what soft prompts live beside."""
        return self.wte

    def new_cache(self, capacity: int = 0) -> KVCache:
        """An empty KV cache for incremental decoding (``capacity`` positions preallocated)."""
        return KVCache(self.config.n_layer, capacity=capacity)

    def features(
        self,
        idx: torch.Tensor,
        *,
        cache: KVCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        layers: Layers = "all",
        inputs_embeds: torch.Tensor | None = None,
        prefix: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Features:
        """``idx`` ``[B, T]`` -> hidden states ``[B, T, n_embd]`` (:class:`~dlnlp.models.features.Features`).

        As HF GPT-2's ``output_hidden_states``: ``hidden_states[0]`` is ``h_0`` (embedding + position,
        after dropout), ``hidden_states[l]`` the output of block ``l``, and the last one, like
        ``last_hidden_state``, is ``LN_f(h_L)``, the input of the LM head (the raw ``h_L`` is not
        kept). ``cache``, ``key_padding_mask`` and ``position_ids`` as in :meth:`forward`.

        ``inputs_embeds`` ``[B, T, n_embd]`` replaces ``wte(idx)`` (soft prompts; positions are added as to
        tokens). ``prefix``: one ``(keys, values)`` pair per layer, each ``[B or 1, heads, P, head_dim]``,
        seen by every position and positionless (prefix tuning); a cache holds them after its first
        call, and the positions of tokens do not count them.
        """
        embedded = self.wte(idx) if inputs_embeds is None else inputs_embeds
        b, t = embedded.shape[:2]
        past = len(cache) if cache is not None else 0
        if prefix is not None and past:
            past -= prefix[0][0].shape[2]  # the cache holds the prefix before the tokens
        if position_ids is None:
            if past + t > self.config.block_size:
                raise ValueError(f"sequence of {past + t} tokens exceeds the block size {self.config.block_size}")
            position_ids = torch.arange(past, past + t, device=embedded.device)
        keep = layer_indices(layers, self.config.n_layer + 1)
        x = self.drop(embedded + self.wpe(position_ids))
        # collected only when asked, so the LM's own path (layers=None) does no extra work per step
        hidden = [x] if keep else None
        capacity = cache.capacity if cache is not None else 0
        for i, block in enumerate(self.h):
            x = block(x, causal=True, key_padding_mask=key_padding_mask,
                      cache=cache.layers[i] if cache is not None else None, cache_capacity=capacity,
                      prefix=prefix[i] if prefix is not None else None)
            if hidden is not None and i < len(self.h) - 1:
                hidden.append(x)
        x = self.ln_f(x)
        if hidden is None:
            return Features(x)
        hidden.append(x)
        return Features(x, tuple(hidden[i] for i in keep))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        key_padding_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        last_only: bool = False,
        inputs_embeds: torch.Tensor | None = None,
        prefix: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` ``[B, T]`` token ids -> logits ``[B, T, V]`` (``[B, 1, V]`` with ``last_only``) and the
        mean cross-entropy against ``targets`` (ignore index -100) when given.

        With ``cache`` the ``T`` tokens follow the cached positions; ``key_padding_mask`` ``[B, past + T]``
        (True = real token) and ``position_ids`` ``[B, T]`` serve left-padded batches of prompts.
        The logits are ``lm_head`` of :meth:`features`' ``last_hidden_state``; ``inputs_embeds`` and
        ``prefix`` as there (``idx`` may then be None).
        """
        x = self.features(idx, cache=cache, key_padding_mask=key_padding_mask, position_ids=position_ids,
                          layers=None, inputs_embeds=inputs_embeds, prefix=prefix).last_hidden_state
        if last_only and targets is None:
            x = x[:, -1:]  # LayerNorm is per position: the same values as normalizing the last one alone
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def tied_weights(self) -> tuple[str, ...]:
        """The output matrix is the token embedding's: saved once, as the embedding."""
        return ("lm_head.weight",) if self.config.tie_weights else ()



def gpt_config_dict(config: GPTConfig, **extra: Any) -> dict[str, Any]:
    """The model directory's config.json for a GPT (kind, format_version, model hyperparameters)."""
    from dlnlp.io.modeldir import make_config

    return make_config(KIND, FORMAT_VERSION, model=config.to_dict(), **extra)


def save_gpt(model: GPT, directory: str | Path, *, force: bool = False, **extra: Any) -> Path:
    """Write ``model`` as a model directory (config.json with ``extra`` fields, model.safetensors)."""
    from dlnlp.io.modeldir import write_model_dir

    return write_model_dir(directory, gpt_config_dict(model.config, **extra), model.state_dict_for_save(),
                           force=force)


def load_gpt(directory: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """Read a GPT model directory: the model in eval mode on ``device`` and its config.json."""
    return load_torch_model(directory, KIND, (FORMAT_VERSION,), lambda d: GPT(GPTConfig.from_dict(d)), device)


@torch.no_grad()
def evaluate_windows(model: GPT, ids: torch.Tensor, block_size: int | None = None, batch_size: int = 64,
                     device: str | torch.device = "cpu") -> tuple[float, int]:
    """Mean next-token cross-entropy over a whole token stream, in non-overlapping windows.

    The stream is cut into windows of ``block_size + 1`` tokens overlapping by one (each window
    predicts its last ``block_size`` tokens from the ones before, within the window), so every token
    after the first is predicted exactly once; the last window may be shorter. Returns
    (mean loss in nats, number of predicted tokens).
    """
    model.eval()
    block = block_size or model.config.block_size
    ids = ids.long()
    n = ids.numel()
    if n < 2:
        raise ValueError("need at least two tokens to evaluate")
    starts = list(range(0, n - 1, block))
    total, count = 0.0, 0
    full = [s for s in starts if s + block + 1 <= n]
    for i in range(0, len(full), batch_size):
        chunk = full[i:i + batch_size]
        windows = torch.stack([ids[s:s + block + 1] for s in chunk]).to(device)
        logits, _ = model(windows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), windows[:, 1:].reshape(-1),
                               reduction="sum")
        total += loss.item()
        count += windows[:, 1:].numel()
    tail = [s for s in starts if s + block + 1 > n]
    for s in tail:
        window = ids[s:].unsqueeze(0).to(device)
        logits, _ = model(window[:, :-1])
        total += F.cross_entropy(logits[0].float(), window[0, 1:], reduction="sum").item()
        count += window.shape[1] - 1
    return total / count, count


register(Family(KIND, load_gpt, (FORMAT_VERSION,), GPTConfig, GPT, save_gpt, saved_text_codec,
                hf_converter="dlnlp.models.gpt_hf:import_hf_gpt2",
                next_token="dlnlp.decoding.interface:GPTNextToken",
                description="decoder-only transformer LM"))
