"""BERT pretraining data: sentence-pair sequences with dynamic masking, over memory-mapped id shards.

The corpus is tokenized once (a WordPiece tokenizer with ``[PAD] [UNK] [CLS] [SEP] [MASK]``) into
``DIR/data/``, next to what :mod:`dlnlp.training.data` spools for language models:

* ``tokens{i}.bin``: the ids of every sentence, one after another (``uint16`` or ``uint32``);
* ``sentences{i}.bin``: ``int64``, the end offset (in tokens) of each sentence;
* ``documents{i}.bin``: ``int64``, the end (in sentences) of each document;
* ``meta.json``: dtype, vocabulary size, special ids and which sentences are train and validation.

Each is read back through ``np.memmap``, so the corpus never has to fit in memory. A document is a
run of non-blank lines (one sentence a line) ended by a blank line, as Google's
``create_pretraining_data.py`` reads its input; with ``doc_per_line`` each line is a document, cut
into sentences after ``.``, ``!`` or ``?`` followed by white space.

Sequences (:func:`build_pairs`) follow ``create_instances_from_document``: sentences of a document
are gathered up to a target length (the maximum, or with probability ``short_seq_prob`` a random
length from 2 on); a random number of leading sentences is segment A, the rest B. Next-sentence
prediction (``nsp``) replaces B half the time by a run of sentences from a random other document
(label 1) and puts the unused sentences back; sentence-order prediction (``sop``, ALBERT) swaps A
and B half the time (label 1); ``none`` packs one segment. The pair is truncated, one token at a
time from the front or back of the longer segment, to ``max_len`` with ``[CLS] A [SEP] B [SEP]``.
Where this differs from Google's script, and why: the short target is drawn again for every
sequence, not once per document (a corpus without blank lines is one document); a chunk of one
sentence is split inside the sentence rather than always given a random B (keeps the labels
balanced; SOP needs two parts); random replacement tokens are never special tokens.

Masking (:func:`mask_tokens`) is dynamic: every time a sequence is drawn, 15% of its tokens
(rounded, at least one) are selected, never ``[CLS]``, ``[SEP]``, ``[MASK]`` or padding; of those
80% become ``[MASK]``, 10% a random token, 10% stay; labels are the original ids there and -100
elsewhere. Whole-word masking selects words (a token and its following ``##`` pieces) until the
count is reached, skipping a word that would exceed it. Every draw is seeded from (seed, epoch,
batch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, OptionError, UsageError
from dlnlp.io.corpus import CorpusOptions, describe_inputs, iter_line_blocks
from dlnlp.io.shards import INDEX_NAME, TokenShards, file_sha256, shard_directory
from dlnlp.models.bert import IGNORE_INDEX, SPECIAL_TOKENS
from dlnlp.training.data import DATA_DIR, META_NAME, TokenWriter, dtype_for, open_tokens, shard_stream

NEXT_SENTENCE = ("nsp", "sop", "none")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MASK_STREAM, _PAIR_STREAM, _EVAL_STREAM = 1, 2, 3  # separate random streams drawn from one seed


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, where: str = "--tokenizer") -> SpecialIds:
        """The ids of BERT's special tokens; an error naming the missing ones otherwise."""
        ids = {name: tokenizer.token_to_id(name) for name in SPECIAL_TOKENS}
        missing = [name for name, value in ids.items() if value is None]
        if missing:
            raise InputError(f"{where}: the tokenizer has no {', '.join(missing)}; BERT needs "
                             f"{' '.join(SPECIAL_TOKENS)} (dlnlp tokenize train --model wordpiece)")
        return cls(*(int(ids[name]) for name in SPECIAL_TOKENS))

    def to_dict(self) -> dict[str, int]:
        return {"pad": self.pad, "unk": self.unk, "cls": self.cls, "sep": self.sep, "mask": self.mask}


def continuation_ids(tokenizer: Any) -> np.ndarray:
    """A boolean per id: True for WordPiece continuations (``##...``), which whole-word masking joins
    to the token before them."""
    vocab = tokenizer.get_vocab()
    flags = np.zeros(max(tokenizer.vocab_size, max(vocab.values(), default=-1) + 1), dtype=bool)
    for token, index in vocab.items():
        if token.startswith("##"):
            flags[index] = True
    return flags


class SentenceCorpus:
    """Sentences ``[first, stop)`` of a spooled shard: token ids, sentence offsets and documents.

    ``tokens`` is the shard's id map; ``sentence_ends`` the end offset of each of its sentences;
    ``document_ends`` the ends (in sentences) of its documents. Sentence ``i`` (0-based in this view) is
    ``tokens[starts[i]:ends[i]]``; documents are cut at ``first`` and ``stop``.
    """

    def __init__(self, tokens: np.ndarray, sentence_ends: np.ndarray, document_ends: np.ndarray,
                 first: int = 0, stop: int | None = None):
        stop = len(sentence_ends) if stop is None else stop
        self.tokens = tokens
        self.ends = sentence_ends[first:stop]
        self.first_start = int(sentence_ends[first - 1]) if first > 0 else 0
        docs = np.asarray(document_ends, dtype=np.int64)
        inner = docs[(docs > first) & (docs < stop)] - first
        self.documents = np.concatenate([[0], inner, [stop - first]]).astype(np.int64) if stop > first \
            else np.zeros(1, np.int64)  # document d: sentences documents[d]:documents[d + 1]

    def __len__(self) -> int:
        """Sentences."""
        return len(self.ends)

    @property
    def num_tokens(self) -> int:
        return int(self.ends[-1]) - self.first_start if len(self.ends) else 0

    def sentence_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) token offsets of every sentence, in memory (8 bytes each)."""
        ends = np.asarray(self.ends, dtype=np.int64)
        starts = np.empty_like(ends)
        if len(ends):
            starts[0] = self.first_start
            starts[1:] = ends[:-1]
        return starts, ends


@dataclass
class BertData:
    """Spooled pretraining data (what :func:`prepare_bert_data` returns): the train and validation
    sentences, and what maps text to ids (``codec``: a TokenizerCodec, when just spooled)."""

    train: SentenceCorpus
    val: SentenceCorpus | None
    vocab_size: int
    specials: SpecialIds
    meta: dict[str, Any]
    level: str = "tokenizer"
    codec: Any = None
    vocab: Any = None


# -- corpus -> shards -------------------------------------------------------------------------------

def _sentences(lines: Sequence[str], doc_per_line: bool) -> Iterator[tuple[str, bool]]:
    """(sentence, starts a new document) for each sentence of ``lines``; blank lines end documents."""
    new_doc = False
    for line in lines:
        if not line.strip():
            new_doc = True
            continue
        if doc_per_line:
            for j, part in enumerate(SENTENCE_END.split(line.strip())):
                yield part, j == 0
        else:
            yield line, new_doc
            new_doc = False


def spool_sentences(inputs: Sequence[str] | None, tokenizer: Any, data_dir: Path, index: int, *,
                    doc_per_line: bool = False, options: CorpusOptions | None = None) -> dict[str, Any]:
    """Tokenize ``inputs`` once into shard ``index`` of ``data_dir``; returns its counts.

    Read in chunks of about a million characters (:func:`~dlnlp.tokenization.codec.rechunk`), so
    memory does not grow with the corpus. Sentences with no token are dropped.
    """
    from dlnlp.tokenization.codec import rechunk

    dtype = dtype_for(tokenizer.vocab_size)
    sentences = documents = 0
    pending_break = False  # a blank line was seen since the last sentence kept
    with (TokenWriter(data_dir / f"tokens{index}.bin", dtype) as tokens,
          TokenWriter(data_dir / f"sentences{index}.bin", np.int64) as sentence_ends,
          TokenWriter(data_dir / f"documents{index}.bin", np.int64) as document_ends):
        for lines in rechunk(iter_line_blocks(inputs, options)):
            chunk = list(_sentences(lines, doc_per_line))
            encoded = tokenizer.encode_batch([text for text, _ in chunk])
            kept, doc_ends = [], []
            for (_, new_doc), ids in zip(chunk, encoded, strict=True):
                pending_break |= new_doc  # kept past a sentence without tokens
                if not ids:
                    continue
                if pending_break and sentences:
                    doc_ends.append(sentences)
                pending_break = False
                kept.append(ids)
                sentences += 1
            lengths = np.fromiter(map(len, kept), np.int64, len(kept))
            ends = tokens.count + np.cumsum(lengths)
            tokens.write(np.fromiter(chain.from_iterable(kept), np.int64, int(lengths.sum())))
            if lines and not lines[-1].strip():
                pending_break = True  # a blank line at the end of a chunk ends its document too
            sentence_ends.write(ends)
            document_ends.write(doc_ends)
            documents += len(doc_ends)
        if sentences:
            document_ends.write([sentences])
            documents += 1
    return {"tokens": tokens.count, "sentences": sentences, "documents": documents}


def prepare_bert_data(inputs: Sequence[str] | None, out_dir: str | Path, *, tokenizer: Any,
                      val: str | Path | None = None, val_fraction: float = 0.1, doc_per_line: bool = False,
                      options: CorpusOptions | None = None, **_: Any) -> BertData:
    """Tokenize ``inputs`` (and ``val``) into ``out_dir/data`` and memory-map them.

    Without ``val`` the last ``val_fraction`` of the sentences is held out (0: none). Accepts (and
    ignores) the other keywords of :func:`~dlnlp.training.data.prepare_lm_data`, whose place it takes
    in the run flow of :mod:`dlnlp.recipes.lm`.
    """
    from dlnlp.tokenization.text_codec import TokenizerCodec

    if tokenizer is None:
        raise OptionError("--tokenizer is required: a WordPiece tokenizer (dlnlp tokenize train --model wordpiece)")
    if not 0 <= val_fraction < 1:
        raise OptionError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    specials = SpecialIds.from_tokenizer(tokenizer, getattr(tokenizer, "path", None) or "--tokenizer")
    data_dir = Path(out_dir) / DATA_DIR
    if data_dir.exists():  # never delete what a caller did not make here
        raise InputError(f"{data_dir}: already exists; spool into a new run directory")
    shards = shard_directory(inputs)
    data_dir.mkdir(parents=True)
    if shards is not None:  # ids read in place; only the sentence and document offsets are written
        counts = [_shard_sentences(shards, tokenizer, data_dir)]
    else:
        counts = [spool_sentences(inputs, tokenizer, data_dir, 0, doc_per_line=doc_per_line, options=options)]
    if val is not None:
        counts.append(spool_sentences([str(val)], tokenizer, data_dir, 1, doc_per_line=doc_per_line,
                                      options=options))
        split = {"train": [0, 0, counts[0]["sentences"]], "val": [1, 0, counts[1]["sentences"]]}
    elif val_fraction > 0:
        cut = int(counts[0]["sentences"] * (1 - val_fraction))
        split = {"train": [0, 0, cut], "val": [0, cut, counts[0]["sentences"]]}
    else:
        split = {"train": [0, 0, counts[0]["sentences"]], "val": None}
    meta = {"dtype": dtype_for(tokenizer.vocab_size).name, "vocab_size": int(tokenizer.vocab_size),
            "level": "tokenizer", "format": "sentences", "specials": specials.to_dict(), "split": split,
            "shards": counts, "doc_per_line": doc_per_line, "source": describe_inputs(inputs),
            "val_source": str(val) if val is not None else None,
            "val_fraction": val_fraction if val is None else None}
    if shards is not None:
        meta["token_shards"] = {"directory": str(shards.resolve()), "index_sha256": file_sha256(shards / INDEX_NAME)}
    (data_dir / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    data = load_bert_data(out_dir, vocab=tokenizer)
    data.codec = TokenizerCodec(tokenizer)
    if len(data.train) < 2:
        raise InputError(f"{describe_inputs(inputs)}: the training text has {len(data.train)} sentences; need at "
                         "least 2")
    if data.val is not None and len(data.val) < 1:
        raise InputError("the validation text has no sentence (give more text, --val FILE or --val-fraction 0)")
    return data


def _shard_sentences(directory: Path, tokenizer: Any, data_dir: Path) -> dict[str, Any]:
    """A token shard directory (``tokenize encode --format bin`` of one sentence a line, blank lines
    between documents) as shard 0: its lines are the sentences, written here as offsets only."""
    shards = TokenShards(directory)
    expected = (shards.index.get("tokenizer") or {}).get("sha256")
    if expected and file_sha256(tokenizer.path) != expected:
        raise InputError(f"--tokenizer {tokenizer.path} is not the tokenizer that wrote {directory}")
    if shards.index.get("add_eos") or shards.index.get("add_bos"):
        raise InputError(f"{directory}: the lines were encoded with --add-eos/--add-bos; BERT adds its own [CLS] "
                         "and [SEP] (encode without them)")
    ends = shards.document_ends()
    lengths = np.diff(ends, prepend=0)
    kept = lengths > 0  # a blank line has no token: it ends a document
    sentence_ends = ends[kept]
    before_blank = np.cumsum(kept)[~kept]  # sentences kept before each blank line
    documents = np.unique(before_blank[(before_blank > 0) & (before_blank < len(sentence_ends))])
    if len(sentence_ends):
        documents = np.append(documents, len(sentence_ends))
    sentence_ends.astype("<i8").tofile(data_dir / "sentences0.bin")
    documents.astype("<i8").tofile(data_dir / "documents0.bin")
    return {"tokens": len(shards), "sentences": len(sentence_ends), "documents": len(documents)}


def load_bert_data(out_dir: str | Path, vocab: Any = None) -> BertData:
    """Re-open the shards of ``out_dir/data`` (used by --resume)."""
    data_dir = Path(out_dir) / DATA_DIR
    meta_path = data_dir / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{data_dir}: no spooled training data (was the run started with this dlnlp?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "sentences":
        raise InputError(f"{meta_path}: not BERT pretraining data (no sentence shards)")

    def view(entry: list | None) -> SentenceCorpus | None:
        if entry is None:
            return None
        shard, first, stop = (int(x) for x in entry)
        tokens = shard_stream(meta["token_shards"], meta_path) if shard == 0 and meta.get("token_shards") else \
            open_tokens(data_dir / f"tokens{shard}.bin", meta["dtype"])
        return SentenceCorpus(tokens,
                              open_tokens(data_dir / f"sentences{shard}.bin", np.int64),
                              open_tokens(data_dir / f"documents{shard}.bin", np.int64), first, stop)

    return BertData(train=view(meta["split"]["train"]), val=view(meta["split"].get("val")),
                    vocab_size=int(meta["vocab_size"]), specials=SpecialIds(**meta["specials"]), meta=meta,
                    vocab=vocab)


# -- sentence pairs ---------------------------------------------------------------------------------

@dataclass
class Pairs:
    """Sequences as token ranges of a corpus: ``[CLS] tokens[a0:a1] [SEP] tokens[b0:b1] [SEP]`` (no B
    part when ``b0 == b1``); ``label`` 1 for a random (NSP) or swapped (SOP) B, 0 otherwise."""

    a0: np.ndarray
    a1: np.ndarray
    b0: np.ndarray
    b1: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.a0)


def _truncate(a0: int, a1: int, b0: int, b1: int, max_tokens: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Google's ``truncate_seq_pair``: a token at a time from the longer segment, front or back at random."""
    excess = (a1 - a0) + (b1 - b0) - max_tokens
    if excess <= 0:
        return a0, a1, b0, b1
    for front in (rng.random(excess) < 0.5).tolist():
        if a1 - a0 > b1 - b0:
            a0, a1 = (a0 + 1, a1) if front else (a0, a1 - 1)
        else:
            b0, b1 = (b0 + 1, b1) if front else (b0, b1 - 1)
    return a0, a1, b0, b1


def build_pairs(corpus: SentenceCorpus, max_len: int, next_sentence: str, rng: np.random.Generator, *,
                short_seq_prob: float = 0.1) -> Pairs:
    """One pass of sequences over ``corpus`` (see the module docstring); ``rng`` makes every choice."""
    if next_sentence not in NEXT_SENTENCE:
        raise UsageError(f"--next-sentence must be one of {', '.join(NEXT_SENTENCE)}, got {next_sentence!r}")
    paired = next_sentence != "none"
    max_tokens = max_len - (3 if paired else 2)
    if max_tokens < 2:
        raise OptionError(f"--max-len must be >= {max_len - max_tokens + 2} with --next-sentence {next_sentence}, "
                          f"got {max_len}")
    all_starts, all_ends = corpus.sentence_bounds()  # 16 bytes a sentence; Python lists per document only
    documents = corpus.documents.tolist()
    n_docs = len(documents) - 1
    out = array("q")  # a0, a1, b0, b1, label of each sequence, flat

    def target_length() -> int:
        return int(rng.integers(2, max_tokens + 1)) if rng.random() < short_seq_prob else max_tokens

    def random_b(doc: int, want: int) -> tuple[int, int]:
        other = doc
        if n_docs > 1:
            other = int(rng.integers(0, n_docs - 1))
            other += other >= doc
        j, last = int(rng.integers(documents[other], documents[other + 1])), documents[other + 1] - 1
        b0 = int(all_starts[j])
        stop = min(last, j + int(np.searchsorted(all_ends[j:last + 1], b0 + want)))  # first end >= b0 + want
        return b0, int(all_ends[stop])

    for doc in range(n_docs):
        first, stop = documents[doc], documents[doc + 1]
        starts, ends = all_starts[first:stop].tolist(), all_ends[first:stop].tolist()
        n = stop - first
        chunk, target, i = 0, target_length(), 0
        while i < n:
            if i == n - 1 or ends[i] - starts[chunk] >= target:
                t0, t1, count = starts[chunk], ends[i], i + 1 - chunk
                if count >= 2:
                    a_end = int(rng.integers(chunk + 1, i + 1))  # sentences chunk..a_end-1 are A
                    split = starts[a_end]
                elif t1 - t0 >= 2 and paired:
                    a_end, split = i + 1, int(rng.integers(t0 + 1, t1))  # one sentence: cut inside it
                else:
                    a_end, split = i + 1, None
                if not paired:
                    pair = (t0, t1, 0, 0, 0)
                elif next_sentence == "nsp" and (split is None or rng.random() < 0.5):
                    a1 = t1 if split is None else split
                    pair = (t0, a1, *random_b(doc, target - (a1 - t0)), 1)
                    i = a_end - 1  # the sentences of the chunk after A start the next one
                elif split is None:  # sop of a one-token chunk: nothing to order
                    pair = None
                elif next_sentence == "sop" and rng.random() < 0.5:
                    pair = (split, t1, t0, split, 1)
                else:
                    pair = (t0, split, split, t1, 0)
                if pair is not None:
                    out.extend(_truncate(*pair[:4], max_tokens, rng))
                    out.append(pair[4])
                chunk, target = i + 1, target_length()
            i += 1
    array_ = np.frombuffer(out, dtype=np.int64).reshape(-1, 5) if len(out) else np.zeros((0, 5), np.int64)
    return Pairs(*(array_[:, k].copy() for k in range(5)))


# -- masking ----------------------------------------------------------------------------------------

def mask_tokens(ids: np.ndarray, candidates: np.ndarray, rng: np.random.Generator, *, mask_id: int,
                replacements: np.ndarray, prob: float = 0.15,
                continuation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masked-LM corruption of a batch ``ids`` (B, L): returns (inputs, labels).

    In each row ``round(prob x candidates)`` (at least one) of the ``candidates`` positions are
    selected; of those 80% become ``mask_id``, 10% a token drawn from ``replacements``, 10% stay.
    ``labels`` hold the original id at selected positions and -100 elsewhere. With ``continuation``
    (a boolean per id: a ``##`` piece) words are selected whole, as in whole-word masking.
    """
    rows, width = ids.shape
    counts = candidates.sum(axis=1)
    want = np.where(counts > 0, np.maximum(1, np.rint(counts * prob)), 0).astype(np.int64)
    keys = rng.random((rows, width))
    if continuation is None:
        keys[~candidates] = 2.0
        rank = np.empty((rows, width), dtype=np.int64)
        np.put_along_axis(rank, np.argsort(keys, axis=1), np.arange(width)[None, :].repeat(rows, 0), axis=1)
        selected = rank < want[:, None]
    else:
        selected = np.zeros((rows, width), dtype=bool)
        joins = continuation[ids] & candidates
        joins[:, 0] = False
        joins[:, 1:] &= candidates[:, :-1]  # a piece joins the word before it only when that is selectable
        starts = candidates & ~joins
        word = np.cumsum(starts, axis=1) - 1  # word index of each position in its row
        for r in range(rows):
            positions = np.flatnonzero(candidates[r])
            if not len(positions):
                continue
            words = word[r, positions]
            lengths = np.bincount(words)
            order = np.argsort(keys[r, :len(lengths)])
            taken = np.zeros(len(lengths), dtype=bool)
            total = 0
            for w in order.tolist():  # Google's loop: skip a word that would pass the count
                if total + lengths[w] <= want[r]:
                    taken[w] = True
                    total += lengths[w]
                    if total == want[r]:
                        break
            selected[r, positions[taken[words]]] = True
    action = rng.random((rows, width))
    inputs = ids.copy()
    inputs[selected & (action < 0.8)] = mask_id
    swap = selected & (action >= 0.8) & (action < 0.9)
    inputs[swap] = replacements[rng.integers(0, len(replacements), int(swap.sum()))]
    labels = np.where(selected, ids, IGNORE_INDEX)
    return inputs, labels


# -- the batch source -------------------------------------------------------------------------------

def _seed(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF  # SeedSequence wants non-negative entropy


class PretrainingBatches:
    """The trainer's batch source for BERT pretraining (``next_batch``, ``iter_eval``, state for resume).

    An epoch is one pass of :func:`build_pairs` over the corpus, drawn again each epoch from
    (seed, epoch) and read in a shuffled order, ``batch_size`` sequences at a time (the last batch
    of an epoch may be smaller). Each batch is masked afresh from (seed, epoch, batch), so the state
    is the position alone. Batches are dicts of int64 tensors ``input_ids``, ``token_type_ids``,
    ``attention_mask`` (1: a real token), ``mlm_labels`` (-100: not selected) and, unless
    ``next_sentence`` is ``none``, ``nsp_labels``; rows are padded to the longest of the batch.

    ``iter_eval`` reads epoch 0's sequences in corpus order with masks from ``seed`` alone: the same
    batches on every call and every run.

    Split over ``world`` processes (:meth:`shard`, under torchrun) a step reads ``batch_size x world``
    sequences of the epoch's order, process ``rank`` its ``rank``-th ``batch_size`` of them, masked
    from (seed, epoch, batch, rank); an epoch drops the last sequences that do not fill a global
    batch. Validation batches go round-robin.
    """

    stateful = False

    def __init__(self, corpus: SentenceCorpus, batch_size: int, *, max_len: int, specials: SpecialIds,
                 vocab_size: int, next_sentence: str = "nsp", mlm_prob: float = 0.15, short_seq_prob: float = 0.1,
                 continuation: np.ndarray | None = None, seed: int = 0):
        if batch_size < 1:
            raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
        if not 0 < mlm_prob < 1:
            raise OptionError(f"--mlm-prob must be in (0, 1), got {mlm_prob}")
        if not 0 <= short_seq_prob <= 1:
            raise OptionError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        self.corpus = corpus
        self.batch_size = batch_size
        self.max_len = max_len
        self.specials = specials
        self.next_sentence = next_sentence
        self.mlm_prob = mlm_prob
        self.short_seq_prob = short_seq_prob
        self.continuation = continuation
        self.seed = _seed(seed)
        never = {specials.pad, specials.cls, specials.sep, specials.mask}
        self.replacements = np.array([i for i in range(vocab_size) if i not in never], dtype=np.int64)
        self._never = np.array(sorted(never), dtype=np.int64)
        self.epoch = 0
        self.position = 0
        self.rank, self.world = 0, 1
        self._plan: tuple[int, Pairs, np.ndarray] | None = None
        if not len(self.plan(0)[0]):
            raise InputError("the text makes no training sequence (too few sentences)")

    # pairs of an epoch, and the order they are read in
    def plan(self, epoch: int) -> tuple[Pairs, np.ndarray]:
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, _PAIR_STREAM, epoch])
            pairs = build_pairs(self.corpus, self.max_len, self.next_sentence, rng,
                                short_seq_prob=self.short_seq_prob)
            self._plan = (epoch, pairs, rng.permutation(len(pairs)))
        return self._plan[1], self._plan[2]

    @property
    def batches_per_epoch(self) -> int:
        if self.world > 1:  # whole global batches only: every process takes as many steps
            return max(1, len(self.plan(self.epoch)[0]) // (self.batch_size * self.world))
        return max(1, math.ceil(len(self.plan(self.epoch)[0]) / self.batch_size))

    def shard(self, rank: int, world: int) -> PretrainingBatches:
        """Process ``rank``'s part of each global batch of ``world`` (see the class docstring)."""
        import copy

        shard = copy.copy(self)
        shard.rank, shard.world = rank, world
        if len(shard.plan(0)[0]) < self.batch_size * world:
            raise InputError(f"the text makes {len(shard.plan(0)[0])} sequences, fewer than a global batch of "
                             f"{self.batch_size} x {world} processes (lower --batch-size)")
        return shard

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.position / self.batches_per_epoch

    def next_batch(self) -> tuple[dict[str, torch.Tensor], bool]:
        pairs, order = self.plan(self.epoch)
        first = (self.position * self.world + self.rank) * self.batch_size
        chosen = order[first:first + self.batch_size]
        draw = [self.seed, _MASK_STREAM, self.epoch, self.position] + ([self.rank] if self.world > 1 else [])
        batch = self.make_batch(pairs, chosen, np.random.default_rng(draw))
        self.position += 1
        if self.position * self.batch_size * self.world >= len(pairs) or (
                self.world > 1 and self.position >= self.batches_per_epoch):
            self.epoch += 1
            self.position = 0
        return batch, False

    def iter_eval(self) -> Iterator[dict[str, torch.Tensor]]:
        pairs, _ = self.plan(0)
        for i, start in enumerate(range(0, len(pairs), self.batch_size)):
            if i % self.world != self.rank:
                continue
            chosen = np.arange(start, min(start + self.batch_size, len(pairs)))
            yield self.make_batch(pairs, chosen, np.random.default_rng([self.seed, _EVAL_STREAM, i]))

    def make_batch(self, pairs: Pairs, chosen: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The padded, masked batch of sequences ``chosen`` of ``pairs``."""
        s = self.specials
        a_len = pairs.a1[chosen] - pairs.a0[chosen]
        b_len = pairs.b1[chosen] - pairs.b0[chosen]
        lengths = a_len + b_len + 2 + (b_len > 0)
        width = int(lengths.max())
        ids = np.full((len(chosen), width), s.pad, dtype=np.int64)
        types = np.zeros((len(chosen), width), dtype=np.int64)
        tokens = self.corpus.tokens
        for row, k in enumerate(chosen.tolist()):
            a = tokens[pairs.a0[k]:pairs.a1[k]]
            n = len(a)
            ids[row, 0] = s.cls
            ids[row, 1:n + 1] = a
            ids[row, n + 1] = s.sep
            if pairs.b1[k] > pairs.b0[k]:
                b = tokens[pairs.b0[k]:pairs.b1[k]]
                ids[row, n + 2:n + 2 + len(b)] = b
                ids[row, n + 2 + len(b)] = s.sep
                types[row, n + 2:n + 3 + len(b)] = 1
        real = np.arange(width)[None, :] < lengths[:, None]
        candidates = real & ~np.isin(ids, self._never)
        inputs, labels = mask_tokens(ids, candidates, rng, mask_id=s.mask, replacements=self.replacements,
                                     prob=self.mlm_prob, continuation=self.continuation)
        batch = {"input_ids": torch.from_numpy(inputs), "token_type_ids": torch.from_numpy(types),
                 "attention_mask": torch.from_numpy(real.astype(np.int64)), "mlm_labels": torch.from_numpy(labels)}
        if self.next_sentence != "none":
            batch["nsp_labels"] = torch.from_numpy(pairs.label[chosen].copy())
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
