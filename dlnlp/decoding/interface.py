"""The next-token interface every decoder in :mod:`dlnlp.decoding` works through.

A language model takes part in decoding by implementing three methods (:class:`NextTokenModel`)::

    logits, state = lm.start(prompts, max_new_tokens)   # prompts: list of token-id lists
    logits, state = lm.step(state, tokens)               # tokens: [rows] long tensor, one per row
    state = lm.reorder(state, index)                     # keep / repeat rows (beam search, finished rows)

``logits`` are ``[rows, vocab]`` scores of the next token (log-softmax is taken by the decoder).
The state is opaque to the decoders: a KV cache for a transformer, hidden states for an RNN.

Adapters here: :class:`GPTNextToken` (KV cache, left-padded batches), :class:`RecurrentNextToken`
(any model mapping ``(ids [B, T], hidden) -> (logits [B, T, V], hidden)``, e.g. the RNN language
models), and :class:`FullContextNextToken` (any function of the whole prefix; no cache, used as the
reference in tests and for models that have no incremental form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class NextTokenModel(Protocol):
    """A language model seen by the decoders (see the module docstring)."""

    vocab_size: int
    device: torch.device

    def start(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, Any]: ...

    def step(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]: ...

    def reorder(self, state: Any, index: torch.Tensor) -> Any: ...


def _check_prompts(prompts: Sequence[Sequence[int]]) -> None:
    if not prompts:
        raise ValueError("no prompts")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {i} is empty (start it with a beginning-of-sequence token)")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, L]`` ids right-aligned (left padding) and the keep-mask, None when no row is padded."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.bool)
    for i, prompt in enumerate(prompts):
        ids[i, length - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[i, length - len(prompt):] = True
    padded = not bool(mask.all())
    return ids.to(device), (mask.to(device) if padded else None)


@dataclass
class GPTState:
    cache: Any
    ids: torch.Tensor  # [rows, T] every token so far (left-padded), for re-encoding past the block size
    mask: torch.Tensor | None  # [rows, T] keep-mask, None when no row is padded
    positions: torch.Tensor  # [rows] position id of the next token
    prompt_length: int = 0  # columns of ``ids`` that are the (left-padded) prompts


class GPTNextToken:
    """:class:`NextTokenModel` over :class:`dlnlp.models.gpt.GPT` with its KV cache.

    Prompts of different lengths are left-padded, with a key-padding mask and per-row position ids,
    so a batch decodes in lock step. When a sequence would pass the block size, the model is run
    again on the last ``block_size`` tokens at each step (a sliding window, as nanoGPT's generate
    does): absolute learned positions do not allow shifting a cache.

    ``soft_prompt`` ``[K, D]``: vectors read before every prompt (a soft prompt, :mod:`dlnlp.transfer.lm_prompt`),
    at positions 0..K-1 with the text after them, as given in ``inputs_embeds``; the KV cache holds
    them from the first step, so greedy search, sampling and beam search all see them.
    """

    def __init__(self, model: Any, pad_id: int = 0, soft_prompt: torch.Tensor | None = None) -> None:
        self.model = model.eval()
        self.vocab_size = model.config.vocab_size
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.soft_prompt: torch.Tensor | None = None
        self.block_size = model.config.block_size
        if soft_prompt is not None:
            self.set_soft_prompt(soft_prompt)

    def set_soft_prompt(self, vectors: torch.Tensor) -> None:
        """Decode after ``vectors`` ``[K, D]`` from now on (the text's room shrinks by K positions)."""
        c = self.model.config
        if vectors.dim() != 2 or vectors.shape[1] != c.n_embd or not 0 < vectors.shape[0] < c.block_size:
            raise ValueError(f"a soft prompt for this model is [K, {c.n_embd}] with 0 < K < {c.block_size}, "
                             f"got {list(vectors.shape)}")
        self.soft_prompt = vectors.to(self.device, next(self.model.parameters()).dtype)
        self.block_size = c.block_size - vectors.shape[0]  # positions left for the text

    @property
    def soft_length(self) -> int:
        return 0 if self.soft_prompt is None else self.soft_prompt.shape[0]

    def row_bytes(self, prompt_length: int, max_new_tokens: int) -> int:
        """Bytes of decoding state per row: the KV cache of every layer (twice: beam search reorders
        into a spare buffer), and the ids and mask of the sequence so far."""
        c = self.model.config
        capacity = min(prompt_length + max_new_tokens, self.block_size) + self.soft_length
        element = next(self.model.parameters()).element_size()
        return 2 * 2 * c.n_layer * c.n_embd * capacity * element + (prompt_length + max_new_tokens) * 9

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor | None, capacity: int) -> tuple[torch.Tensor, GPTState]:
        k = self.soft_length
        cache = self.model.new_cache(capacity + k)
        embeds = None
        if k:
            # the soft prompt first, then the (left-padded) ids; the mask and positions cover both
            rows = ids.shape[0]
            embeds = torch.cat([self.soft_prompt.unsqueeze(0).expand(rows, -1, -1),
                                self.model.token_embedding()(ids)], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(rows, k), mask], dim=1)
        length = ids.shape[1] + k
        if mask is None:
            positions = torch.arange(length, device=ids.device).expand(ids.shape[0], -1)
        else:
            positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        logits, _ = self.model(None if k else ids, cache=cache, key_padding_mask=mask, position_ids=positions,
                               last_only=True, inputs_embeds=embeds)
        return logits[:, -1].float(), GPTState(cache, ids, mask, positions[:, -1] + 1, ids.shape[1])

    @torch.no_grad()
    def start(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, GPTState]:
        _check_prompts(prompts)
        ids, mask = left_pad(prompts, self.pad_id, self.device)
        if ids.shape[1] > self.block_size:  # keep the end of an over-long prompt
            ids = ids[:, -self.block_size:]
            mask = mask[:, -self.block_size:] if mask is not None else None
        capacity = min(ids.shape[1] + max_new_tokens, self.block_size)
        return self._encode(ids, mask, capacity)

    @torch.no_grad()
    def step(self, state: GPTState, tokens: torch.Tensor) -> tuple[torch.Tensor, GPTState]:
        tokens = tokens.to(self.device).view(-1, 1)
        ids = torch.cat([state.ids, tokens], dim=1)
        mask = None if state.mask is None else torch.cat([state.mask, torch.ones_like(tokens, dtype=torch.bool)], 1)
        k = self.soft_length
        if int(state.positions.max()) >= self.block_size + k or len(state.cache) >= self.block_size + k:
            window = ids[:, -self.block_size:]
            window_mask = mask[:, -self.block_size:] if mask is not None else None
            if window_mask is not None and bool(window_mask.all()):
                window_mask = None
            logits, new_state = self._encode(window, window_mask, self.block_size)
            new_state.ids, new_state.mask, new_state.prompt_length = ids, mask, 0
            return logits, new_state
        logits, _ = self.model(tokens, cache=state.cache, key_padding_mask=mask,
                               position_ids=state.positions.view(-1, 1))
        return logits[:, -1].float(), GPTState(state.cache, ids, mask, state.positions + 1, state.prompt_length)

    def reorder(self, state: GPTState, index: torch.Tensor) -> GPTState:
        index = index.to(self.device)
        ids = state.ids[index]
        mask = state.mask[index] if state.mask is not None else None
        # Beams of one prompt share its cached keys/values: when every row keeps the same prompt
        # (same ids, same padding), only the generated positions need moving.
        n = state.prompt_length
        same_prompt = n > 0 and ids.shape[0] == state.ids.shape[0] and torch.equal(ids[:, :n], state.ids[:, :n]) \
            and (mask is None or torch.equal(mask[:, :n + self.soft_length], state.mask[:, :n + self.soft_length]))
        state.cache.reorder(index, keep_prefix=n + self.soft_length if same_prompt else 0)
        return GPTState(state.cache, ids, mask, state.positions[index], state.prompt_length)


class RecurrentNextToken:
    """:class:`NextTokenModel` over a recurrent LM ``forward(ids [B, T], hidden) -> (logits [B, T, V], hidden)``.

    ``hidden`` is a tensor or a tuple of tensors (LSTM's ``(h, c)``) with the batch in dimension
    ``batch_dim`` (1 for ``nn.LSTM``/``nn.GRU``). Prompts are run one by one (padding would flow
    through a recurrence) and their states stacked, then the batch steps in lock step.
    """

    def __init__(self, model: Any, vocab_size: int, *, forward: Callable | None = None, batch_dim: int = 1,
                 state_bytes: int = 0) -> None:
        self.model = model.eval() if hasattr(model, "eval") else model
        self.vocab_size = vocab_size
        self.batch_dim = batch_dim
        self.state_bytes = state_bytes  # per row, when known (for the memory estimate)
        self._forward = forward or (lambda ids, hidden: self.model(ids, hidden))
        params = list(model.parameters()) if hasattr(model, "parameters") else []
        self.device = params[0].device if params else torch.device("cpu")

    def row_bytes(self, prompt_length: int, max_new_tokens: int) -> int:
        """Bytes of decoding state per row (twice the hidden state: reordering copies it)."""
        return 2 * self.state_bytes

    def _map(self, hidden: Any, fn: Callable) -> Any:
        if isinstance(hidden, tuple | list):
            return type(hidden)(self._map(h, fn) for h in hidden)
        return fn(hidden)

    @torch.no_grad()
    def start(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, Any]:
        _check_prompts(prompts)
        logits, hiddens = [], []
        for prompt in prompts:
            ids = torch.as_tensor([list(prompt)], dtype=torch.long, device=self.device)
            out, hidden = self._forward(ids, None)
            logits.append(out[:, -1].float())
            hiddens.append(hidden)
        if len(hiddens) == 1:
            return logits[0], hiddens[0]
        stacked = self._stack(hiddens)
        return torch.cat(logits), stacked

    def _stack(self, hiddens: list) -> Any:
        first = hiddens[0]
        if isinstance(first, tuple | list):
            return type(first)(self._stack([h[i] for h in hiddens]) for i in range(len(first)))
        return torch.cat(hiddens, dim=self.batch_dim)

    @torch.no_grad()
    def step(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out, hidden = self._forward(tokens.to(self.device).view(-1, 1), state)
        return out[:, -1].float(), hidden

    def reorder(self, state: Any, index: torch.Tensor) -> Any:
        index = index.to(self.device)
        return self._map(state, lambda h: h.index_select(self.batch_dim, index))


class FullContextNextToken:
    """:class:`NextTokenModel` from ``fn(ids [B, T]) -> logits [B, V]`` of the next token, recomputed
    from the whole prefix at each step (no cache). Rows are kept apart, so prompts may differ in length.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], vocab_size: int,
                 device: torch.device | str = "cpu") -> None:
        self.fn = fn
        self.vocab_size = vocab_size
        self.device = torch.device(device)

    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        return torch.cat([self.fn(torch.tensor([row], device=self.device)).reshape(1, -1).float() for row in rows])

    @torch.no_grad()
    def start(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> tuple[torch.Tensor, list[list[int]]]:
        _check_prompts(prompts)
        rows = [list(p) for p in prompts]
        return self._logits(rows), rows

    @torch.no_grad()
    def step(self, state: list[list[int]], tokens: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        rows = [row + [int(t)] for row, t in zip(state, tokens.tolist(), strict=True)]
        return self._logits(rows), rows

    def reorder(self, state: list[list[int]], index: torch.Tensor) -> list[list[int]]:
        return [list(state[i]) for i in index.tolist()]


def rnn_lm_next_token(model: Any, vocab_size: int | None = None) -> RecurrentNextToken:
    """The adapter for :mod:`dlnlp.models.rnn_lm` models (``forward(idx, state=...) -> (logits, state)``).

    RNN/GRU/LSTM states have the batch in dimension 1 (``[layers, B, H]``); the feed-forward
    (Bengio) model's state is its ``[B, n - 1]`` token history, batch in dimension 0.
    """
    config = getattr(model, "config", None)
    cell = getattr(config, "cell", None)
    vocab = vocab_size or model.config.vocab_size
    if cell == "ffnn":
        state_bytes = 8 * (config.context - 1)
    elif config is not None:
        state_bytes = 4 * config.layers * config.hidden * (2 if cell == "lstm" else 1)
    else:
        state_bytes = 0
    return RecurrentNextToken(model, vocab, forward=lambda ids, state: model(ids, state=state),
                              batch_dim=0 if cell == "ffnn" else 1, state_bytes=state_bytes)
