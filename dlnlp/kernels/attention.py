"""Multi-head attention over ``torch.nn.functional.scaled_dot_product_attention``, with a KV cache.

Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V  (Vaswani et al., 2017, eq. 1), computed per
head and concatenated. SDPA picks the flash / memory-efficient kernels on CUDA and a fused kernel on
CPU; this module only decides which mask to hand it:

- self-attention, causal, no cache, no padding: ``is_causal=True`` (no mask tensor at all);
- one new query against a cache, no padding: no mask (the query may see every cached key);
- otherwise an explicit boolean mask (True = may attend), built by :func:`build_attention_mask`.

Masks are boolean "keep" masks throughout: ``key_padding_mask[b, s]`` is True for a real token and
False for padding (the convention of HF ``attention_mask``, the opposite of ``nn.MultiheadAttention``).

The same module does bidirectional (BERT) and causal (GPT) self-attention, and cross-attention
(``memory=`` gives the keys and values, as in an encoder-decoder).

Prefix key/values (prefix tuning, Li & Liang 2021; P-tuning v2, Liu et al. 2022): ``prefix=(K_p, V_p)``,
each ``[B or 1, H, P, d_head]``, are keys and values every query attends to before the sequence's own:
Attention(Q, [K_p; K], [V_p; V]). They have no position and are never masked (``key_padding_mask``
covers the sequence's own keys only). With a KV cache they are written into it at its first call and
held there like any cached position, so decoding steps never copy them again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """The key/value cache of a stack of attention layers for incremental decoding.

    ``cache.layers[i]`` is passed to layer ``i``; ``len(cache)`` is the number of cached positions.
    All layers' keys and values live in one preallocated buffer ``[2 * layers, batch, heads,
    capacity, d_head]``: appending writes in place (no ``torch.cat`` per step, so a decoding step
    does not copy the history), and beam search reorders every layer with a single ``index_select``
    into a spare buffer of the same shape. ``capacity`` preallocates that many positions (the prompt
    plus the tokens to generate); the buffer doubles when full.
    """

    def __init__(self, num_layers: int, capacity: int = 0) -> None:
        self.capacity = capacity
        self.storage: torch.Tensor | None = None
        self._spare: torch.Tensor | None = None
        self.layers = [LayerKV(self, i) for i in range(num_layers)]

    def __len__(self) -> int:
        return self.layers[0].length if self.layers else 0

    def _ensure(self, like: torch.Tensor, end: int) -> torch.Tensor:
        """The buffer, grown to hold ``end`` positions of tensors shaped like ``like`` ``[B, H, T, D]``."""
        b, h, _, d = like.shape
        if self.storage is not None and self.storage.shape[1] != b:
            raise ValueError(f"cache holds {self.storage.shape[1]} rows, got {b} (reorder it first)")
        if self.storage is None or end > self.storage.shape[3]:
            old = self.storage
            size = max(self.capacity, end, 2 * (old.shape[3] if old is not None else 0))
            self.storage = like.new_empty(2 * len(self.layers), b, h, size, d)
            if old is not None:
                filled = max(layer.length for layer in self.layers)
                self.storage[:, :, :, :filled] = old[:, :, :, :filled]
            self._spare = None
        return self.storage

    def reorder(self, index: torch.Tensor, keep_prefix: int = 0) -> None:
        """Keep rows ``index`` in every layer (beam search: each surviving beam takes its parent's history).

        ``keep_prefix``: positions before it are already equal in each row and its source row (the
        prompt shared by the beams of one prompt), so only the later positions are copied; the cost
        of a beam step then follows the generated length, not the prompt length.
        """
        if self.storage is None:
            return
        filled = max(layer.length for layer in self.layers)
        if index.shape[0] == self.storage.shape[1]:
            if keep_prefix >= filled:
                return
            if keep_prefix > 0 or filled * 2 <= self.storage.shape[3]:
                part = slice(keep_prefix, filled)
                self.storage[:, :, :, part] = self.storage[:, :, :, part].index_select(1, index)
                return
            if self._spare is None:
                self._spare = torch.empty_like(self.storage)
            torch.index_select(self.storage, 1, index, out=self._spare)
            self.storage, self._spare = self._spare, self.storage
            return
        # A new batch size: gather the filled positions into a new buffer.
        storage = self.storage.new_empty(self.storage.shape[0], index.shape[0], *self.storage.shape[2:])
        storage[:, :, :, :filled] = self.storage[:, :, :, :filled].index_select(1, index)
        self.storage, self._spare = storage, None


class LayerKV:
    """One layer's view of a :class:`KVCache` (a standalone single-layer cache when made without one)."""

    def __init__(self, cache: KVCache | None = None, index: int = 0) -> None:
        if cache is None:
            cache = KVCache(0)
            cache.layers = [self]
        self.cache = cache
        self.index = index
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor, capacity: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``/``v`` ``[B, H, T, D]`` after the cached positions; return all keys and values so far."""
        end = self.length + k.shape[2]
        self.cache.capacity = max(self.cache.capacity, capacity)
        storage = self.cache._ensure(k, end)
        keys, values = storage[2 * self.index], storage[2 * self.index + 1]
        keys[:, :, self.length:end] = k
        values[:, :, self.length:end] = v
        self.length = end
        return keys[:, :, :end], values[:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Reorder the rows of the whole cache this layer belongs to."""
        self.cache.reorder(index)


def build_attention_mask(
    query_length: int,
    key_length: int,
    *,
    causal: bool,
    key_padding_mask: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """A boolean keep-mask ``[B or 1, 1, T, S]`` for SDPA, or None when every query sees every key.

    With a cache the ``T`` queries are the last ``T`` of the ``S`` positions, so the causal mask is
    aligned to the bottom-right: query ``i`` sees keys ``0 .. S - T + i``.
    """
    mask = None
    offset = key_length - query_length
    if causal:
        q_pos = torch.arange(query_length, device=device).unsqueeze(1) + offset
        k_pos = torch.arange(key_length, device=device).unsqueeze(0)
        mask = (k_pos <= q_pos)[None, None]
    if key_padding_mask is not None:
        keep = key_padding_mask.to(torch.bool)[:, None, None, :]
        mask = keep if mask is None else mask & keep
        # A row with no key left (a padding query before any real token, or all keys padding)
        # would make SDPA return NaN, which then leaks into later layers through the zero
        # weights of masked keys; such rows attend to every key instead (their output is unused).
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask


# Up to this length a causal self-attention on CPU uses an explicit (cached) mask, see forward().
CPU_MASKED_CAUSAL_MAX = 256
_CAUSAL_MASKS: dict[tuple[int, str], torch.Tensor] = {}


def _causal_mask(length: int, device: torch.device) -> torch.Tensor:
    key = (length, str(device))
    mask = _CAUSAL_MASKS.get(key)
    if mask is None:
        mask = _CAUSAL_MASKS[key] = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention with fused QKV projection (self-attention) or separate Q and KV (cross).

    ``qkv``/``proj`` are ``nn.Linear`` so weights map one-to-one onto GPT-2's ``c_attn``/``c_proj``
    (transposed: HF stores them as ``Conv1D``).
    """

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 cross_attention: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.cross_attention = cross_attention
        if cross_attention:
            self.q = nn.Linear(dim, dim, bias=bias)
            self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
        cache_capacity: int = 0,
        memory: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` ``[B, T, dim]``; returns ``[B, T, dim]``.

        ``key_padding_mask`` ``[B, S]`` covers all keys (cached ones included). ``memory`` ``[B, S, dim]``
        supplies keys/values for cross-attention. ``attn_mask`` (bool keep or additive float,
        broadcastable to ``[B, H, T, S]``) is used as given, overriding ``causal``/``key_padding_mask``
        (its ``S`` then counts the prefix). ``prefix``: see the module docstring.
        """
        b, t, _ = x.shape
        if self.cross_attention:
            if memory is None:
                raise ValueError("cross-attention needs memory")
            q = self._heads(self.q(x))
            k, v = (self._heads(z) for z in self.kv(memory).split(self.dim, dim=2))
            causal = False
        else:
            # One view + permute for q, k and v together: [B, T, 3, H, D] -> 3 x [B, H, T, D].
            q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            prefix_length = 0
            if prefix is not None:
                pk, pv = (p.to(k.dtype).expand(b, -1, -1, -1) for p in prefix)
                prefix_length = pk.shape[2]
                if cache is None:
                    k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
                elif cache.length == 0:
                    cache.append(pk, pv, cache_capacity + prefix_length)  # held from now on
            if cache is not None:
                k, v = cache.append(k, v, cache_capacity + prefix_length)
            if prefix_length and key_padding_mask is not None:
                keep = key_padding_mask.new_ones(key_padding_mask.shape[0], prefix_length)
                key_padding_mask = torch.cat([keep, key_padding_mask], dim=1)
        s = k.shape[2]
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is None and key_padding_mask is None and causal and s == t and 1 < t <= CPU_MASKED_CAUSAL_MAX \
                and x.device.type == "cpu":
            # On CPU the fused causal kernel (is_causal=True) is slower than the masked one for the
            # short blocks trained on CPUs: about 20% of a training step at T=64 (bench/gpt.py).
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(t, x.device), dropout_p=dropout_p)
        elif attn_mask is None and key_padding_mask is None and (not causal or s == t or t == 1):
            # Fast paths: no mask tensor. A single query at the end of a causal sequence sees all keys.
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal and t > 1)
        else:
            if attn_mask is None:
                attn_mask = build_attention_mask(t, s, causal=causal, key_padding_mask=key_padding_mask,
                                                 device=x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.proj(y.transpose(1, 2).reshape(b, t, self.dim))
