"""ELMo: a character-aware bidirectional LSTM language model and its contextual vectors.

Peters et al. (2018), "Deep contextualized word representations", at sizes a CPU can train::

    x_k = TokenEncoder(bytes of word k)                       # char-CNN, same for both directions
    f_{k,l} = LSTM_fwd_l(f_{k,l-1}, f_{k-1,l})                 # forward LM: sees words 1..k
    b_{k,l} = LSTM_bwd_l(b_{k,l-1}, b_{k+1,l})                 # backward LM: sees words k..n
    loss = -(1/2N) sum_k [log p(w_{k+1} | f_{k,L}) + log p(w_{k-1} | b_{k,L})]

* **Token encoder** (Kim et al. 2016, "Character-Aware Neural Language Models", as used by ELMo):
  a word is the bytes of its UTF-8 between a begin- and an end-of-word marker, cut to ``max_chars``
  (the end marker is kept); 16-dimensional byte embeddings; convolutions of several widths, each
  max-pooled over the positions of the word (ReLU); ``highway`` highway layers (Srivastava et al.
  2015: ``y = t * relu(W_h x) + (1 - t) * x``, ``t = sigmoid(W_t x)``, the gate's bias starting at
  -2 so that the layer starts near the identity, as bilm-tf does); a linear projection to ``dim``.
  The pooling sees only the windows that start inside the word, so a word's vector does not
  depend on how much padding its batch has.
* **Two LSTM stacks** (:class:`~dlnlp.kernels.recurrent.LayerwiseStack`, one single-layer LSTM per
  layer): ``hidden`` cells projected to ``dim`` (``proj_size``, Sak et al. 2014; none when
  ``hidden == dim``, which runs PyTorch's fused CPU kernel, several times faster), a residual
  connection around every layer above the first (ELMo's between layers 1 and 2), dropout between
  layers. The backward stack reads right to left (``reverse=True``), so each direction sees only its
  own side of the word.
* **One softmax** over a closed word vocabulary shared by both directions, on the top layer's output
  (``dim``): ``full`` (a ``V x dim`` matrix), ``adaptive`` (Grave et al. 2017,
  ``nn.AdaptiveLogSoftmaxWithLoss``: frequent words in a head, rare ones in smaller tail clusters;
  the vocabulary is sorted by frequency) or ``sampled`` (Jean et al. 2015 sampled softmax with a
  log-uniform proposal over the frequency ranks and the ``log Q`` correction, as TensorFlow's
  ``sampled_softmax_loss`` used by bilm-tf; the full softmax at evaluation).

The loss: Peters et al. maximize the sum of both directions' log-likelihoods; the model returns half
of that per token, the mean of the forward and backward NLLs, so the trainer's perplexity
``exp(loss)`` is the geometric mean of the two directions' (the factor 1/2 only scales the gradient,
which Adam does not see).

Text: words are whitespace-separated, a line is a sentence, and the vocabulary follows ``dlnlp
ngram``: ``<unk>`` (id 0) for words outside it, ``</s>`` (id 1) for the end of a line (which also
starts the next one), literal ``<s>``, ``</s>`` and ``<unk>`` in the text are dropped. The forward LM
predicts every word and ``</s>`` of each line; the backward LM every word and the ``</s>`` before
the line; so each direction scores as many tokens as ``dlnlp ngram eval``.

Contextual vectors (:meth:`BiLM.features`, :class:`ElmoEncoder`): hidden state 0 is the token
encoding repeated twice (``[x; x]``, the width of the others, as ELMo does), hidden state ``l`` the
forward and backward outputs of layer ``l`` side by side ``[f_l; b_l]``; each ``2 * dim`` wide.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import InputError, UsageError
from dlnlp.kernels.memory import MAX_WIDTH
from dlnlp.kernels.recurrent import LayerwiseStack
from dlnlp.kernels.transformer import dropout_layer
from dlnlp.models.features import Features, Layers, layer_indices
from dlnlp.models.registry import Family, register
from dlnlp.settings import DictConfig

# PyTorch warns at every call that its oneDNN kernel has no projection; the fallback is correct
# (and --hidden equal to --dim avoids it), so say it once in the docs, not on every batch.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")

KIND = "elmo"
FORMAT_VERSION = 1
SOFTMAXES = ("full", "adaptive", "sampled")

# -- words as bytes -----------------------------------------------------------------------------------
UNK, BOUNDARY = "<unk>", "</s>"
UNK_ID, BOUNDARY_ID = 0, 1  # the output vocabulary's first two entries
SPECIALS = ("<s>", "</s>", "<unk>")  # dropped from the text, as `dlnlp ngram` does
PAD_CHAR = 0  # padding; byte b is b + 1
BOW_CHAR, EOW_CHAR, BOUNDARY_CHAR = 257, 258, 259
CHAR_VOCAB = 260


def split_words(line: str) -> list[str]:
    """The words of a line: whitespace-separated, the literal special tokens left out."""
    return [w for w in line.split() if w not in SPECIALS]


def encode_word(word: str, max_chars: int) -> list[int]:
    """``[BOW, b_1 + 1, ..., b_m + 1, EOW]`` of the UTF-8 bytes ``b`` of ``word``, cut to ``max_chars``
    (the bytes are cut, the end marker kept); the boundary token ``</s>`` is ``[BOW, BOUNDARY, EOW]``."""
    if word == BOUNDARY:
        body = [BOUNDARY_CHAR]
    else:
        body = [b + 1 for b in word.encode("utf-8", "surrogatepass")[: max_chars - 2]]
    return [BOW_CHAR, *body, EOW_CHAR]


def encode_words(words: Sequence[str], max_chars: int) -> np.ndarray:
    """``[len(words), max_chars]`` uint16 character ids of ``words`` (:func:`encode_word`), zero-padded."""
    out = np.zeros((len(words), max_chars), dtype=np.uint16)
    for i, word in enumerate(words):
        ids = encode_word(word, max_chars)
        out[i, : len(ids)] = ids
    return out


# -- configuration --------------------------------------------------------------------------------------


@dataclass
class ElmoConfig(DictConfig):
    vocab_size: int
    max_chars: int = 50  # bytes per word with its two markers (ELMo's 50)
    char_dim: int = 16
    filters: list[list[int]] = field(default_factory=lambda: [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]])
    highway: int = 2
    dim: int = 128  # token encoding and LSTM projection (ELMo: 512)
    hidden: int = 512  # LSTM cells per layer (ELMo: 4096); = dim: no projection
    layers: int = 2
    residual: bool = True
    dropout: float = 0.1
    softmax: str = "adaptive"  # full | adaptive | sampled
    cutoffs: list[int] | None = None  # adaptive: cluster boundaries (None: 2000, 10000, 50000 below V)
    div_value: float = 4.0  # adaptive: each tail cluster's width is dim / div_value^i
    samples: int = 1024  # sampled: negative words per batch

    def validate(self) -> None:
        if self.softmax not in SOFTMAXES:
            raise UsageError(f"--softmax must be one of {', '.join(SOFTMAXES)}, got {self.softmax!r}")
        for name in ("vocab_size", "char_dim", "dim", "hidden", "layers", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("char_dim", "dim", "hidden"):
            if getattr(self, name) > MAX_WIDTH:
                raise ValueError(
                    f"--{name.replace('_', '-')} {getattr(self, name)} is above the widest supported, "
                    f"{MAX_WIDTH:,}"
                )
        if self.highway < 0:
            raise ValueError(f"--highway must be >= 0, got {self.highway}")
        if not 3 <= self.max_chars <= 1000:
            raise ValueError(
                f"--max-chars must be between 3 and 1000 (the two markers and a byte), got {self.max_chars}"
            )
        if self.dim > self.hidden:
            raise ValueError(
                f"--dim ({self.dim}) must be at most --hidden ({self.hidden}): the LSTM projects its "
                "cells down to --dim (equal: no projection)"
            )
        if not self.filters or any(len(f) != 2 or f[0] < 1 or f[1] < 1 for f in self.filters):
            raise ValueError(f"--filters must be WIDTH:COUNT pairs of positive integers, got {self.filters}")
        if sum(n for _, n in self.filters) > MAX_WIDTH or max(w for w, _ in self.filters) > self.max_chars:
            raise ValueError(f"--filters {self.filters}: too many filters, or a width above --max-chars")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.div_value <= 1:
            raise ValueError(f"--div-value must be > 1, got {self.div_value}")
        if self.cutoffs is not None and (
            list(self.cutoffs) != sorted(set(self.cutoffs))
            or not self.cutoffs
            or self.cutoffs[0] < 1
            or self.cutoffs[-1] >= self.vocab_size
        ):
            raise ValueError(
                f"--cutoffs must increase, each between 1 and the vocabulary size - 1 "
                f"({self.vocab_size - 1}), got {self.cutoffs}"
            )

    def adaptive_cutoffs(self) -> list[int]:
        if self.cutoffs:
            return list(self.cutoffs)
        cutoffs = [c for c in (2000, 10000, 50000) if c < self.vocab_size - 1]
        return cutoffs or [max(1, self.vocab_size // 2)]


# -- the token encoder ----------------------------------------------------------------------------------


class Highway(nn.Module):
    """``y = t * relu(W_h x + b_h) + (1 - t) * x``, ``t = sigmoid(W_t x + b_t)`` (Srivastava et al. 2015)."""

    def __init__(self, dim: int):
        super().__init__()
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        nn.init.constant_(self.gate.bias, -2.0)  # start by carrying x through (bilm-tf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return t * F.relu(self.transform(x)) + (1 - t) * x


class CharCNN(nn.Module):
    """Character ids ``[N, C]`` (0 = padding) -> token vectors ``[N, dim]``; see the module docstring."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.embedding = nn.Embedding(CHAR_VOCAB, config.char_dim, padding_idx=PAD_CHAR)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.char_dim, count, width) for width, count in config.filters
        )
        self.max_width = max(width for width, _ in config.filters)
        width = sum(count for _, count in config.filters)
        self.highways = nn.ModuleList(Highway(width) for _ in range(config.highway))
        self.proj = nn.Linear(width, config.dim)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        chars = chars.long()
        lengths = (chars != PAD_CHAR).sum(-1)  # [N]; every word has its two markers
        # Pad (or cut) to the longest word + the widest filter - 1: every window that starts inside
        # a word then exists, and its padding part is the zero padding embedding whatever the batch.
        width = int(lengths.max()) + self.max_width - 1 if chars.numel() else self.max_width
        if chars.size(1) < width:
            chars = F.pad(chars, (0, width - chars.size(1)), value=PAD_CHAR)
        else:
            chars = chars[:, :width]
        x = self.embedding(chars).transpose(1, 2)  # [N, char_dim, width]
        pooled = []
        for conv in self.convs:
            y = conv(x)  # [N, count, width - w + 1]
            inside = torch.arange(y.size(-1), device=y.device) < lengths.unsqueeze(
                1
            )  # window starts in the word
            y = y.masked_fill(~inside.unsqueeze(1), float("-inf"))
            pooled.append(F.relu(y.amax(-1)))
        h = torch.cat(pooled, dim=-1)
        for highway in self.highways:
            h = highway(h)
        return self.proj(h)


# -- the output softmax ---------------------------------------------------------------------------------


class SampledSoftmax(nn.Module):
    """A ``V x dim`` softmax trained on ``samples`` sampled negatives, evaluated in full.

    Proposal: the log-uniform (Zipfian) distribution over frequency ranks, ``Q(k) = log((k + 2) /
    (k + 1)) / log(V + 1)`` (TensorFlow's ``log_uniform_candidate_sampler``), ``samples`` draws with
    replacement shared by the batch. The logits of the target and the negatives are corrected by
    ``- log(samples * Q)`` (Jean et al. 2015) and a negative equal to the target is masked out.
    """

    def __init__(self, dim: int, vocab_size: int, samples: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, dim).normal_(0, dim**-0.5))
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.samples = min(samples, vocab_size)
        k = torch.arange(vocab_size, dtype=torch.float64)
        q = (torch.log(k + 2) - torch.log(k + 1)) / np.log(vocab_size + 1)
        self.register_buffer("log_q", q.float().log(), persistent=False)
        self.register_buffer("q", q.float(), persistent=False)

    def log_prob(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log p(target | h)`` under the full softmax, ``[N]``."""
        logits = F.linear(h, self.weight, self.bias).float()
        return logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def sampled_nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sampled-softmax NLL of each row ``[N]`` (training)."""
        negatives = torch.multinomial(self.q, self.samples, replacement=True)  # [S]
        correction = float(np.log(self.samples))
        true = (h * self.weight[targets]).sum(-1) + self.bias[targets] - self.log_q[targets] - correction
        sampled = (
            F.linear(h, self.weight[negatives], self.bias[negatives]) - self.log_q[negatives] - correction
        )
        sampled = sampled.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([true.unsqueeze(1), sampled], dim=1).float()
        return -logits.log_softmax(-1)[:, 0]


class OutputSoftmax(nn.Module):
    """The shared softmax of both directions: ``nll(h [N, dim], targets [N]) -> [N]`` nats."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.kind = config.softmax
        if config.softmax == "full":
            self.linear = nn.Linear(config.dim, config.vocab_size)
        elif config.softmax == "adaptive":
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                config.dim, config.vocab_size, config.adaptive_cutoffs(), div_value=config.div_value
            )
        else:
            self.sampled = SampledSoftmax(config.dim, config.vocab_size, config.samples)

    def nll(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h = h.float()
        if self.kind == "full":
            return F.cross_entropy(self.linear(h), targets, reduction="none")
        if self.kind == "adaptive":
            return -self.adaptive(h, targets).output
        if self.training:
            return self.sampled.sampled_nll(h, targets)
        return -self.sampled.log_prob(h, targets)

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Every word's ``log p`` ``[N, V]`` (for small jobs: inspection, tests)."""
        h = h.float()
        if self.kind == "full":
            return self.linear(h).log_softmax(-1)
        if self.kind == "adaptive":
            return self.adaptive.log_prob(h)
        return F.linear(h, self.sampled.weight, self.sampled.bias).log_softmax(-1)


# -- the biLM -------------------------------------------------------------------------------------------


class BiLM(nn.Module):
    """The character-aware bidirectional LM; see the module docstring.

    Training (:meth:`forward`) reads two windows a step: one of the forward stream read left to right
    and one of the backward stream read right to left, each continuing the previous window of its
    direction (the state ``(forward, backward)`` is carried). Both are given in text order, as
    indices into ``chars`` (the character ids of the distinct words of the step, encoded once).
    """

    stateful = True

    def __init__(self, config: ElmoConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.token_encoder = CharCNN(config)
        self.drop = dropout_layer(config.dropout)
        # hidden == dim: no projection, which lets PyTorch use its fused (oneDNN / cuDNN) LSTM kernel
        proj = config.dim if config.dim < config.hidden else 0
        stack = dict(proj_size=proj, residual=config.residual, dropout=config.dropout)
        self.forward_lm = LayerwiseStack("lstm", config.dim, config.hidden, config.layers, **stack)
        self.backward_lm = LayerwiseStack(
            "lstm", config.dim, config.hidden, config.layers, reverse=True, **stack
        )
        self.softmax = OutputSoftmax(config)

    @property
    def num_hidden(self) -> int:
        return self.config.layers + 1

    def encode_tokens(self, chars: torch.Tensor) -> torch.Tensor:
        """Token vectors ``[..., dim]`` of character ids ``[..., max_chars]``."""
        shape = chars.shape[:-1]
        return self.token_encoder(chars.reshape(-1, chars.size(-1))).view(*shape, self.config.dim)

    def direction(
        self,
        backward: bool,
        x: torch.Tensor,
        state: Any = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], Any]:
        """One direction's LSTM over token vectors ``x [B, T, dim]`` in text order: (top, layers, state)."""
        stack = self.backward_lm if backward else self.forward_lm
        return stack(self.drop(x), state, lengths)

    def direction_nll(
        self, backward: bool, x: torch.Tensor, targets: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """Per-token NLL ``[B, T]`` of one direction's window (targets < 0: not scored, NLL 0)."""
        top, _, state = self.direction(backward, x, state)
        h = self.drop(top)
        scored = targets >= 0
        nll = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
        if bool(scored.all()):
            nll = self.softmax.nll(h.reshape(-1, h.size(-1)), targets.reshape(-1)).view(targets.shape)
        elif bool(scored.any()):
            nll[scored] = self.softmax.nll(h[scored], targets[scored])
        return nll, state

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor,
        chars: torch.Tensor,
        bwd_ids: torch.Tensor,
        bwd_targets: torch.Tensor,
        state: Any = None,
    ) -> tuple[torch.Tensor, Any]:
        """The training loss: the mean of the forward and backward NLL per token, and the new state.

        ``chars [U, max_chars]``: the distinct words of the step; ``input_ids``/``bwd_ids [B, T]``:
        indices into them of the forward and backward windows (text order); ``targets`` the next
        word of each forward position, ``bwd_targets`` the previous word of each backward position.
        """
        vectors = self.token_encoder(chars)
        fwd_state, bwd_state = state if state is not None else (None, None)
        fwd, fwd_state = self.direction_nll(False, vectors[input_ids], targets, fwd_state)
        bwd, bwd_state = self.direction_nll(True, vectors[bwd_ids], bwd_targets, bwd_state)
        loss = 0.5 * (_mean_scored(fwd, targets) + _mean_scored(bwd, bwd_targets))
        return loss, (fwd_state, bwd_state)

    def features(
        self, chars: torch.Tensor, lengths: torch.Tensor | None = None, layers: Layers = "all",
        state: Any = None,
    ) -> Features:
        """Hidden states of sentences ``chars [B, T, max_chars]`` (right-padded to ``lengths``), from zero
        state or from ``state = (forward, backward)`` (each direction's state at its first word read).

        ``hidden_states[0]`` is ``[x; x]``, ``hidden_states[l]`` ``[f_l; b_l]`` (each ``[B, T, 2 dim]``);
        ``last_hidden_state`` the top layer's. The backward LM starts each row at its own last word.
        """
        keep = layer_indices(layers, self.num_hidden)
        x = self.encode_tokens(chars)
        fwd_state, bwd_state = state if state is not None else (None, None)
        _, fwd, _ = self.direction(False, x, fwd_state)
        _, bwd, _ = self.direction(True, x, bwd_state, lengths=lengths)
        states = [torch.cat([x, x], -1), *(torch.cat([f, b], -1) for f, b in zip(fwd, bwd, strict=True))]
        return Features(states[-1], tuple(states[i] for i in keep), None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _mean_scored(nll: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    count = (targets >= 0).sum()
    return nll.sum() / count.clamp(min=1)


# -- contextual vectors of text -------------------------------------------------------------------------


class ElmoEncoder(nn.Module):
    """A biLM as a backbone for downstream models: words in, every layer's vectors out.

    ``encoder.batch(token_lists)`` -> ``(chars, mask)``; ``encoder(chars, mask, layers)`` -> Features
    whose positions are the words (the ``</s>`` around each sentence, which the biLM reads as the
    sentence's boundaries, are removed), ``[B, T, 2 dim]`` per hidden state, padding where ``mask`` is
    False. Mix the hidden states with :class:`dlnlp.kernels.pooling.ScalarMix` (Peters et al. eq. 1).

    Each sentence is read from zero state unless :meth:`warm_up` set a start state: the biLM trained on
    a stream whose state always carried over from the text before, so at a sentence's first words a
    zero state is one it never saw (AllenNLP warms its ELMo's states up for the same reason).
    """

    def __init__(self, bilm: BiLM):
        super().__init__()
        self.bilm = bilm
        self.max_chars = bilm.config.max_chars
        self.num_hidden = bilm.num_hidden
        self.dim = 2 * bilm.config.dim
        self.start_state: Any = None  # (forward, backward) states for one row, or None: zero

    @torch.no_grad()
    def warm_up(self, sentences: Sequence[Sequence[str]], streams: int = 32) -> None:
        """Set the start state of every sentence read afterwards to each direction's mean state at a
        sentence boundary of text read as training reads it: ``sentences`` cut into ``streams`` runs of
        consecutive lines, each run ``s_1 </s> s_2 ... </s> s_k``, the forward LM reading it left to right
        (ending after ``s_k``'s last word, where the next sentence's leading ``</s>`` follows) and the
        backward LM right to left (ending after ``s_1``'s first word). The runs are read as one batch,
        padded with ``</s>`` where each direction starts reading (a few boundaries before a long run).
        The mean over runs is the same for every sentence, so vectors stay independent of batch and order."""
        sentences = [list(words) for words in sentences if words]
        if len(sentences) < streams:
            raise InputError(f"warm_up needs at least {streams} non-empty sentences, got {len(sentences)}")
        per_run = len(sentences) // streams
        runs = [[w for i, words in enumerate(sentences[r * per_run:(r + 1) * per_run])
                 for w in ((BOUNDARY, *words) if i else words)] for r in range(streams)]
        width = max(len(run) for run in runs)
        was = self.bilm.training
        self.bilm.eval()
        states = []
        for backward in (False, True):
            padded = [run + [BOUNDARY] * (width - len(run)) if backward else [BOUNDARY] * (width - len(run)) + run
                      for run in runs]
            chars = np.stack([encode_words(run, self.max_chars) for run in padded]).astype(np.int64)
            x = self.bilm.encode_tokens(torch.from_numpy(chars).to(self.device))
            states.append(self.bilm.direction(backward, x)[2])
        self.bilm.train(was)

        def mean(state: Any) -> Any:
            if isinstance(state, torch.Tensor):
                return state.mean(1, keepdim=True)
            return tuple(mean(part) for part in state)

        self.start_state = (mean(states[0]), mean(states[1]))

    def _start_state(self, batch: int) -> Any:
        def expand(state: Any) -> Any:
            if isinstance(state, torch.Tensor):
                return state.expand(-1, batch, -1).contiguous()
            return tuple(expand(part) for part in state)

        return None if self.start_state is None else expand(self.start_state)

    @property
    def device(self) -> torch.device:
        return next(self.bilm.parameters()).device

    def batch(self, sentences: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Character ids ``[B, T, max_chars]`` of ``</s> words </s>`` per sentence, right-padded, and the
        mask ``[B, T]`` of the words (boundaries and padding False). An empty sentence is ``</s> </s>``."""
        width = max((len(s) for s in sentences), default=0) + 2
        chars = np.zeros((len(sentences), width, self.max_chars), dtype=np.int64)
        mask = np.zeros((len(sentences), width), dtype=bool)
        for i, words in enumerate(sentences):
            chars[i, : len(words) + 2] = encode_words([BOUNDARY, *words, BOUNDARY], self.max_chars)
            mask[i, 1 : len(words) + 1] = True
        return torch.from_numpy(chars).to(self.device), torch.from_numpy(mask).to(self.device)

    def forward(self, chars: torch.Tensor, mask: torch.Tensor, layers: Layers = "all") -> Features:
        lengths = mask.sum(1) + 2
        out = self.bilm.features(chars, lengths, layers, state=self._start_state(chars.size(0)))
        trim = slice(1, chars.size(1) - 1)  # the leading and the last column (a </s> or padding)
        hidden = tuple(h[:, trim] for h in out.hidden_states)
        return Features(out.last_hidden_state[:, trim], hidden, None)

    def words_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask of the positions :meth:`forward` returns."""
        return mask[:, 1 : mask.size(1) - 1]


# -- model directories ------------------------------------------------------------------------------------


def build_model(config: ElmoConfig) -> BiLM:
    config.validate()
    return BiLM(config)


def read_vocab_words(directory: str | Path) -> list[str]:
    """The output vocabulary (``vocab.txt``: ``word<TAB>count`` lines, ``<unk>`` and ``</s>`` first)."""
    from dlnlp.errors import ModelDirError
    from dlnlp.models.vocab import Vocabulary

    words = Vocabulary.load(directory).words
    if words[:2] != [UNK, BOUNDARY]:
        raise ModelDirError(
            f"{directory}/vocab.txt: not an ELMo vocabulary (it must start with <unk> and </s>)"
        )
    return words


def save_elmo(
    model: BiLM,
    directory: str | Path,
    words: Sequence[str],
    counts: Sequence[int] | None = None,
    *,
    force: bool = False,
    **extra: Any,
) -> Path:
    """Write a complete ``elmo`` model directory (config.json, weights, ``vocab.txt`` of ``words``)."""
    from dlnlp.io.modeldir import make_config, write_model_dir
    from dlnlp.models.vocab import Vocabulary

    vocab = Vocabulary(list(words), list(counts) if counts is not None else [0] * len(words))
    config = make_config(
        KIND, FORMAT_VERSION, model=model.config.to_dict(), level="word", eos_id=BOUNDARY_ID, **extra
    )
    return write_model_dir(directory, config, model.state_dict(), {"vocab.txt": vocab.to_text()}, force=force)


def load_elmo(directory: Any, device: str | torch.device = "cpu") -> tuple[BiLM, dict[str, Any]]:
    """(model in eval mode on ``device``, config.json) of an ``elmo`` model directory; ``model.words``
    is its output vocabulary."""
    from dlnlp.errors import ModelDirError
    from dlnlp.io.modeldir import WEIGHTS_NAME, load_weights, read_config
    from dlnlp.models.weights import check_weights, model_from_config

    directory = Path(directory)
    config = read_config(directory, KIND)
    model = model_from_config(
        directory / "config.json", config, lambda d: build_model(ElmoConfig.from_dict(d))
    )
    if not (directory / WEIGHTS_NAME).is_file():
        raise ModelDirError(f"{directory}: no {WEIGHTS_NAME} yet (training saves it at the first validation)")
    words = read_vocab_words(directory)
    if len(words) != model.config.vocab_size:
        raise ModelDirError(
            f"{directory}/vocab.txt: {len(words)} words, config.json says {model.config.vocab_size}"
        )
    state = load_weights(directory, device="cpu")
    check_weights(model, state, directory / WEIGHTS_NAME)
    model.load_state_dict(state)
    model.words = words
    model.to(device).eval()
    return model, config


register(
    Family(
        KIND,
        load_elmo,
        (FORMAT_VERSION,),
        ElmoConfig,
        build_model,
        description="ELMo: character-aware bidirectional LSTM LM and contextual vectors",
    )
)
