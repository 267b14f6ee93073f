"""Using a BERT model directory on text: fill-mask, sentence embeddings, ranking lines by similarity.

Behind ``dlnlp bert fill-mask``, ``embed`` and ``similar``; usable from Python::

    bert = load_bert_text("minilm")
    for vectors in embed_lines(bert, open("sentences.txt"), pool="mean", normalize=True):
        ...                                   # float32 [batch, dim], in input order

Each text is encoded alone as ``[CLS] tokens [SEP]`` (segment 0), the way HF's tokenizers and
sentence-transformers do, truncated to the model's length (for embeddings: sentence-transformers'
``max_seq_length`` when the checkpoint had one, 256 for all-MiniLM-L6-v2). Lines are read in chunks
and each chunk is sorted by length into batches (as sentence-transformers sorts its input), so
batches carry little padding while the output keeps the input order and memory stays flat.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, ModelDirError, OptionError, UsageError, check_int
from dlnlp.kernels.device import resolve_device
from dlnlp.kernels.pooling import pool as pool_hidden
from dlnlp.models.bert import Bert, special_token_ids
from dlnlp.models.registry import load_model

POOLS = {"mean": "mean", "cls": "first"}  # --pool -> dlnlp.kernels.pooling
CHUNK_BATCHES = 8  # batches of lines sorted by length together


@dataclass
class BertText:
    """A BERT model with its tokenizer and the ids of its special tokens."""

    model: Bert
    tokenizer: Any
    directory: Path
    config: dict[str, Any]
    device: torch.device
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int | None

    @property
    def embed_length(self) -> int:
        """The length texts are embedded at: sentence-transformers' max_seq_length, else the model's."""
        limit = self.config.get("max_seq_length")
        if isinstance(limit, int) and limit > 2:
            return min(limit, self.model.config.max_len)
        return self.model.config.max_len


def load_bert_text(directory: str | Path, device: str = "auto") -> BertText:
    """Load a BERT model directory (any with ``kind: bert``) for reading text; it needs its tokenizer."""
    directory = Path(directory)
    loaded = load_model(directory, resolve_device(device), kind="bert")
    tokenizer = getattr(loaded.codec, "tokenizer", None)
    if tokenizer is None:
        raise ModelDirError(f"{directory}: no tokenizer.json, so it cannot read text (it was trained on ids)")
    ids = special_token_ids(tokenizer)
    if ids["[CLS]"] is None or ids["[SEP]"] is None:
        raise ModelDirError(f"{directory}/tokenizer.json: no [CLS] and [SEP] tokens (not a BERT WordPiece vocabulary)")
    pad = ids["[PAD]"] if ids["[PAD]"] is not None else loaded.model.config.pad_id
    return BertText(loaded.model, tokenizer, directory, loaded.config, next(loaded.model.parameters()).device,
                    ids["[CLS]"], ids["[SEP]"], pad, ids["[MASK]"])


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (1 = real token) ``[B, T]`` of id lists."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def encode_texts(bert: BertText, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """``[CLS] tokens [SEP]`` of each text, the tokens cut to ``max_len - 2``."""
    return [[bert.cls_id, *ids[: max_len - 2], bert.sep_id] for ids in bert.tokenizer.encode_batch(list(texts))]


def length_sorted_batches(rows: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``rows`` in batches of similar length (longest first)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_embed_args(bert: BertText, pool: str, layer: int | None, batch_size: int) -> int:
    """Refuse options out of range (naming them); returns ``--layer`` as an index into the hidden states."""
    if pool not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    check_int("--batch-size", batch_size, 1, 1 << 20)
    count = bert.model.config.n_layer + 1
    if layer is None:
        return count - 1
    if not -count <= layer < count:
        raise OptionError(f"--layer must be between {-count} and {count - 1} (0 = embeddings, {count - 1} or -1 = "
                          f"the top layer), got {layer}")
    return layer % count


@torch.no_grad()
def embed_lines(bert: BertText, lines: Iterable[str], *, pool: str = "mean", layer: int | None = None,
                normalize: bool = False, batch_size: int = 32, max_len: int | None = None) -> Iterator[np.ndarray]:
    """One vector per line, yielded as float32 arrays ``[n, dim]`` in input order (a few batches at a time).

    ``pool``: ``mean`` (the average over the real tokens, ``[CLS]`` and ``[SEP]`` included, as
    sentence-transformers' mean pooling) or ``cls`` (the ``[CLS]`` state); ``layer``: which hidden
    state (0 = embeddings, the top layer by default); ``normalize``: unit length (L2).
    """
    index = check_embed_args(bert, pool, layer, batch_size)
    max_len = max_len or bert.embed_length
    for chunk in _chunks(lines, batch_size * CHUNK_BATCHES):
        rows = encode_texts(bert, chunk, max_len)
        out = np.empty((len(rows), bert.model.config.dim), dtype=np.float32)
        for batch in length_sorted_batches(rows, batch_size):
            ids, mask = pad_batch([rows[i] for i in batch], bert.pad_id, bert.device)
            hidden = bert.model.features(ids, None, mask, layers=[index]).hidden_states[0]
            vectors = pool_hidden(hidden.float(), mask, POOLS[pool])
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[batch] = vectors.cpu().numpy()
        yield out


@dataclass
class Fill:
    """One candidate for a ``[MASK]``: the token, its id, its probability and the text with it in place."""

    token: str
    token_id: int
    score: float
    sequence: str


def check_fill_mask(bert: BertText, top_k: int) -> None:
    """Refuse a model without an MLM head or a [MASK] token, and a ``--top-k`` out of range."""
    if not bert.model.config.mlm_head:
        source = bert.config.get("source")
        architecture = source.get("architecture") if isinstance(source, dict) else None
        origin = f" (imported from a {architecture} checkpoint, which keeps the encoder only)" if architecture else ""
        raise ModelDirError(f"{bert.directory}: this BERT has no masked-LM head{origin}, so it cannot fill masks; "
                            "it still gives sentence vectors (dlnlp bert embed)")
    if bert.mask_id is None:
        raise ModelDirError(f"{bert.directory}/tokenizer.json: no [MASK] token")
    check_int("--top-k", top_k, 1, bert.model.config.vocab_size)


@torch.no_grad()
def fill_mask(bert: BertText, lines: Iterable[str], *, top_k: int = 5, batch_size: int = 32,
              where: str = "<stdin>") -> Iterator[tuple[str, list[list[Fill]]]]:
    """Each line with, for each ``[MASK]`` in it (left to right), the ``top_k`` most likely tokens, most
    likely first, with their probabilities (a softmax over the whole vocabulary, as transformers'
    fill-mask pipeline). A line without ``[MASK]`` or longer than the model reads is an InputError
    naming ``where`` and the line number."""
    check_fill_mask(bert, top_k)
    check_int("--batch-size", batch_size, 1, 1 << 20)
    max_len = bert.model.config.max_len
    done = 0
    for chunk in _chunks(lines, batch_size):
        rows = [[bert.cls_id, *ids, bert.sep_id] for ids in bert.tokenizer.encode_batch(chunk)]
        for offset, row in enumerate(rows):
            line_no = done + offset + 1
            if bert.mask_id not in row:
                raise InputError(f"{where}: line {line_no}: no [MASK] token to fill")
            if len(row) > max_len:
                raise InputError(f"{where}: line {line_no}: {len(row)} tokens with [CLS] and [SEP]; the model reads "
                                 f"at most {max_len}")
        done += len(rows)
        ids, mask = pad_batch(rows, bert.pad_id, bert.device)
        hidden = bert.model.encode(ids, None, mask)
        where_masked = ids == bert.mask_id
        probs = torch.softmax(bert.model.mlm_logits(hidden[where_masked]).float(), dim=-1)
        scores, tokens = probs.topk(top_k, dim=-1)
        scores, tokens = scores.cpu().tolist(), tokens.cpu().tolist()
        at = 0
        for line, row in zip(chunk, rows, strict=True):
            fills = []
            for position in (p for p, token in enumerate(row) if token == bert.mask_id):
                candidates = []
                for score, token in zip(scores[at], tokens[at], strict=True):
                    filled = row[1:-1]
                    filled[position - 1] = token
                    candidates.append(Fill(bert.tokenizer.id_to_token(token), token, score,
                                           bert.tokenizer.decode(filled)))
                fills.append(candidates)
                at += 1
            yield line, fills


def rank_lines(bert: BertText, query: str, lines: Iterable[str], *, top: int = 10, pool: str = "mean",
               layer: int | None = None, batch_size: int = 32) -> list[tuple[float, int, str]]:
    """The ``top`` lines most similar to ``query`` by cosine of their embeddings: (cosine, line number, line),
    best first; only the best ``top`` are kept while the lines stream by."""
    check_int("--top", top, 1, 1 << 40)
    (query_vector,) = next(embed_lines(bert, [query], pool=pool, layer=layer, normalize=True))
    best: list[tuple[float, int, str]] = []  # a min-heap of (cosine, -line number, line)
    number = 0
    for chunk in _chunks(lines, batch_size * CHUNK_BATCHES):
        vectors = np.concatenate(list(embed_lines(bert, chunk, pool=pool, layer=layer, normalize=True,
                                                  batch_size=batch_size)))
        for cosine, line in zip((vectors @ query_vector).tolist(), chunk, strict=True):
            number += 1
            item = (cosine, -number, line)  # on a tie the earlier line ranks first
            if len(best) < top:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
    return [(cosine, -negative, line) for cosine, negative, line in sorted(best, reverse=True)]
