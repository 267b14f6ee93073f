"""Greedy decoding, sampling and beam search over a :class:`~dlnlp.decoding.interface.NextTokenModel`.

All three decode a batch of prompts in lock step and return, per prompt, a list of
:class:`Hypothesis` (one for greedy and sampling, up to ``num_return`` for beam search), each
with its generated tokens, the sum of their log-probabilities under the model, and its ranking
score.

Scores. ``logprob`` is ``sum_t log p(y_t | y_<t, prompt)`` over the generated tokens (the
end-of-sequence token included when emitted). The ranking score divides it by a length term over
the number of generated tokens ``|Y|``:

- ``length_norm="power"``: ``logprob / |Y| ** alpha``. ``alpha = 1`` is the average log-probability
  per token (the classic length normalization), ``alpha = 0`` the raw sum. This is also HF
  transformers' convention (5.x: ``|Y|`` counts the new tokens only, not the prompt).
- ``length_norm="gnmt"``: ``logprob / ((5 + |Y|) / 6) ** alpha`` (Wu et al., 2016, eq. 14).

Beam search (k beams). At each step every live beam is extended by every token; the ``2k`` best
extensions by accumulated log-probability are examined in order. An extension ending in EOS within
the top ``k`` becomes a finished hypothesis, scored as above; the first ``k`` extensions not ending
in EOS are the next live beams. A prompt is done when ``k`` hypotheses are finished or when the
maximum number of new tokens is reached (then the top ``k`` extensions of the last step are
finished as they stand). Finished hypotheses are ranked by score; the best ``num_return`` are returned.
This matches HF ``generate(num_beams=k, early_stopping=True)``.

Constraints applied to the log-probabilities before choosing: ``min_new_tokens`` (EOS is forbidden
before it), ``no_repeat_ngram`` (a token completing an n-gram already present in the prompt or
the generated text is forbidden, as in HF's ``no_repeat_ngram_size``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dlnlp.decoding.interface import NextTokenModel
from dlnlp.errors import UsageError
from dlnlp.kernels.sampling import check_sampling_args, sample_logits

STRATEGIES = ("greedy", "sample", "beam")
LENGTH_NORMS = ("power", "gnmt")
# Each step of beam search examines 2 k candidates per prompt in Python; far beyond published beam
# sizes (tens to hundreds), 10,000 beams is a step of seconds and a cache of every beam.
MAX_BEAMS = 10_000

# Called with (prompt index, token id) as each token is chosen by greedy decoding or sampling.
TokenCallback = Callable[[int, int], None]


@dataclass
class DecodeConfig:
    """How to decode; the fields of ``dlnlp generate``'s options."""

    strategy: str = "greedy"
    max_new_tokens: int = 50
    min_new_tokens: int = 0
    eos_id: int | None = None
    num_beams: int = 4
    num_return: int = 1
    length_penalty: float = 1.0
    length_norm: str = "power"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    no_repeat_ngram: int = 0

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy {self.strategy}: expected one of {', '.join(STRATEGIES)}")
        if self.length_norm not in LENGTH_NORMS:
            raise UsageError(f"--length-norm {self.length_norm}: expected one of {', '.join(LENGTH_NORMS)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"--min-new-tokens must be in [0, --max-new-tokens], got {self.min_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"--num-beams must be >= 1, got {self.num_beams}")
        if self.num_return < 1:
            raise ValueError(f"--num-return must be >= 1, got {self.num_return}")
        if self.strategy == "beam" and self.num_return > self.num_beams:
            raise ValueError(f"--num-return {self.num_return} cannot exceed --num-beams {self.num_beams}")
        if self.strategy == "greedy" and self.num_return != 1:
            raise ValueError("--num-return > 1 needs --strategy beam or sample (greedy has one answer)")
        if not math.isfinite(self.length_penalty):
            raise ValueError(f"--length-penalty must be a finite number, got {self.length_penalty}")
        if self.no_repeat_ngram < 0:
            raise ValueError(f"--no-repeat-ngram must be >= 0, got {self.no_repeat_ngram}")
        check_sampling_args(self.temperature, self.top_k, self.top_p)


@dataclass
class Hypothesis:
    """One generated continuation: ``tokens`` (EOS included when ``finished``), scores as in the module doc."""

    tokens: list[int]
    logprob: float
    score: float
    finished: bool = False
    token_logprobs: list[float] = field(default_factory=list)


def sequence_score(logprob: float, length: int, alpha: float = 1.0, norm: str = "power") -> float:
    """The ranking score of a hypothesis with ``length`` generated tokens (see the module docstring)."""
    if length == 0:
        return logprob
    if norm == "gnmt":
        return logprob / (((5.0 + length) / 6.0) ** alpha)
    return logprob / (length ** alpha)


def _banned_ngram_tokens(sequence: Sequence[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram of ``sequence`` if appended to it."""
    if n <= 0 or len(sequence) + 1 < n:
        return []
    prefix = tuple(sequence[len(sequence) - n + 1:]) if n > 1 else ()
    banned = []
    for i in range(len(sequence) - n + 1):
        if tuple(sequence[i:i + n - 1]) == prefix:
            banned.append(sequence[i + n - 1])
    return banned


def _constrain(logprobs: torch.Tensor, sequences: Sequence[Sequence[int]], generated: int,
               config: DecodeConfig) -> torch.Tensor:
    """Apply min_new_tokens and no_repeat_ngram to ``[rows, V]`` log-probabilities (in place)."""
    if config.eos_id is not None and generated < config.min_new_tokens:
        logprobs[:, config.eos_id] = float("-inf")
    if config.no_repeat_ngram:
        for row, sequence in enumerate(sequences):
            banned = _banned_ngram_tokens(sequence, config.no_repeat_ngram)
            if banned:
                logprobs[row, banned] = float("-inf")
    return logprobs


def generate(model: NextTokenModel, prompts: Sequence[Sequence[int]], config: DecodeConfig, *,
             generator: torch.Generator | None = None,
             on_token: TokenCallback | None = None) -> list[list[Hypothesis]]:
    """Decode every prompt with ``config.strategy``; returns one list of hypotheses per prompt."""
    config.validate()
    check_decoding_size(model, prompts, config)
    if config.strategy == "beam":
        return beam_search(model, prompts, config)
    n = config.num_return
    if n == 1:
        return sample_or_greedy(model, prompts, config, generator=generator, on_token=on_token)
    # n independent samples per prompt: each prompt repeated n times in one batch.
    repeated = [p for p in prompts for _ in range(n)]
    callback = None if on_token is None else (lambda row, token: on_token(row // n, token))
    flat = sample_or_greedy(model, repeated, config, generator=generator, on_token=callback)
    return [[h for group in flat[i * n:(i + 1) * n] for h in group] for i in range(len(prompts))]


def check_decoding_size(model: NextTokenModel, prompts: Sequence[Sequence[int]], config: DecodeConfig) -> None:
    """Fail before decoding when ``config`` is pointless for the model or clearly cannot fit in memory.

    More than ``MAX_BEAMS`` beams, or more than the ``V ** max_new_tokens`` continuations there are
    (they cannot all be filled), are refused. The memory estimate
    (:func:`dlnlp.kernels.memory.decoding_needs`) counts every row decoded at once: prompts x beams
    (beam search) or prompts x samples, each with its ``V``-wide scores, its tokens and the model's
    state (``row_bytes``, when the adapter has it).
    """
    from dlnlp.errors import DlnlpError
    from dlnlp.kernels.memory import check_fits, decoding_needs

    vocab = int(model.vocab_size)
    beams = config.strategy == "beam"
    if beams and config.num_beams > MAX_BEAMS:
        raise DlnlpError(f"--num-beams {config.num_beams} is above the most beam search takes, {MAX_BEAMS:,}")
    if beams and config.num_beams > 1 and vocab ** min(config.max_new_tokens, 64) < config.num_beams:
        raise DlnlpError(f"--num-beams {config.num_beams} exceeds the {vocab} ** {config.max_new_tokens} "
                         f"possible continuations of {config.max_new_tokens} tokens over a vocabulary of {vocab}; "
                         "lower --num-beams")
    rows = len(prompts) * (config.num_beams if beams else config.num_return)
    length = max((len(p) for p in prompts), default=0)
    row_bytes = getattr(model, "row_bytes", None)
    per_row = int(row_bytes(length, config.max_new_tokens)) if callable(row_bytes) else 0
    check_fits(decoding_needs(rows, vocab, config.max_new_tokens, row_state_bytes=per_row, beams=beams),
               model.device, task="decoding")


@torch.no_grad()
def sample_or_greedy(model: NextTokenModel, prompts: Sequence[Sequence[int]], config: DecodeConfig, *,
                     generator: torch.Generator | None = None,
                     on_token: TokenCallback | None = None) -> list[list[Hypothesis]]:
    """Greedy decoding (``strategy="greedy"`` or temperature 0) or ancestral sampling with the
    temperature / top-k / top-p filters of :func:`dlnlp.kernels.sampling.sample_logits`.

    A row stops at EOS or after ``max_new_tokens``; finished rows leave the batch.
    """
    greedy = config.strategy == "greedy" or config.temperature == 0
    logits, state = model.start(prompts, config.max_new_tokens)
    sequences = [list(p) for p in prompts]
    tokens: list[list[int]] = [[] for _ in prompts]
    token_lps: list[list[float]] = [[] for _ in prompts]
    finished = [False] * len(prompts)
    active = list(range(len(prompts)))  # prompt index of each row of the model's batch
    for step in range(config.max_new_tokens):
        logprobs = _constrain(F.log_softmax(logits.float(), dim=-1), [sequences[i] for i in active], step, config)
        if greedy:
            chosen = logprobs.argmax(dim=-1)
        else:
            # Sampling sees the constraints (banned tokens at -inf) through the filtered logits.
            chosen = sample_logits(logprobs, config.temperature, config.top_k, config.top_p, generator=generator)
        chosen_lp = logprobs.gather(1, chosen.view(-1, 1)).view(-1).tolist()
        keep = []
        for row, (i, token) in enumerate(zip(active, chosen.tolist(), strict=True)):
            tokens[i].append(token)
            token_lps[i].append(chosen_lp[row])
            sequences[i].append(token)
            if on_token is not None:
                on_token(i, token)
            if config.eos_id is not None and token == config.eos_id:
                finished[i] = True
            else:
                keep.append(row)
        if not keep or step + 1 == config.max_new_tokens:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, dtype=torch.long)
            state = model.reorder(state, index)
            chosen = chosen[index.to(chosen.device)]
            active = [active[r] for r in keep]
        logits, state = model.step(state, chosen)
    results = []
    for i in range(len(prompts)):
        lp = float(sum(token_lps[i]))
        score = sequence_score(lp, len(tokens[i]), config.length_penalty, config.length_norm)
        results.append([Hypothesis(tokens[i], lp, score, finished[i], token_lps[i])])
    return results


@dataclass
class _Beam:
    tokens: list[int]
    logprob: float
    token_logprobs: list[float]


@torch.no_grad()
def beam_search(model: NextTokenModel, prompts: Sequence[Sequence[int]], config: DecodeConfig) -> list[list[Hypothesis]]:
    """Beam search with ``config.num_beams`` beams per prompt (algorithm in the module docstring)."""
    k = config.num_beams
    eos = config.eos_id
    logits, state = model.start(prompts, config.max_new_tokens)
    n_prompts = len(prompts)
    # Live beams of each prompt, in the order of the model's batch rows.
    live: list[list[_Beam]] = [[_Beam([], 0.0, [])] for _ in prompts]
    owners = list(range(n_prompts))  # prompt index owning each row
    done = [False] * n_prompts
    pool: list[list[Hypothesis]] = [[] for _ in prompts]

    def finish(i: int, beam: _Beam, is_eos: bool) -> None:
        score = sequence_score(beam.logprob, len(beam.tokens), config.length_penalty, config.length_norm)
        pool[i].append(Hypothesis(beam.tokens, beam.logprob, score, is_eos, beam.token_logprobs))
        pool[i].sort(key=lambda h: -h.score)
        del pool[i][k:]

    for step in range(config.max_new_tokens):
        last = step + 1 == config.max_new_tokens
        rows_beams = [beam for i in _ordered(owners) for beam in live[i]]
        # Full sequences are only needed by no-repeat-ngram (and cost O(length) per row to build).
        sequences = [list(prompts[owners[r]]) + b.tokens for r, b in enumerate(rows_beams)] \
            if config.no_repeat_ngram else []
        logprobs = _constrain(F.log_softmax(logits.float(), dim=-1), sequences, step, config)
        vocab = logprobs.shape[1]
        accumulated = logprobs + torch.tensor([b.logprob for b in rows_beams], device=logprobs.device)[:, None]
        next_rows, next_tokens, new_owners = [], [], []
        row = 0
        for i in _ordered(owners):
            n_live = len(live[i])
            block = accumulated[row:row + n_live].reshape(-1)
            n_cand = min(2 * k, block.numel())
            values, flat = torch.topk(block, n_cand)
            values, flat = values.tolist(), flat.tolist()
            new_live: list[_Beam] = []
            for rank, (value, index) in enumerate(zip(values, flat, strict=True)):
                if value == float("-inf"):
                    break
                parent, token = divmod(index, vocab)
                parent_beam = live[i][parent]
                beam = _Beam(parent_beam.tokens + [token], value,
                             parent_beam.token_logprobs + [value - parent_beam.logprob])
                if eos is not None and token == eos:
                    if rank < k:
                        finish(i, beam, True)
                elif last:
                    if rank < k:
                        finish(i, beam, False)
                elif len(new_live) < k:
                    new_live.append(beam)
                    next_rows.append(row + parent)
                    next_tokens.append(token)
                    new_owners.append(i)
            row += n_live
            live[i] = new_live
            if len(pool[i]) >= k or not new_live:
                done[i] = True
        if last:
            break
        # Rows of finished prompts leave the batch.
        keep = [j for j, i in enumerate(new_owners) if not done[i]]
        if not keep:
            break
        if len(keep) < len(new_owners):
            for i in set(new_owners):
                if done[i]:
                    live[i] = []
            next_rows = [next_rows[j] for j in keep]
            next_tokens = [next_tokens[j] for j in keep]
            new_owners = [new_owners[j] for j in keep]
        index = torch.tensor(next_rows, dtype=torch.long)
        if next_rows != list(range(len(owners))):
            state = model.reorder(state, index)
        owners = new_owners
        logits, state = model.step(state, torch.tensor(next_tokens, dtype=torch.long, device=model.device))
    return [sorted(pool[i], key=lambda h: -h.score)[: config.num_return] for i in range(n_prompts)]


def _ordered(owners: list[int]) -> list[int]:
    """The distinct prompt indices of ``owners`` in order of appearance (rows are grouped by prompt)."""
    seen: list[int] = []
    for i in owners:
        if not seen or seen[-1] != i:
            seen.append(i)
    return seen
