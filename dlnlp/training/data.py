"""Token streams for sequence models: memory-mapped storage, BPTT streams and random windows.

Text becomes one long stream of token ids, spooled once to ``DIR/data/`` as a raw little-endian
``uint16`` (vocabularies up to 65,536) or ``uint32`` array and read back through ``np.memmap``, so
a corpus larger than memory trains and stdin is read only once. Three ways to get ids:

* characters (:class:`~dlnlp.tokenization.char.CharVocab`, built from the training and validation
  text; each input line ends with ``"\\n"``),
* a dlnlp tokenizer file (``load_tokenizer``; each line is encoded separately and followed by the
  tokenizer's end-of-text id when it has one),
* ids piped from ``dlnlp tokenize encode --format ids`` (one line per input line, ids separated by
  spaces). Each line is followed by the end-of-text id (the tokenizer's, or a chosen ``eos_id``) unless
  it already ends with it (``tokenize encode --add-eos``), so piped ids spool to the same stream as the
  text would; with a tokenizer the model reads text (its codec is the tokenizer's).

Validation is a second file (``--val FILE``) or the last ``val_fraction`` of the stream (10% by
default, as nanoGPT splits Tiny Shakespeare).

Batching:

* :class:`StreamBatches` cuts the stream into ``B`` contiguous parallel streams and walks them in
  windows of ``T`` tokens (truncated backpropagation through time, Williams & Peng 1990 / Zaremba et
  al. 2014): window ``i`` of stream ``b`` continues window ``i - 1`` of the same stream, so a
  recurrent model carries its hidden state across windows (the trainer detaches it at each).
* :class:`RandomWindows` samples ``B`` windows at uniformly random offsets (nanoGPT's ``get_batch``),
  the usual batching for Transformers.

Both implement the trainer's batch-source protocol (``next_batch() -> ((x, y), reset)``,
``epochs_done``, ``batches_per_epoch``, ``state_dict``/``load_state_dict`` for exact resume) and
``iter_eval()`` for a full, deterministic pass over validation data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlnlp.errors import InputError, OptionError
from dlnlp.io.corpus import CorpusOptions, describe_inputs, iter_line_blocks
from dlnlp.io.shards import TokenShards, TokenStream, dtype_for, file_sha256, shard_directory
from dlnlp.tokenization.ids import MAX_VOCAB_SIZE  # piped ids: the vocabulary is the largest id + 1

DATA_DIR = "data"
META_NAME = "meta.json"
SHARDS = "<shards>"  # a split's "file" when the run reads a token shard directory (meta.json's "shards")


def open_tokens(path: str | Path, dtype: str | np.dtype, start: int = 0, stop: int | None = None) -> np.ndarray:
    """A read-only memory map of a spooled token file (optionally a slice of it)."""
    path = Path(path)
    dtype = np.dtype(dtype)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    data = np.memmap(path, dtype=dtype, mode="r")
    return data[start:stop]


class TokenWriter:
    """Append id chunks to a raw token file; tracks the count and the largest id."""

    def __init__(self, path: str | Path, dtype: str | np.dtype):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.max_id = -1
        self._handle = open(self.path, "wb")  # noqa: SIM115

    def write(self, ids: np.ndarray | Sequence[int]) -> None:
        array = np.asarray(ids, dtype=np.int64)
        if array.size == 0:
            return
        if array.min() < 0:
            raise InputError(f"negative token id {int(array.min())}")
        top = int(array.max())
        if top >= np.iinfo(self.dtype).max + 1:
            raise InputError(f"token id {top} does not fit {self.dtype}")
        self.max_id = max(self.max_id, top)
        self._handle.write(array.astype(self.dtype).tobytes())
        self.count += array.size

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- corpus -> spooled ids --------------------------------------------------------------------------

@dataclass
class LMData:
    """Spooled token streams plus what maps text to ids (``codec``, a TextCodec, when the data was just
    spooled; ``vocab`` is its CharVocab or Tokenizer, None for ids)."""

    train: np.ndarray
    val: np.ndarray | None
    vocab_size: int
    level: str                     # char | tokenizer | ids
    vocab: Any = None
    meta: dict[str, Any] | None = None
    codec: Any = None


def _text_chunks(inputs: Sequence[str] | None, options: CorpusOptions) -> Iterator[str]:
    # Chunks of about a million characters, not of a number of lines: lines may be up to
    # io.corpus.max_line_chars() long (longer ones come cut), and 4096 of those would be gigabytes.
    from dlnlp.tokenization.codec import rechunk

    for lines in rechunk(iter_line_blocks(inputs, options)):
        yield "".join(line + "\n" for line in lines)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _spool_chars(sources: list[Sequence[str] | None], data_dir: Path, options: CorpusOptions, tokenizer: Any,
                 vocab_size: int | None, eos_id: int | None = None):
    """Two passes over spooled code points: collect the character set, then map to ids (a CharCodec).

    ``tokenizer`` a CharVocab (a model fine-tuned from a character model) keeps that vocabulary:
    characters outside it become its unknown id 0."""
    from dlnlp.tokenization.char import CharVocab
    from dlnlp.tokenization.text_codec import CharCodec

    if tokenizer is not None:
        return _spool_fixed_chars(sources, data_dir, options, tokenizer)
    raw_paths, seen = [], np.zeros(0, dtype=np.uint32)
    for i, inputs in enumerate(sources):
        raw = data_dir / f"codepoints{i}.tmp"
        with TokenWriter(raw, np.uint32) as writer:
            for text in _text_chunks(inputs, options):
                cps = _codepoints(text)
                seen = np.union1d(seen, np.unique(cps))
                writer.write(cps)
        raw_paths.append((raw, writer.count))
    vocab = CharVocab([chr(c) for c in seen.tolist()])
    dtype = dtype_for(vocab.vocab_size)
    outputs = []
    for i, (raw, count) in enumerate(raw_paths):
        out = data_dir / f"tokens{i}.bin"
        with TokenWriter(out, dtype) as writer:
            cps = open_tokens(raw, np.uint32) if count else np.zeros(0, np.uint32)
            for start in range(0, count, 1 << 22):
                # CharVocab ids are 1 + the rank of the code point among the sorted characters.
                writer.write(np.searchsorted(seen, cps[start:start + (1 << 22)]) + 1)
        del cps
        raw.unlink()
        outputs.append((out, writer.count))
    return CharCodec(vocab), dtype, outputs


def _spool_fixed_chars(sources: list[Sequence[str] | None], data_dir: Path, options: CorpusOptions, vocab: Any):
    from dlnlp.tokenization.text_codec import CharCodec

    points = np.array([ord(c) for c in vocab.chars], dtype=np.uint32)
    order = np.argsort(points)
    known = points[order]
    dtype = dtype_for(vocab.vocab_size)
    outputs = []
    for i, inputs in enumerate(sources):
        out = data_dir / f"tokens{i}.bin"
        with TokenWriter(out, dtype) as writer:
            for text in _text_chunks(inputs, options):
                cps = _codepoints(text)
                at = np.minimum(np.searchsorted(known, cps), len(known) - 1)
                ids = np.where(known[at] == cps, order[at] + 1, 0)  # CharVocab: id = 1 + index, 0 unknown
                vocab.unknown_count += int((ids == 0).sum())
                writer.write(ids)
        outputs.append((out, writer.count))
    return CharCodec(vocab), dtype, outputs


def _spool_tokenizer(sources, data_dir: Path, options: CorpusOptions, tokenizer: Any, vocab_size: int | None,
                     eos_id: int | None = None):
    """Each line encoded by the tokenizer codec (end-of-text after every line when it has one)."""
    from dlnlp.tokenization.codec import rechunk
    from dlnlp.tokenization.text_codec import TokenizerCodec

    codec = TokenizerCodec(tokenizer)
    dtype = dtype_for(codec.vocab_size)
    outputs = []
    for i, inputs in enumerate(sources):
        out = data_dir / f"tokens{i}.bin"
        with TokenWriter(out, dtype) as writer:
            for lines in rechunk(iter_line_blocks(inputs, options)):  # about a million characters each
                writer.write(codec.encode_batch(lines))
        outputs.append((out, writer.count))
    return codec, dtype, outputs


def _spool_ids(sources, data_dir: Path, options: CorpusOptions, tokenizer: Any, vocab_size: int | None,
               eos_id: int | None = None):
    """Lines of ids, each followed by ``eos_id`` (default: the tokenizer's end-of-text) as the tokenizer
    codec spools text, unless the line already ends with it; with a tokenizer its vocabulary bounds the ids."""
    from dlnlp.tokenization.ids import read_id_lines
    from dlnlp.tokenization.text_codec import IdsCodec, TokenizerCodec

    if tokenizer is not None:
        if vocab_size is not None and vocab_size != tokenizer.vocab_size:
            raise OptionError(f"--vocab-size {vocab_size} differs from the --tokenizer's vocabulary "
                              f"({tokenizer.vocab_size}); leave --vocab-size out")
        vocab_size = tokenizer.vocab_size
        if eos_id is None:
            eos_id = tokenizer.eos_id
    if vocab_size is not None and not 1 <= vocab_size <= MAX_VOCAB_SIZE:
        raise InputError(f"--vocab-size must be in [1, {MAX_VOCAB_SIZE:,}], got {vocab_size}")
    limit = vocab_size or MAX_VOCAB_SIZE
    if eos_id is not None and not 0 <= eos_id < limit:
        raise OptionError(f"--eos-id must be in [0, {limit - 1}], got {eos_id}")
    dtype = dtype_for(vocab_size) if vocab_size else np.dtype(np.uint32)
    outputs, top = [], -1
    for i, inputs in enumerate(sources):
        out = data_dir / f"tokens{i}.bin"
        with TokenWriter(out, dtype) as writer:
            buffer: list[int] = []
            for number, ids in enumerate(read_id_lines(inputs, options), start=1):
                if ids and max(ids) >= limit:
                    _id_out_of_range(max(ids), inputs, number, vocab_size)
                buffer.extend(ids)
                if eos_id is not None and not (ids and ids[-1] == eos_id):
                    buffer.append(eos_id)
                if len(buffer) >= 1 << 20:
                    writer.write(buffer)
                    buffer = []
            writer.write(buffer)
        top = max(top, writer.max_id)
        outputs.append((out, writer.count))
    if tokenizer is not None:
        return TokenizerCodec(tokenizer, eos_id), dtype, outputs
    return IdsCodec(vocab_size or top + 1, eos_id), dtype, outputs


def _id_out_of_range(token: int, inputs: Sequence[str] | None, line: int, vocab_size: int | None) -> None:
    single = not inputs or len(inputs) == 1
    where = f"{describe_inputs(inputs)}:{line}" if single else f"{describe_inputs(inputs)}, line {line} of them"
    if vocab_size is not None:
        raise InputError(f"{where}: token id {token} is outside the vocabulary (--vocab-size {vocab_size})")
    raise InputError(f"{where}: token id {token} is above the largest id accepted, {MAX_VOCAB_SIZE - 1:,} "
                     f"(the vocabulary would have {token + 1:,} rows); renumber the ids densely")


# how each text level is spooled, each returning (codec, dtype, [(file, tokens)]): characters build
# their vocabulary from the corpus, ids find the vocabulary size in it
_SPOOLERS = {"char": _spool_chars, "tokenizer": _spool_tokenizer, "ids": _spool_ids}


def prepare_lm_data(
    inputs: Sequence[str] | None,
    out_dir: str | Path,
    *,
    level: str = "char",
    tokenizer: Any = None,
    val: str | Path | None = None,
    val_fraction: float = 0.1,
    options: CorpusOptions | None = None,
    vocab_size: int | None = None,
    eos_id: int | None = None,
) -> LMData:
    """Encode ``inputs`` (and ``val``) to ``out_dir/data`` and memory-map them.

    ``level``: ``char`` (builds a CharVocab), ``tokenizer`` (``tokenizer`` is a loaded dlnlp
    tokenizer) or ``ids`` (the inputs are ids-format lines; ``vocab_size`` defaults to the largest
    id + 1, or the ``tokenizer``'s when one is given; each line ends with ``eos_id``, by default the
    tokenizer's end-of-text). ``LMData.level`` is the codec's: ids with a tokenizer read text. Without ``val`` the last ``val_fraction`` of the stream is held out (0 disables it).
    """
    options = options or CorpusOptions()
    if not 0 <= val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    data_dir = Path(out_dir) / DATA_DIR
    if data_dir.exists():  # never delete what a caller did not make here (runs spool into a fresh directory)
        raise InputError(f"{data_dir}: already exists; spool into a new run directory")
    shards = shard_directory(inputs)
    data_dir.mkdir(parents=True)
    extra: dict[str, Any] = {}
    if shards is not None:  # read in place: nothing to spool but --val
        codec, dtype, train_path, train_count, extra = _open_shards(shards, tokenizer, eos_id)
        outputs = [(train_path, train_count)]
        if val is not None:
            outputs += _spool_val_for_shards(val, data_dir, options, codec, dtype)
    else:
        sources: list[Sequence[str] | None] = [inputs] + ([[str(val)]] if val is not None else [])
        if level not in _SPOOLERS:
            raise ValueError(f"unknown level {level!r}")
        codec, dtype, outputs = _SPOOLERS[level](sources, data_dir, options, tokenizer, vocab_size, eos_id)
    size = codec.vocab_size
    vocab = getattr(codec, "vocab", None) or getattr(codec, "tokenizer", None)
    (train_path, train_count) = outputs[0]
    if val is not None:
        val_path, val_count = outputs[1]
        split = {"train": [train_path.name, 0, train_count], "val": [val_path.name, 0, val_count]}
    elif val_fraction > 0:
        cut = int(train_count * (1 - val_fraction))
        split = {"train": [train_path.name, 0, cut], "val": [train_path.name, cut, train_count]}
    else:
        split = {"train": [train_path.name, 0, train_count], "val": None}
    meta = {"dtype": dtype.name, "vocab_size": int(size), "level": codec.level, "split": split,
            "source": describe_inputs(inputs), "val_source": str(val) if val is not None else None,
            "val_fraction": val_fraction if val is None else None, **extra}
    (data_dir / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    data = load_lm_data(out_dir, vocab=vocab)
    data.codec = codec
    if len(data.train) < 2:
        raise InputError(f"{describe_inputs(inputs)}: the training text has {len(data.train)} tokens; need at least 2")
    if data.val is not None and len(data.val) < 2:
        where = str(val) if val is not None else "the held-out validation part"
        raise InputError(f"{where}: the validation text has {len(data.val)} tokens; need at least 2 "
                         "(give more text, --val FILE or --val-fraction 0)")
    return data


def _open_shards(directory: Path, tokenizer: Any, eos_id: int | None):
    """A token shard directory as the training stream (read in place, not copied): its codec (the
    tokenizer stored beside the shards: the model reads text; ids without one), and meta.json's
    ``"shards"`` entry, which names the directory and its index's checksum."""
    from dlnlp.tokenization.text_codec import IdsCodec, TokenizerCodec

    shards = TokenShards(directory)
    stored = shards.tokenizer_path()
    if tokenizer is not None:
        given = file_sha256(tokenizer.path)
        expected = (shards.index.get("tokenizer") or {}).get("sha256")
        if expected and given != expected:
            raise InputError(f"--tokenizer {tokenizer.path} is not the tokenizer that wrote {directory} "
                             f"(its index names {shards.index['tokenizer'].get('source')}); leave --tokenizer out")
    elif stored is not None:
        from dlnlp.tokenization import load_tokenizer

        tokenizer = load_tokenizer(stored)
    eos = eos_id if eos_id is not None else shards.index.get("eos_id")
    if tokenizer is not None:
        if tokenizer.vocab_size != shards.vocab_size:
            raise InputError(f"{directory}: the ids are of a vocabulary of {shards.vocab_size}, the tokenizer's "
                             f"has {tokenizer.vocab_size}")
        codec = TokenizerCodec(tokenizer, eos)
    else:
        codec = IdsCodec(shards.vocab_size, eos)
    if not shards.index.get("add_eos") and eos is not None:
        from dlnlp.progress import warn

        warn(f"{directory}: the lines were encoded without an end-of-text id (tokenize encode --add-eos), so "
             "the model does not see where one ends")
    extra = {"shards": {"directory": str(directory.resolve()), "index_sha256": file_sha256(directory / "index.json")}}
    return codec, shards.dtype, Path(SHARDS), len(shards), extra


def _spool_val_for_shards(val: str | Path, data_dir: Path, options: CorpusOptions, codec: Any, dtype: np.dtype):
    """``--val`` beside a shard directory: another shard directory (read in place is not needed: it is
    small) or a text file, encoded with the shards' tokenizer into ``tokens1.bin``."""
    out = data_dir / "tokens1.bin"
    with TokenWriter(out, dtype) as writer:
        if shard_directory([str(val)]) is not None:
            stream = TokenShards(val).stream()
            for start in range(0, len(stream), 1 << 22):
                writer.write(stream.read(start, start + (1 << 22)))
        elif getattr(codec, "tokenizer", None) is None:  # ids without their tokenizer
            raise InputError(f"--val {val}: a text file needs the tokenizer, and the shards have none; give a "
                             "shard directory")
        else:
            from dlnlp.tokenization.codec import rechunk

            for lines in rechunk(iter_line_blocks([str(val)], options)):
                writer.write(codec.encode_batch(lines))
    return [(out, writer.count)]


def load_lm_data(out_dir: str | Path, vocab: Any = None) -> LMData:
    """Re-open the spooled streams of ``out_dir/data`` (used by --resume)."""
    data_dir = Path(out_dir) / DATA_DIR
    meta_path = data_dir / META_NAME
    if not meta_path.is_file():
        raise InputError(f"{data_dir}: no spooled training data (was the run started with this dlnlp?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
    missing = [key for key in ("dtype", "vocab_size", "level", "split") if not isinstance(meta, dict)
               or key not in meta]
    if missing or not isinstance(meta["split"], dict):
        raise InputError(f"{meta_path}: not a dlnlp data description (missing {', '.join(missing) or 'split'})")

    def view(entry: list | None) -> np.ndarray | None:
        if entry is None:
            return None
        if not isinstance(entry, list) or len(entry) != 3:
            raise InputError(f"{meta_path}: a split must be [file, start, stop], got {entry!r}")
        name, start, stop = entry
        if name == SHARDS:
            return shard_stream(meta.get("shards"), meta_path).view(start, stop)
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise InputError(f"{meta_path}: token file name {name!r} leaves {data_dir}; the run directory is "
                             "damaged or not from dlnlp")
        return TokenStream([data_dir / name], meta["dtype"]).view(start, stop)

    return LMData(train=view(meta["split"].get("train")), val=view(meta["split"].get("val")),
                  vocab_size=meta["vocab_size"], level=meta["level"], vocab=vocab, meta=meta)


def shard_stream(info: dict[str, Any], meta_path: Path) -> TokenStream:
    """The stream of the shard directory a run reads in place (meta.json's ``{"directory",
    "index_sha256"}``); refused when it changed since."""
    info = info or {}
    directory = Path(info.get("directory", ""))
    if not (directory / "index.json").is_file():
        raise InputError(f"{meta_path}: the run reads the token shards in {directory}, which are gone")
    if info.get("index_sha256") and file_sha256(directory / "index.json") != info["index_sha256"]:
        raise InputError(f"{directory}: the token shards changed since the run started (index.json differs)")
    return TokenShards(directory).stream()


# -- batching -------------------------------------------------------------------------------------

def _windows(tokens: Any, starts: np.ndarray, length: int) -> torch.Tensor:
    """Rows ``tokens[s:s + length]`` for each offset ``s``, as an int64 tensor."""
    if hasattr(tokens, "windows"):
        return torch.from_numpy(tokens.windows(starts, length))
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64)
    return torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))


class StreamBatches:
    """``B`` parallel contiguous streams read in windows of ``T`` tokens (truncated BPTT).

    With ``n`` tokens each stream holds ``L = (n - 1) // B`` inputs; stream ``b`` starts at token
    ``b * L``, and its targets are its inputs shifted by one. The last window of an epoch may be
    shorter than ``T`` so every stream is read to its end. ``reset`` is true on the first window of
    each epoch: the recurrent state starts from zero there.

    Split over ``world`` processes (:meth:`shard`, under torchrun) the text is cut into ``B x world``
    streams and process ``rank`` reads streams ``rank * B`` to ``(rank + 1) * B - 1``: together they
    read what one process with ``B x world`` streams reads.
    """

    stateful = True

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, *, clamp: bool = False,
                 rank: int = 0, world: int = 1):
        if batch_size < 1 or seq_len < 1:
            raise ValueError("batch size and sequence length must be >= 1")
        n = len(tokens)
        self._args = (batch_size, clamp)
        total = batch_size * world
        if clamp:  # evaluation of a short text: fewer streams rather than an error
            total = max(1, min(total, (n - 1) // max(1, min(seq_len, 64))))
        if (n - 1) // total < 1:
            raise InputError(f"{n} tokens are too few for {total} streams (lower --batch-size)")
        self.tokens = tokens
        self.seq_len = seq_len
        self.stream_len = (n - 1) // total
        # this process's streams (all of them without distribution; a validation split may leave one none)
        mine = np.array_split(np.arange(total, dtype=np.int64), world)[rank]
        self.batch_size = len(mine)
        self.offsets = (mine * self.stream_len)[:, None]
        self.batches_per_epoch = math.ceil(self.stream_len / seq_len)
        self.epoch = 0
        self.position = 0

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.seq_len
        length = min(self.seq_len, self.stream_len - start)
        chunk = _windows(self.tokens, self.offsets[:, 0] + start, length + 1)
        return chunk[:, :-1], chunk[:, 1:]

    def next_batch(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        reset = self.position == 0
        batch = self.window(self.position)
        self.position += 1
        if self.position >= self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
        return batch, reset

    def iter_eval(self) -> Iterator[tuple[tuple[torch.Tensor, torch.Tensor], bool]]:
        if not self.batch_size:
            return
        for i in range(self.batches_per_epoch):
            yield self.window(i), i == 0

    def shard(self, rank: int, world: int) -> StreamBatches:
        """Process ``rank``'s streams of ``world`` (see the class docstring)."""
        batch_size, clamp = self._args
        return StreamBatches(self.tokens, batch_size, self.seq_len, clamp=clamp, rank=rank, world=world)

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.position / self.batches_per_epoch

    @property
    def tokens_per_epoch(self) -> int:
        return self.batch_size * self.stream_len

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class RandomWindows:
    """``B`` windows of ``T + 1`` tokens at uniformly random offsets (nanoGPT's ``get_batch``).

    An "epoch" is ``n / (B * T)`` batches (as many tokens as the stream holds). Draws come from
    its own ``torch.Generator`` seeded with ``seed``, saved in the checkpoint for exact resume.
    ``iter_eval`` reads the stream once in consecutive non-overlapping windows instead.

    Split over ``world`` processes (:meth:`shard`, under torchrun) every process draws the offsets
    of the whole global batch (``B x world`` windows) from the same generator and reads rows
    ``rank * B`` to ``(rank + 1) * B - 1``: no window is read twice, and together the processes
    train on exactly the batches of one process with ``B x world``. Validation batches go round-robin.
    """

    stateful = False

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1):
        n = len(tokens)
        if n < 2:
            raise InputError(f"{n} tokens are too few to train on")
        self.tokens = tokens
        self.batch_size = batch_size
        self.seq_len = min(seq_len, n - 1)
        self.seed, self.rank, self.world = seed, rank, world
        self.generator = torch.Generator().manual_seed(seed)
        self.batches_per_epoch = max(1, (n - 1) // (batch_size * world * self.seq_len))
        self.count = 0

    def draw_starts(self) -> np.ndarray:
        """The offsets of this process's next ``B`` windows (advances the generator): window ``b``'s
        inputs are tokens ``starts[b] + t`` and its targets ``starts[b] + t + 1``, ``t < T``."""
        high = len(self.tokens) - self.seq_len
        starts = torch.randint(0, high, (self.batch_size * self.world,), generator=self.generator).numpy()
        return starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def windows(self, starts: np.ndarray) -> torch.Tensor:
        """``[B, T + 1]`` int64: the tokens of the windows at ``starts`` (inputs ``[:, :-1]``, targets ``[:, 1:]``)."""
        return _windows(self.tokens, starts, self.seq_len + 1)

    def next_batch(self) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
        chunk = self.windows(self.draw_starts())
        self.count += 1
        return (chunk[:, :-1], chunk[:, 1:]), False

    def iter_eval(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, t = len(self.tokens), self.seq_len
        starts = np.arange(0, n - 1, t, dtype=np.int64)
        batch = 0
        for i in range(0, len(starts), self.batch_size):
            group = starts[i:i + self.batch_size]
            full = group[group + t <= n - 1]
            if len(full):
                if batch % self.world == self.rank:
                    chunk = _windows(self.tokens, full, t + 1)
                    yield chunk[:, :-1], chunk[:, 1:]
                batch += 1
            for s in group[group + t > n - 1]:  # the short tail window
                if batch % self.world == self.rank:
                    chunk = _windows(self.tokens, np.array([s]), n - s)
                    yield chunk[:, :-1], chunk[:, 1:]
                batch += 1

    def shard(self, rank: int, world: int) -> RandomWindows:
        """Process ``rank``'s rows of each global batch of ``world`` (see the class docstring)."""
        return RandomWindows(self.tokens, self.batch_size, self.seq_len, seed=self.seed, rank=rank, world=world)

    @property
    def epoch(self) -> int:
        return self.count // self.batches_per_epoch

    @property
    def epochs_done(self) -> float:
        return self.count / self.batches_per_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
