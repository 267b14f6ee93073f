"""Knowledge distillation: the losses, the teacher's cached outputs, and the students.

The classification loss (Hinton et al. 2015, section 2), per batch::

    L = alpha * T^2 * mean_b KL(softmax(t_b / T) || softmax(s_b / T))     soft targets, every example
      + (1 - alpha) * mean_{b labeled} CE(s_b, y_b)                      hard labels, labeled examples only
      + w_hidden * mean_b (1 - cos(u_b^s, u_b^t))                        optional: what the heads read
      + w_mse * mean_b ||s_b - t_b||^2 / C                               optional: logit regression (Tang et al.)

``t``/``s`` are the teacher's and student's logits; the ``T^2`` keeps the soft term's gradients the
size of the hard term's as ``T`` grows (Hinton et al.: the soft gradients scale as ``1/T^2``).
``u`` is the pooled vector a head reads (DistilBERT's cosine loss aligns hidden states; here the
pooled ones, which can be cached). Unlabeled and augmented examples carry the label ``-100`` and
enter the soft terms only: their class reaches the student through the teacher alone.

The language-model loss is the same per position over the vocabulary (:func:`lm_distill_loss`),
with the teacher's distribution optionally truncated to its ``k`` most likely tokens.

The teacher runs once over the transfer set: :func:`teacher_outputs` writes its logits and pooled
vectors to ``.npy`` files named by a hash of the teacher's weights and the inputs, and maps them into
memory (numpy memmap) for every epoch and every student that reads the same set. A language model
teacher runs once over the training token stream the same way (:func:`lm_teacher_outputs`: its
next-token log-probabilities at every position, float16, the whole distribution for a vocabulary of
<= 256 tokens and the top ``k`` with their ids otherwise), and a student batch gathers the rows at its
positions.

Students (:func:`build_student`), all :class:`~dlnlp.transfer.model.FineTuned` models, so a student's
directory is a fine-tuned one that ``dlnlp predict`` and ``dlnlp evaluate`` read:

* ``bert:layers=K`` (no ``dim``): the teacher's architecture with ``K`` layers initialized from the
  teacher's layers ``round(linspace(0, L - 1, K))`` (for 12 -> 6 that is DistilBERT's 0, 2, 4, 7, 9, 11;
  for 6 -> 3 it is 0, 2, 5), with its embeddings, pooler and head copied (Sanh et al. 2019);
* ``bert:layers=L,dim=D[,heads=H,intermediate=I,pool=P]``: a BERT of that shape from scratch, on the
  teacher's tokenizer;
* ``bilstm:[embed=E,hidden=H,layers=N,vocab=V,min_count=M,vectors=FILE,dropout=P]``: Tang et al.'s
  BiLSTM with max-pooling, on a word vocabulary built from the transfer set, its embeddings
  optionally from a word2vec / GloVe / dlnlp vectors file;
* ``same[:init=pretrained|random]``: the teacher's own architecture (born-again networks, Furlanello
  et al. 2018), from the backbone the teacher was fine-tuned from (``pretrained``) or from scratch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlnlp.errors import InputError, ModelDirError, OptionError, UsageError
from dlnlp.kernels.device import autocast
from dlnlp.models.registry import get_family
from dlnlp.transfer.backbone import Backbone, content_hash, load_backbone
from dlnlp.transfer.data import Encoded, collate, inference_batches
from dlnlp.transfer.model import IGNORE_INDEX, FineTuned, HeadConfig

STUDENT_KINDS = ("bert", "bilstm", "same")


# --- losses --------------------------------------------------------------------------------------

def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, summed over classes, mean over the other axes."""
    t = teacher_logits.float() / temperature
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return temperature * temperature * kl.mean()


def hard_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labeled rows (label != -100); 0 for a batch with none."""
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


@dataclass
class DistillLoss:
    """The weights of the loss in the module docstring."""

    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    mse_weight: float = 0.0

    def validate(self) -> DistillLoss:
        if not self.temperature > 0:
            raise OptionError(f"--temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise OptionError(f"--alpha must be in [0, 1], got {self.alpha}")
        for option, value in (("--hidden-weight", self.hidden_weight), ("--mse-weight", self.mse_weight)):
            if not value >= 0:
                raise OptionError(f"{option} must be >= 0, got {value}")
        return self

    def __call__(self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 pooled: torch.Tensor | None = None, teacher_pooled: torch.Tensor | None = None) -> torch.Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.alpha > 0:
            loss = loss + self.alpha * soft_target_loss(logits, teacher_logits, self.temperature)
        if self.alpha < 1:
            loss = loss + (1 - self.alpha) * hard_label_loss(logits, labels)
        if self.hidden_weight:
            cosine = F.cosine_similarity(pooled.float(), teacher_pooled.float(), dim=-1)
            loss = loss + self.hidden_weight * (1 - cosine).mean()
        if self.mse_weight:
            loss = loss + self.mse_weight * F.mse_loss(logits.float(), teacher_logits.float())
        return loss


def lm_distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                    temperature: float = 1.0, alpha: float = 0.5, top_k: int | None = None,
                    teacher_index: torch.Tensor | None = None) -> torch.Tensor:
    """Token-level distillation of a language model: per position ``alpha * T^2 * KL(p_t || q_s)`` plus
    ``(1 - alpha) * CE(q_s, next token)``, both averaged over positions.

    With ``top_k`` the teacher's distribution is cut to its ``k`` most likely tokens and renormalized
    over them, ``p_t,i = softmax_{j in topk}(t_j / T)_i`` (zero elsewhere); the student's stays a full
    softmax, so the term is ``sum_{i in topk} p_t,i (log p_t,i - log q_s,i)``. The teacher then needs
    ``k`` logits per position instead of the vocabulary (Sanh et al. and MiniLLM-style truncations).

    ``teacher_index`` (same shape as ``teacher_logits``, ``[..., K]``) gives a sparse teacher: its
    scores at those vocabulary ids only, e.g. the top ``K`` of a cache (:func:`lm_teacher_outputs`).
    They are treated as the truncated distribution above (renormalized over the ``K`` ids, cut further
    to ``top_k`` when that is smaller), so a cached top-``k`` gives the same loss as the full logits with
    ``top_k=k``. Log-probabilities serve as well as logits: the softmax does not see a shift.
    """
    s = student_logits.float().flatten(0, -2)
    t = teacher_logits.float().flatten(0, -2)
    log_q = F.log_softmax(s / temperature, dim=-1)
    index = None if teacher_index is None else teacher_index.flatten(0, -2).long()
    if top_k is not None and 0 < top_k < t.shape[-1]:
        t, column = t.topk(top_k, dim=-1)
        index = column if index is None else index.gather(-1, column)
    log_p = F.log_softmax(t / temperature, dim=-1)
    if index is not None:
        log_q = log_q.gather(-1, index)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    loss = alpha * temperature * temperature * kl
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(s, targets.reshape(-1), ignore_index=IGNORE_INDEX)
    return loss


def student_outputs(model: FineTuned, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled vector the head reads) of a classification model on a collated batch."""
    x = model.layer_inputs(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))
    pooled = model.head.combine(x)
    return model.head.classifier(model.head.dropout(pooled)), pooled


# --- the teacher ---------------------------------------------------------------------------------

def _hf_classifier(directory: Path) -> tuple[FineTuned, str]:
    """An HF ``*ForSequenceClassification`` BERT checkpoint as a FineTuned model: the encoder through
    dlnlp's importer, the classifier on the pooled [CLS] output (HF's ``pooler_output``)."""
    from safetensors.torch import save_file

    from dlnlp.io.hf import read_hf_weights

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    state = read_hf_weights(directory)
    weight, bias = state.pop("classifier.weight", None), state.pop("classifier.bias", None)
    if weight is None or bias is None:
        raise InputError(f"{directory}: an HF sequence-classification checkpoint has classifier.weight and .bias")
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(directory):
            path = directory / name
            if path.is_file() and not name.endswith((".safetensors", ".bin", ".pt", ".h5", ".msgpack")):
                (Path(tmp) / name).write_bytes(path.read_bytes())
        save_file({k: v.contiguous() for k, v in state.items()}, str(Path(tmp) / "model.safetensors"))
        backbone = load_backbone(tmp)
    backbone.source = {"path": str(directory.resolve()), "sha256": content_hash(directory), "format": "hf"}
    id2label = config.get("id2label") or {}
    labels = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(weight.shape[0])]
    head = HeadConfig(task="classify", num_labels=weight.shape[0], dim=backbone.dim,
                      pool="pooler" if backbone.has_pooler else "cls",
                      dropout=float(config.get("classifier_dropout") or config.get("hidden_dropout_prob") or 0.1))
    model = FineTuned(backbone, head, labels)
    with torch.no_grad():
        model.head.classifier.weight.copy_(weight.float())
        model.head.classifier.bias.copy_(bias.float())
    return model, content_hash(directory)


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> tuple[FineTuned, dict[str, Any]]:
    """A classifier to distill: a ``dlnlp finetune`` (or ``distill``) output, or an HF BERT
    sequence-classification checkpoint. Returns the model in eval mode and ``{"identity": hash, "path",
    "config"}``; the identity changes whenever anything that changes its outputs does."""
    from dlnlp.transfer.saved import load_finetuned

    directory = Path(path)
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{directory}: not a teacher (a dlnlp finetune output or an HF sequence-classification "
                            f"checkpoint): {exc}") from None
    if config.get("format_version") is not None and "backbone" in config:  # a dlnlp fine-tuned directory
        model, config = load_finetuned(directory, device)
        if config["task"] not in ("classify", "pair"):
            raise UsageError(f"{directory}: a {config['task']!r} model; distill reads classify and pair teachers")
        identity = content_hash(directory) + str(config["backbone"]["source"].get("sha256"))
    elif any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        model, identity = _hf_classifier(directory)
        model = model.to(device).eval()
        config = {"task": "classify", "max_len": min(model.backbone.max_len, 512), "labels": model.labels}
    else:
        raise ModelDirError(f"{directory}: not a teacher (a dlnlp finetune output or an HF *ForSequenceClassification "
                            "checkpoint)")
    return model, {"identity": hashlib.sha256(identity.encode()).hexdigest(), "path": str(directory.resolve()),
                   "config": config}


@dataclass
class TeacherOutputs:
    """The teacher's logits ``[N, C]`` and pooled vectors ``[N, D]`` (float32, memory-mapped)."""

    logits: np.ndarray
    pooled: np.ndarray
    path: Path
    cached: bool  # read from an earlier run's files


def transfer_key(identity: str, data: Encoded, extra: str = "") -> str:
    """A name for a teacher's outputs on ``data``: a hash of the teacher's identity and the input ids."""
    digest = hashlib.sha256(identity.encode() + b"\0" + extra.encode() + b"\0")
    for row in data.rows:
        digest.update(np.asarray(row.ids, dtype=np.int32).tobytes() + b"|")
        if getattr(row, "types", None):
            digest.update(np.asarray(row.types, dtype=np.int8).tobytes())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def default_cache_dir() -> Path:
    """``$DLNLP_CACHE_DIR/teacher``, else ``~/.cache/dlnlp/teacher``."""
    root = os.environ.get("DLNLP_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "dlnlp") / "teacher"


def cached_arrays(cache_dir: str | Path, key: str, arrays: dict[str, tuple[Any, tuple[int, ...]]],
                  fill: Callable[[dict[str, np.ndarray]], None]) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays ``cache_dir/KEY.NAME.npy`` (``NAME -> (dtype, shape)``), memory-mapped, and whether they were
    read from an earlier run: read when every file exists with its shape, else created by ``fill`` (given
    writable memmaps) under temporary names and renamed, the first name last, so a killed run leaves no
    half-filled cache behind."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: cache_dir / f"{key}.{name}.npy" for name in arrays}
    if all(path.is_file() for path in paths.values()):
        loaded = {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
        if all(loaded[name].shape == tuple(shape) for name, (_, shape) in arrays.items()):
            return loaded, True
    temporary = {name: cache_dir / f".{key}.{os.getpid()}.{name}.npy" for name in arrays}
    try:
        out = {name: np.lib.format.open_memmap(temporary[name], mode="w+", dtype=dtype, shape=tuple(shape))
               for name, (dtype, shape) in arrays.items()}
        fill(out)
        for array in out.values():
            array.flush()
        del out  # unmapped before the renames
        for name in reversed(list(arrays)):
            os.replace(temporary[name], paths[name])
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    return {name: np.load(path, mmap_mode="r") for name, path in paths.items()}, False


@torch.no_grad()
def teacher_outputs(teacher: FineTuned, data: Encoded, cache_dir: str | Path, key: str, *, batch_size: int = 64,
                    dtype: torch.dtype | None = None) -> TeacherOutputs:
    """The teacher's outputs on ``data``, computed once into ``cache_dir/KEY.{logits,pooled}.npy`` and
    memory-mapped; a second call with the same key reads the files (:func:`cached_arrays`)."""
    teacher.eval()
    device = next(teacher.parameters()).device
    n, classes, dim = len(data), teacher.head.classifier.out_features, teacher.head.config.input_dim

    def fill(out: dict[str, np.ndarray]) -> None:
        backbone = teacher.backbone
        for index in inference_batches(data.lengths(), batch_size):
            batch = collate([data.rows[i] for i in index], None, backbone.pad_id, backbone.segments)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, dtype):
                logits, pooled = student_outputs(teacher, batch)
            out["logits"][index] = logits.float().cpu().numpy()
            out["pooled"][index] = pooled.float().cpu().numpy()

    arrays, cached = cached_arrays(cache_dir, key, {"logits": (np.float32, (n, classes)),
                                                    "pooled": (np.float32, (n, dim))}, fill)
    return TeacherOutputs(arrays["logits"], arrays["pooled"], Path(cache_dir) / f"{key}.logits.npy", cached)


# --- a language model teacher's next-token distributions over a token stream ---------------------

FULL_VOCAB = 256   # a vocabulary this small (a character model) is cached whole
CACHE_TOP_K = 64   # else the teacher's k most likely tokens per position, when --top-k does not say
MAX_CACHE_ELEMENTS = 1 << 25  # logits computed in one teacher pass while caching (128 MiB of float32)


def lm_cache_k(vocab_size: int, top_k: int | None) -> int:
    """The teacher log-probabilities a position keeps in the cache: all ``V`` of them when ``V <= 256``
    (a character model: at most 512 bytes a position in float16; any ``--top-k`` then truncates when
    the loss reads them), else the ``--top-k`` most likely (``CACHE_TOP_K`` = 64 when not given; they
    are then also the loss's truncation) with their token ids."""
    if vocab_size <= FULL_VOCAB:
        return vocab_size
    return min(top_k or CACHE_TOP_K, vocab_size)


def stream_windows(n: int, block: int) -> list[tuple[int, int, int]]:
    """``(start, keep_from, keep_to)``: windows of ``block`` tokens over a stream of ``n`` at stride
    ``block // 2`` (the last one ends at ``n``), each keeping the positions ``[keep_from, keep_to)`` no
    earlier window kept. The first keeps its whole window; every other keeps its second half, so each
    position ``p`` it keeps sees ``p - start >= block // 2`` tokens before it, in a window of its own."""
    if n <= block:
        return [(0, 0, n)]
    stride = max(1, block // 2)
    starts = list(range(0, n - block + 1, stride))
    if starts[-1] != n - block:
        starts.append(n - block)
    out, covered = [], 0
    for start in starts:
        out.append((start, covered, start + block))
        covered = start + block
    return out


def stream_segments(n: int, segments: int, burn_in: int) -> list[tuple[int, int, int]]:
    """``(start, keep_from, keep_to)`` for a recurrent teacher run as ``segments`` parallel streams: segment
    ``j`` keeps ``[j * L, (j + 1) * L)`` (``L = ceil(n / segments)``) and starts reading ``burn_in`` tokens
    earlier (from 0 for the first), so its state has seen at least ``burn_in`` tokens before any position
    it keeps (all of them, with ``segments=1``: one stateful pass over the stream)."""
    length = -(-n // max(1, segments))
    return [(max(0, f - burn_in), f, min(f + length, n)) for f in range(0, n, length)]


@dataclass
class LMTeacherOutputs:
    """A teacher's next-token log-probabilities at every position of a token stream (memory-mapped):
    row ``p`` is ``log p_teacher(. | tokens[.. p])``, the distribution of token ``p + 1``. ``logp`` is
    ``[n, k]`` float16; ``index`` ``[n, k]`` the token ids of its columns, None when ``k`` is the whole
    vocabulary (column ``i`` is token ``i``)."""

    logp: np.ndarray
    index: np.ndarray | None
    path: Path
    cached: bool  # read from an earlier run's files
    context: str  # how each position's context was read (see :func:`lm_teacher_outputs`)

    @property
    def k(self) -> int:
        return int(self.logp.shape[1])

    def gather(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows at ``positions`` (any shape ``S``) as float32 ``[*S, k]`` and int64 ids (or None)."""
        flat = np.asarray(positions, dtype=np.int64).reshape(-1)
        shape = (*np.shape(positions), self.k)
        values = torch.from_numpy(np.asarray(self.logp[flat], dtype=np.float32)).reshape(shape)
        if self.index is None:
            return values, None
        return values, torch.from_numpy(np.asarray(self.index[flat], dtype=np.int64)).reshape(shape)


def stream_key(identity: str, ids: np.ndarray, extra: str = "") -> str:
    """A name for a teacher's outputs on a token stream: a hash of its identity, ``extra`` (how they were
    computed) and the ids, as :func:`transfer_key` for a transfer set."""
    digest = hashlib.sha256(identity.encode() + b"\0" + extra.encode() + b"\0")
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()[:32]


def lm_context(teacher: torch.nn.Module, n: int, *, segments: int | None = None, burn_in: int = 512
               ) -> tuple[str, list[tuple[int, int, int]]]:
    """How :func:`lm_teacher_outputs` reads a stream of ``n`` tokens: a name (part of the cache key) and
    the ``(start, keep_from, keep_to)`` windows (GPT) or segments (recurrent)."""
    block = getattr(teacher.config, "block_size", None)
    if not getattr(teacher, "stateful", False) and block:
        return f"windows:block={block},stride={max(1, block // 2)}", stream_windows(n, block)
    if segments is None:  # parallel streams of >= 8192 tokens each, at most 64
        segments = max(1, min(64, n // 8192))
    return f"stateful:segments={segments},burn_in={burn_in}", stream_segments(n, segments, burn_in)


@torch.no_grad()
def lm_teacher_outputs(teacher: torch.nn.Module, ids: np.ndarray, cache_dir: str | Path, key: str, *, k: int,
                       batch_size: int = 64, dtype: torch.dtype | None = None, segments: int | None = None,
                       burn_in: int = 512, chunk: int = 256) -> LMTeacherOutputs:
    """A language model teacher's next-token log-probabilities over the stream ``ids``, computed once into
    ``cache_dir/KEY.lm-logp.npy`` (and ``KEY.lm-index.npy`` for a top-``k``) and memory-mapped; a second
    call with the same key reads the files. ``key`` should name the teacher, the ids, ``k`` and the
    context (:func:`stream_key`, :func:`lm_context`).

    The context each position sees (:func:`lm_context`):

    * a GPT with block size ``B`` reads overlapping windows of ``B`` tokens at stride ``B // 2``
      (:func:`stream_windows`), ``batch_size`` windows a forward pass, and keeps each window's second
      half (all of the first): every cached position had at least ``B // 2`` tokens of context (the
      first ``B // 2`` of the stream, all there is), at most ``B - 1``;
    * a recurrent teacher (RNN/GRU/LSTM, the feed-forward n-gram LM) runs statefully over the stream,
      ``chunk`` tokens at a time, as ``segments`` parallel streams each started ``burn_in`` tokens before
      the part it keeps (:func:`stream_segments`; default one segment per 8,192 tokens, at most 64).

    ``k`` < vocabulary: the top ``k`` log-probabilities, largest first, with their ids (int16/int32).
    Stored as float16 log-probabilities (the full-softmax ones, so any temperature can be applied later).
    """
    n = len(ids)
    context, windows = lm_context(teacher, n, segments=segments, burn_in=burn_in)
    vocab = int(teacher.config.vocab_size)
    k = min(k, vocab)
    sparse = k < vocab
    index_dtype = np.int16 if vocab <= np.iinfo(np.int16).max + 1 else np.int32
    teacher.eval()
    device = next(teacher.parameters()).device
    tokens = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))

    def scores(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        logp = F.log_softmax(logits.float(), dim=-1)
        if not sparse:
            return logp.to(torch.float16).cpu().numpy(), None
        values, top = logp.topk(k, dim=-1)
        return values.to(torch.float16).cpu().numpy(), top.cpu().numpy().astype(index_dtype)

    def fill(out: dict[str, np.ndarray]) -> None:
        def write(positions: np.ndarray, values: np.ndarray, top: np.ndarray | None) -> None:
            out["lm-logp"][positions] = values
            if top is not None:
                out["lm-index"][positions] = top

        if context.startswith("windows"):
            # windows a pass: batch_size, fewer when their logits would pass MAX_CACHE_ELEMENTS floats
            width = windows[0][2] - windows[0][0]
            size = max(1, min(batch_size, MAX_CACHE_ELEMENTS // (width * vocab)))
            for i in range(0, len(windows), size):
                group = windows[i:i + size]
                x = torch.stack([tokens[start:end] for start, _, end in group]).to(device)  # all one length
                with autocast(device, dtype):
                    logits = lm_logits(teacher, x)
                values, top = scores(logits)
                for row, (start, keep_from, keep_to) in enumerate(group):
                    cut = slice(keep_from - start, keep_to - start)
                    write(np.arange(keep_from, keep_to), values[row, cut], None if top is None else top[row, cut])
        else:
            starts = np.array([w[0] for w in windows], dtype=np.int64)
            keep_from = np.array([w[1] for w in windows], dtype=np.int64)
            keep_to = np.array([w[2] for w in windows], dtype=np.int64)
            width = int((keep_to - starts).max())
            rows = torch.zeros(len(windows), width, dtype=torch.int64)  # zero-padded at the end (causal)
            for row, (start, _, end) in enumerate(windows):
                rows[row, :end - start] = tokens[start:end]
            state = None
            step = max(1, min(chunk, MAX_CACHE_ELEMENTS // (len(windows) * vocab)))
            for c in range(0, width, step):
                x = rows[:, c:c + step].to(device)
                with autocast(device, dtype):
                    logits, state = teacher(x, state=state)
                values, top = scores(logits)
                positions = starts[:, None] + np.arange(c, c + x.shape[1])[None, :]
                keep = (positions >= keep_from[:, None]) & (positions < keep_to[:, None])
                write(positions[keep], values[keep], None if top is None else top[keep])

    arrays = {"lm-logp": (np.float16, (n, k))}
    if sparse:
        arrays["lm-index"] = (index_dtype, (n, k))
    out, cached = cached_arrays(cache_dir, key, arrays, fill)
    return LMTeacherOutputs(out["lm-logp"], out.get("lm-index"), Path(cache_dir) / f"{key}.lm-logp.npy", cached,
                            context)


def lm_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A language model's logits ``[B, T, V]`` on ``x`` (a GPT's, or a recurrent one's from a zero state)."""
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


# --- students ------------------------------------------------------------------------------------

def parse_student(spec: str) -> tuple[str, dict[str, str]]:
    """``"bert:layers=3,dim=256"`` -> ``("bert", {"layers": "3", "dim": "256"})``."""
    architecture, _, rest = spec.partition(":")
    architecture = architecture.strip()
    if architecture not in STUDENT_KINDS:
        raise UsageError(f"--student must start with one of {', '.join(STUDENT_KINDS)} (e.g. bert:layers=3, "
                         f"bilstm:hidden=150, same), got {spec!r}")
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key or not value:
            raise UsageError(f"--student {spec!r}: expected key=value pairs after '{architecture}:', got {part!r}")
        options[key.strip()] = value.strip()
    return architecture, options


_ALLOWED = {
    "bert": {"layers", "dim", "heads", "intermediate", "pool", "dropout"},
    "bilstm": {"embed", "hidden", "layers", "vocab", "min_count", "vectors", "dropout"},
    "same": {"init"},
}


def _int(options: dict[str, str], key: str, default: int | None, spec: str) -> int | None:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        raise OptionError(f"--student {spec}: {key} must be an integer, got {options[key]!r}") from None
    if value < 1:
        raise OptionError(f"--student {spec}: {key} must be >= 1, got {value}")
    return value


def _float(options: dict[str, str], key: str, default: float, spec: str) -> float:
    try:
        return float(options.get(key, default))
    except ValueError:
        raise OptionError(f"--student {spec}: {key} must be a number, got {options[key]!r}") from None


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layers a ``student_layers``-layer student starts from: evenly spaced, first and last
    kept (``round(linspace(0, L - 1, K))``; DistilBERT's 0, 2, 4, 7, 9, 11 for 12 -> 6)."""
    if not 1 <= student_layers <= teacher_layers:
        raise OptionError(f"a student initialized from the teacher has 1..{teacher_layers} layers (the teacher's), "
                          f"got {student_layers}")
    return [int(i) for i in np.round(np.linspace(0, teacher_layers - 1, student_layers))]


def _blocks_name(model: torch.nn.Module, count: int) -> str:
    for name, child in model.named_children():
        if isinstance(child, torch.nn.ModuleList) and len(child) == count:
            return name
    raise ModelDirError("the teacher's layers are not a stack a student can be cut from")


def student_from_teacher(teacher: FineTuned, layers: int) -> FineTuned:
    """The teacher with ``layers`` of its layers (:func:`layer_map`): embeddings, those layers, what sits
    above them (BERT's pooler) and the head copied, so before training the student's first layer
    computes the teacher's layer ``map[0]`` and each layer ``i`` the teacher's layer ``map[i]`` function."""
    backbone = teacher.backbone
    model_config = backbone.config["model"]
    if "n_layer" not in model_config:
        raise UsageError(f"--student bert:layers=K cuts a transformer's layers; the teacher's backbone is a "
                         f"{backbone.config.get('kind')!r} model")
    family = get_family(backbone.config["kind"])
    total = int(model_config["n_layer"])
    chosen = layer_map(total, layers)
    student_config = {**model_config, "n_layer": layers}
    net = family.build(family.config_class.from_dict(student_config))
    if hasattr(net, "drop_pretraining_heads"):
        net.drop_pretraining_heads()
        student_config = net.config.to_dict()
    blocks = _blocks_name(backbone.model, total)
    source = backbone.model.state_dict()
    state = {}
    for name in net.state_dict():
        if name.startswith(blocks + "."):
            _, index, rest = name.split(".", 2)
            state[name] = source[f"{blocks}.{chosen[int(index)]}.{rest}"]
        else:
            state[name] = source[name]
    net.load_state_dict(state)
    config = {**backbone.config, "model": student_config}
    student_backbone = Backbone(net, backbone.codec, config, {**backbone.source, "init": f"teacher layers {chosen}"},
                                dict(backbone.codec_files))
    student = FineTuned(student_backbone, copy.deepcopy(teacher.config), teacher.labels)
    student.head.load_state_dict(teacher.head.state_dict())
    return student


def scratch_bert(teacher: FineTuned, options: dict[str, str], spec: str) -> FineTuned:
    """A BERT of the shape in ``options`` with fresh weights, reading the teacher's tokenizer."""
    from dlnlp.models.bert import KIND as BERT_KIND
    from dlnlp.models.bert import Bert, BertConfig

    backbone = teacher.backbone
    dim = _int(options, "dim", 256, spec)
    heads = _int(options, "heads", max(1, dim // 64), spec)
    if dim % heads:
        raise OptionError(f"--student {spec}: dim {dim} must be divisible by heads {heads}")
    vocab = backbone.codec.vocab_size if backbone.codec is not None else None
    if vocab is None or not backbone.segments:
        raise UsageError(f"--student {spec}: a BERT student reads the teacher's WordPiece tokenizer ([CLS], [SEP]); "
                         "this teacher has none")
    config = BertConfig(vocab_size=int(vocab), dim=dim, n_layer=_int(options, "layers", 4, spec), n_head=heads,
                        intermediate=_int(options, "intermediate", 4 * dim, spec),
                        max_len=min(backbone.max_len, 512), pad_id=backbone.pad_id,
                        dropout=_float(options, "dropout", 0.1, spec), mlm_head=False, nsp_head=False)
    net = Bert(config)
    source_config = {k: v for k, v in backbone.config.items() if k in ("level", "eos_id", "dlnlp_version")}
    full = {"kind": BERT_KIND, "format_version": 1, **source_config, "model": config.to_dict()}
    student_backbone = Backbone(net, backbone.codec, full, {"path": backbone.source.get("path"), "init": "random"},
                                dict(backbone.codec_files))
    pool = options.get("pool", "mean")
    head = HeadConfig(task=teacher.config.task, num_labels=teacher.config.num_labels, dim=dim, pool=pool,
                      dropout=_float(options, "dropout", 0.1, spec))
    return FineTuned(student_backbone, head, teacher.labels)


SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def word_tokenizer(texts: Sequence[str], size: int, min_count: int = 1) -> Any:
    """A word-level tokenizer (HF ``tokenizers`` WordLevel, BERT's lowercasing and punctuation split) over
    the ``size`` most frequent words of ``texts`` seen at least ``min_count`` times, after the specials
    ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    from dlnlp.tokenization.tokenizer import Tokenizer

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))
                      if word not in SPECIALS)
    words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
    words = [w for w in words if w not in SPECIALS][: max(size - len(SPECIALS), 0)]
    vocab = {token: i for i, token in enumerate([*SPECIALS, *words])}
    backend = HFTokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = splitter
    backend.add_special_tokens(list(SPECIALS))
    return Tokenizer(backend, "hf")


def bilstm_student(teacher: FineTuned, texts: Sequence[str], options: dict[str, str], spec: str) -> FineTuned:
    """Tang et al.'s BiLSTM (max-pooled) on a word vocabulary of ``texts`` (the transfer set)."""
    from dlnlp.io.vectors import load_vectors
    from dlnlp.models.bilstm import KIND as BILSTM_KIND
    from dlnlp.models.bilstm import BiLSTM, BiLSTMConfig
    from dlnlp.tokenization.text_codec import TokenizerCodec

    vectors = load_vectors(options["vectors"]) if "vectors" in options else None
    embed = _int(options, "embed", vectors.dim if vectors is not None else 128, spec)
    tokenizer = word_tokenizer(texts, _int(options, "vocab", 20000, spec), _int(options, "min_count", 1, spec))
    codec = TokenizerCodec(tokenizer)
    config = BiLSTMConfig(vocab_size=tokenizer.vocab_size, embed=embed, hidden=_int(options, "hidden", 150, spec),
                          layers=_int(options, "layers", 1, spec), dropout=_float(options, "dropout", 0.1, spec),
                          pad_id=tokenizer.pad_id, max_len=min(teacher.backbone.max_len, 512))
    net = BiLSTM(config)
    found = None
    if vectors is not None:
        words = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
        found = net.load_vectors(words, vectors)
    full = {"kind": BILSTM_KIND, "format_version": 1, "level": "tokenizer", "model": config.to_dict()}
    source = {"path": None, "init": "random", **({"vectors": options["vectors"], "vectors_found": found}
                                                  if vectors is not None else {})}
    # the tokenizer lives in memory only: its file is written from the backend, not copied from a path
    backbone = Backbone(net, codec, full, source, {"tokenizer.json": tokenizer.backend.to_str().encode("utf-8")})
    head = HeadConfig(task=teacher.config.task, num_labels=teacher.config.num_labels, dim=backbone.dim, pool="max",
                      dropout=_float(options, "dropout", 0.1, spec))
    return FineTuned(backbone, head, teacher.labels)


def same_as_teacher(teacher: FineTuned, teacher_config: dict[str, Any], options: dict[str, str],
                    spec: str) -> FineTuned:
    """A born-again student: the teacher's architecture and head, from the backbone the teacher was
    fine-tuned from (``init=pretrained``, the default) or from scratch (``init=random``)."""
    init = options.get("init", "pretrained")
    if init not in ("pretrained", "random"):
        raise OptionError(f"--student {spec}: init must be pretrained or random, got {init!r}")
    backbone = teacher.backbone
    source = backbone.source
    if init == "pretrained":
        path = source.get("path")
        if not path or not Path(path).is_dir() or source.get("init") not in (None, "pretrained"):
            raise InputError(f"--student {spec}: the backbone the teacher was fine-tuned from ({path}) is not at hand "
                             "or was not pretrained; give --student same:init=random")
        if source.get("sha256") and content_hash(path) != source["sha256"]:
            raise InputError(f"--student {spec}: the teacher's backbone {path} has changed since it was fine-tuned")
        fresh = load_backbone(path)
    else:
        family = get_family(backbone.config["kind"])
        net = family.build(family.config_class.from_dict(backbone.config["model"]))
        fresh = Backbone(net, backbone.codec, backbone.config, {**source, "init": "random"}, dict(backbone.codec_files))
    return FineTuned(fresh, copy.deepcopy(teacher.config), teacher.labels)


def build_student(spec: str, teacher: FineTuned, teacher_config: dict[str, Any], texts: Sequence[str]) -> FineTuned:
    """The student ``spec`` names (see the module docstring), on the CPU, in train mode; ``texts`` are the
    transfer set's (a word-level student's vocabulary comes from them)."""
    architecture, options = parse_student(spec)
    unknown = sorted(set(options) - _ALLOWED[architecture])
    if unknown:
        raise UsageError(f"--student {spec}: unknown setting {unknown[0]!r} for {architecture} "
                         f"(known: {', '.join(sorted(_ALLOWED[architecture]))})")
    if architecture == "bert" and "dim" not in options:
        if "layers" not in options:
            raise UsageError(f"--student {spec}: give layers=K (from the teacher's layers) or layers=L,dim=D")
        student = student_from_teacher(teacher, _int(options, "layers", None, spec))
    elif architecture == "bert":
        student = scratch_bert(teacher, options, spec)
    elif architecture == "bilstm":
        student = bilstm_student(teacher, texts, options, spec)
    else:
        student = same_as_teacher(teacher, teacher_config, options, spec)
    return student.cpu().train()
