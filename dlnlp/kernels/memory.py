"""Memory a configuration implies, checked before anything is allocated (fail fast, say what to lower).

Every command that sizes big tensors from options (``gpt``/``rnn train``, ``generate``, ``vectors
ppmi-svd``, ``glove``/``word2vec``) estimates the bytes its configuration needs from the options and
the data (parameters, gradients and optimizer state, activations for ``batch x sequence x width x
layers``, ``rows x vocabulary`` logits, the KV cache of every beam ...) and compares the total with
the memory there is: ``MemAvailable`` of ``/proc/meminfo`` (or ``os.sysconf``), lowered to what a
cgroup v2 limit leaves, for the host; ``torch.cuda.mem_get_info`` (free memory) for a CUDA device.
A configuration above it fails with one line: the estimate, what is available and the option to
lower, instead of growing until the kernel kills the process.

The estimates count only what is certainly allocated (no allocator slack, no temporary buffers of
the kernels, no attention score matrices, which the fused kernels do not materialise), so they stay
below the true peak: a configuration is refused only when it clearly cannot fit. Setting
``DLNLP_MEMORY_CHECK=0`` turns the check off (for swap, or an estimate that is wrong for a machine).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlnlp.errors import DlnlpError

FLOAT = 4  # fp32 bytes
ENV_SWITCH = "DLNLP_MEMORY_CHECK"
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


# The widest vectors a command accepts (--dim, --hidden, --embed), whatever the memory: above the
# widest published models (about 2^14) and word vectors (50 to 1000) by far; wider would mostly
# fit a small vocabulary's memory and then spend hours per epoch.
MAX_WIDTH = 1 << 16


def check_width(option: str, value: int) -> None:
    """Refuse a vector width above :data:`MAX_WIDTH` (one line naming the option)."""
    if value > MAX_WIDTH:
        raise DlnlpError(f"{option} {value} is above the widest supported, {MAX_WIDTH:,}")


class MemoryEstimateError(DlnlpError):
    """A configuration needs clearly more memory than the machine has (raised before allocating it)."""


@dataclass
class Need:
    """One part of an estimate: what it is, its bytes, and the options that shrink it (as typed)."""

    what: str
    bytes: int
    lower: str


def human(n: float) -> str:
    """``1536 -> "1.5 KiB"``: bytes in binary units, three significant figures."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves (``memory.max - memory.current``), None without one."""
    try:
        line = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
        path = next(entry.split(":", 2)[2] for entry in line if entry.startswith("0::"))
        base = Path("/sys/fs/cgroup") / path.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def available(device: Any = "cpu") -> tuple[int | None, str]:
    """(bytes available, where) for ``device``: free memory of a CUDA device, else the host's."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except RuntimeError:
            return None, str(device)
        return int(free), f"free on {device}"
    sizes = [s for s in (_meminfo_available(), _cgroup_room(), _address_space_room()) if s is not None]
    return (min(sizes) if sizes else None), "available host memory"


def _address_space_room() -> int | None:
    """Room left under ``ulimit -v`` (RLIMIT_AS), which an allocation past it turns into an abort."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return max(0, soft - used)
    except (ImportError, OSError, ValueError):
        return None


def check_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def check_fits(needs: Sequence[Need], device: Any = "cpu", *, task: str) -> int:
    """Raise :class:`MemoryEstimateError` when the needs add up to more than ``device`` has; returns the total.

    The message names the largest part and its options: ``gpt training needs about 205 GiB
    (parameters, gradients and optimizer state: 205 GiB) but available host memory is 23 GiB;
    lower --block-size``.
    """
    total = sum(max(0, int(n.bytes)) for n in needs)
    if not needs or not check_enabled():
        return total
    room, where = available(device)
    if room is None or total <= room:
        return total
    top = max(needs, key=lambda n: n.bytes)
    raise MemoryEstimateError(f"{task} needs about {human(total)} ({top.what}: {human(top.bytes)}) but {where} "
                              f"is {human(room)}; lower {top.lower}")


def check_training(needs: Sequence[Need], device: Any, *, task: str, copies: int) -> None:
    """:func:`check_fits` for training needs whose first part is the parameter state (``copies`` copies
    of the weights); off the CPU the weights are also checked against host memory, where the model
    is built before it moves to the device."""
    import torch

    check_fits(needs, device, task=task)
    if torch.device(device).type != "cpu" and needs:
        weights = needs[0]
        check_fits([Need("the weights", weights.bytes // max(1, copies), weights.lower)], "cpu",
                   task=f"building the model for {task}")


def state_factor(optimizer: str = "adamw", *, momentum: float = 0.9, ema: bool = False) -> int:
    """Copies of the parameters a training step holds: weights, gradients, optimizer state, average."""
    optimizer_copies = 2 if optimizer == "adamw" else (1 if momentum else 0)
    return 2 + optimizer_copies + (1 if ema else 0)


def activation_bytes(device: Any, precision: str = "auto") -> int:
    """Bytes per activation: 2 under bf16/fp16 autocast (CUDA), else 4."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and (precision or "auto").lower() in ("auto", "bf16", "fp16"):
        return 2
    return FLOAT


# -- the models' parameters -----------------------------------------------------------------------

def transformer_parameters(vocab: int, dim: int, layers: int, block: int, *, mlp_dim: int | None = None,
                           tied: bool = True, learned_positions: bool = True) -> dict[str, int]:
    """Parameter counts of a GPT by part: ``embeddings`` (token, untied output), ``positions``, ``blocks``.

    A pre-LN block holds ``4 d^2 + 2 d m`` weights (attention in/out projections, the MLP) plus
    biases and norms (``9 d + m``).
    """
    m = mlp_dim or 4 * dim
    return {"embeddings": vocab * dim * (1 if tied else 2),
            "positions": block * dim if learned_positions else 0,
            "blocks": layers * (4 * dim * dim + 2 * dim * m + 9 * dim + m) + 2 * dim}


def recurrent_parameters(vocab: int, embed: int, hidden: int, layers: int, cell: str, *, tied: bool = False,
                         context: int = 5, direct: bool = False) -> dict[str, int]:
    """Parameter counts of an RNN/GRU/LSTM (or feed-forward n-gram) LM by part: embeddings, layers, output."""
    if cell == "ffnn":
        stack = context * embed * hidden + hidden
        direct_weights = context * embed * vocab if direct else 0
    else:
        gates = GATES.get(cell, 4)
        stack = sum(gates * hidden * ((embed if i == 0 else hidden) + hidden + 2) for i in range(layers))
        direct_weights = 0
    out_size = embed if tied and hidden != embed else hidden
    projection = hidden * embed if tied and hidden != embed else 0
    return {"embeddings": vocab * embed, "layers": stack + projection,
            "output": (0 if tied else out_size * vocab) + vocab + direct_weights}


# -- what a configuration needs -------------------------------------------------------------------

def gpt_training_needs(vocab: int, dim: int, layers: int, block: int, *, mlp_dim: int | None = None,
                       tied: bool = True, learned_positions: bool = True, batch: int | None = None,
                       seq: int | None = None, optimizer: str = "adamw", momentum: float = 0.9,
                       ema: bool = False, act_bytes: int = FLOAT) -> list[Need]:
    """Training a GPT: parameter state, and (with ``batch`` and ``seq``) one micro-batch's activations.

    Activations per token: about ``8 d + 2 m`` values a block keeps for the backward pass (norm
    inputs and outputs, q/k/v, attention output, MLP hidden before and after GELU), the embeddings,
    and three ``V``-wide rows (logits, their log-softmax and gradient).
    """
    parts = transformer_parameters(vocab, dim, layers, block, mlp_dim=mlp_dim, tied=tied,
                                   learned_positions=learned_positions)
    copies = state_factor(optimizer, momentum=momentum, ema=ema)
    total = sum(parts.values())
    main = max(parts, key=parts.get)
    lower = {"embeddings": "--dim (or the vocabulary size)", "positions": "--block-size",
             "blocks": "--dim or --layers"}[main]
    needs = [Need(f"{total:,} parameters with gradients and optimizer state", total * FLOAT * copies, lower)]
    if not learned_positions:  # the sinusoidal table is a buffer
        needs.append(Need("the position table", block * dim * FLOAT, "--block-size"))
    if batch and seq:
        m = mlp_dim or 4 * dim
        tokens = batch * seq
        needs.append(Need(f"activations of {batch} x {seq} tokens", tokens * (layers * (8 * dim + 2 * m) + 2 * dim)
                          * act_bytes, "--batch-size or --block-size"))
        needs.append(Need(f"logits of {batch} x {seq} tokens over {vocab:,} words", tokens * vocab * 3 * FLOAT,
                          "--batch-size or --block-size"))
    return needs


def rnn_training_needs(vocab: int, embed: int, hidden: int, layers: int, cell: str, *, tied: bool = False,
                       context: int = 5, direct: bool = False, batch: int | None = None, seq: int | None = None,
                       optimizer: str = "adamw", momentum: float = 0.9, ema: bool = False,
                       act_bytes: int = FLOAT) -> list[Need]:
    """Training a recurrent (or feed-forward n-gram) LM: parameter state and one window's activations.

    Activations per token: the embedding, per layer the gates and the outputs the fused kernels keep
    (``gates + 2`` values of width ``hidden``), and three ``V``-wide rows for the logits.
    """
    parts = recurrent_parameters(vocab, embed, hidden, layers, cell, tied=tied, context=context, direct=direct)
    total = sum(parts.values())
    main = max(parts, key=parts.get)
    lower = {"embeddings": "--embed (or the vocabulary size)", "layers": "--hidden or --layers",
             "output": "--hidden (or the vocabulary size)"}[main]
    needs = [Need(f"{total:,} parameters with gradients and optimizer state",
                  total * FLOAT * state_factor(optimizer, momentum=momentum, ema=ema), lower)]
    if batch and seq:
        tokens = batch * seq
        if cell == "ffnn":
            width = 2 * context * embed + 2 * hidden
        else:
            width = 2 * embed + layers * hidden * (GATES.get(cell, 4) + 2)
        needs.append(Need(f"activations of {batch} x {seq} tokens", tokens * width * act_bytes,
                          "--batch-size, --seq-len or --hidden"))
        needs.append(Need(f"logits of {batch} x {seq} tokens over {vocab:,} words", tokens * vocab * 3 * FLOAT,
                          "--batch-size or --seq-len"))
    return needs


def decoding_needs(rows: int, vocab: int, steps: int, *, row_state_bytes: int = 0, beams: bool = False) -> list[Need]:
    """Decoding ``rows`` sequences (prompts x beams or samples) for ``steps`` tokens.

    Per step about four ``rows x V`` float arrays (logits, log-probabilities, scores, the candidates);
    the model's state per row (a KV cache, twice while beams are reordered; recurrent states); and
    the tokens and their log-probabilities each row keeps in Python lists (about 40 bytes a token;
    beam search holds the live beams and twice as many candidates).
    """
    lower = "--num-beams or --batch-size" if beams else "--num-return or --batch-size"
    return [Need(f"scores of {rows:,} rows over {vocab:,} words", rows * vocab * 4 * FLOAT, lower),
            Need(f"model state of {rows:,} rows", rows * row_state_bytes, lower),
            Need(f"{rows:,} rows of up to {steps:,} tokens", (3 if beams else 1) * rows * steps * 40,
                 f"--max-new-tokens, {lower}")]


def vector_tables_needs(vocab: int, dim: int, copies: float, *, what: str = "word vectors") -> list[Need]:
    """Word-vector training (word2vec, GloVe): ``copies`` float32 ``vocab x dim`` tables (vectors,
    output or context vectors, optimizer state, initialization buffers)."""
    return [Need(f"{what} of {vocab:,} words x {dim:,} dimensions", int(vocab * dim * FLOAT * copies),
                 "--dim (or raise --min-count, set --max-vocab)")]


def dense_needs(what: str, rows: int, cols: int, *, copies: float = 1, itemsize: int = FLOAT,
                lower: str) -> Need:
    """``copies`` dense ``rows x cols`` arrays of ``itemsize`` bytes."""
    return Need(what, int(rows * cols * itemsize * copies), lower)
