"""Token ids on disk: raw id files read as one sequence, and directories of id shards with an index.

Two layouts, one reader (:class:`TokenStream`):

* A run's spooled stream (``run/data/tokens0.bin``, :mod:`dlnlp.training.data`): one raw file.
* A **shard directory**, written by ``dlnlp tokenize encode --format bin --output DIR`` and read by
  every language-model training command given ``DIR`` as its corpus::

      DIR/
        index.json              {"format": "dlnlp-token-shards", dtype, vocab_size, tokens, documents,
                                 eos_id, the tokenizer's identity (file, sha256, vocabulary size),
                                 "shards": [{"file", "documents_file", "tokens", "documents"}, ...]}
        tokens_00000.bin        the ids, little-endian uint16 (vocabularies up to 65,536) or uint32
        documents_00000.bin     int64: where each document (input line) ends, in tokens of its shard
        tokenizer.json          the tokenizer that wrote the ids (or tokenizer.model)

  The id files are nanoGPT's layout (``np.memmap(path, dtype=np.uint16)`` reads one), cut at document
  boundaries every ``shard_tokens`` tokens (100 million by default: 200 MB of uint16, as nanoGPT's
  FineWeb shards). Documents are kept apart so that a reader can find every line's ids again.

:class:`TokenStream` reads windows with ``os.pread`` rather than through a memory map: pages a map
has touched count in the process's resident memory until the kernel reclaims them, which made
memory grow with the corpus (nanoGPT re-creates its ``np.memmap`` each batch for the same reason);
reads through the page cache keep the process flat whatever the corpus size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlnlp.errors import InputError

INDEX_NAME = "index.json"
SHARD_FORMAT = "dlnlp-token-shards"
SHARD_FORMAT_VERSION = 1
DEFAULT_SHARD_TOKENS = 100_000_000


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 for vocabularies up to 65,536 ids, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class TokenStream:
    """Ids stored in one or more raw files, read as one sequence ``[start, stop)`` without loading it.

    ``len``, ``stream[i]``, ``stream[a:b]`` (an array), :meth:`windows` (rows of equal length at given
    offsets: what batching reads), :meth:`view` (a sub-sequence, nothing read) and ``np.asarray``
    (reads it all). Files are opened on first read, in each process that reads.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        dtype: str | np.dtype,
        counts: Sequence[int] | None = None,
        start: int = 0,
        stop: int | None = None,
    ):
        self.files = [Path(f) for f in files]
        self.dtype = np.dtype(dtype)
        if counts is None:
            counts = [f.stat().st_size // self.dtype.itemsize for f in self.files]
        self.counts = [int(c) for c in counts]
        self.bounds = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]).astype(np.int64)
        total = int(self.bounds[-1])
        self.start = max(0, min(int(start), total))
        self.stop = total if stop is None else max(self.start, min(int(stop), total))
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return self.stop - self.start

    def view(self, start: int = 0, stop: int | None = None) -> TokenStream:
        """Tokens ``[start, stop)`` of this stream, as a stream (nothing is read)."""
        stop = len(self) if stop is None else min(stop, len(self))
        return TokenStream(
            self.files, self.dtype, self.counts, self.start + start, self.start + max(start, stop)
        )

    def _fd(self, i: int) -> int:
        fd = self._fds.get(i)
        if fd is None:
            try:
                fd = self._fds[i] = os.open(self.files[i], os.O_RDONLY)
            except OSError as exc:
                raise InputError(f"{self.files[i]}: cannot read token ids: {exc.strerror or exc}") from exc
        return fd

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Absolute positions ``[start, stop)`` as an array of the stored dtype."""
        size = self.dtype.itemsize
        first = int(np.searchsorted(self.bounds, start, side="right")) - 1
        parts = []
        while start < stop:
            end = min(stop, int(self.bounds[first + 1]))
            offset = (start - int(self.bounds[first])) * size
            data = os.pread(self._fd(first), (end - start) * size, offset)
            if len(data) != (end - start) * size:
                raise InputError(f"{self.files[first]}: shorter than its index says (truncated?)")
            parts.append(np.frombuffer(data, dtype=self.dtype))
            start, first = end, first + 1
        if not parts:
            return np.zeros(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``[start, stop)`` (relative to this stream) as an array."""
        stop = len(self) if stop is None else min(stop, len(self))
        start = max(0, start)
        return self._read(self.start + start, self.start + max(start, stop))

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """``int64`` rows ``tokens[s:s + length]`` for each ``s`` of ``starts`` (relative offsets)."""
        out = np.empty((len(starts), length), dtype=np.int64)
        for row, s in enumerate(np.asarray(starts, dtype=np.int64).tolist()):
            if s < 0 or s + length > len(self):
                raise IndexError(f"window [{s}, {s + length}) outside a stream of {len(self)} tokens")
            out[row] = self._read(self.start + s, self.start + s + length)
        return out

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise TypeError("token streams are read in steps of 1")
            start, stop, _ = key.indices(len(self))
            return self.read(start, stop)
        index = int(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"token {key} outside a stream of {len(self)}")
        return self._read(self.start + index, self.start + index + 1)[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self.read()
        return data.astype(dtype) if dtype is not None else data

    def tolist(self) -> list[int]:
        return self.read().tolist()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit os may be gone
            self.close()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers and spawn: open files anew
        return {**self.__dict__, "_fds": {}}


# -- shard directories --------------------------------------------------------------------------------


def is_shard_directory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a shard index (``index.json``)."""
    path = Path(path)
    return path.is_dir() and (path / INDEX_NAME).is_file()


def shard_directory(inputs: Sequence[str] | None) -> Path | None:
    """The shard directory when ``inputs`` is one; None for anything else. A shard directory given with
    other inputs is an error (it is read on its own)."""
    if not inputs:
        return None
    found = [Path(str(i)) for i in inputs if is_shard_directory(str(i))]
    if found and len(list(inputs)) > 1:
        raise InputError(f"{found[0]}: a token shard directory is read on its own; give it as the only input")
    return found[0] if found else None


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Write ids document by document into ``directory`` (already created, empty), cut into shards of
    about ``shard_tokens`` tokens at document boundaries; :meth:`finish` writes the index."""

    def __init__(
        self, directory: str | os.PathLike, vocab_size: int, *, shard_tokens: int = DEFAULT_SHARD_TOKENS
    ):
        if shard_tokens < 1:
            raise InputError(f"--shard-tokens must be >= 1, got {shard_tokens}")
        self.directory = Path(directory)
        self.vocab_size = int(vocab_size)
        self.dtype = dtype_for(self.vocab_size)
        self.shard_tokens = shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._tokens = self._documents = None
        self._count = 0
        self._ends: list[int] = []

    def _open(self) -> None:
        i = len(self.shards)
        self.shards.append(
            {
                "file": f"tokens_{i:05d}.bin",
                "documents_file": f"documents_{i:05d}.bin",
                "tokens": 0,
                "documents": 0,
            }
        )
        self._tokens = open(self.directory / self.shards[-1]["file"], "wb")  # noqa: SIM115
        self._documents = open(self.directory / self.shards[-1]["documents_file"], "wb")  # noqa: SIM115
        self._count = 0

    def _flush_ends(self) -> None:
        if self._ends:
            self._documents.write(np.asarray(self._ends, dtype="<i8").tobytes())
            self.shards[-1]["documents"] += len(self._ends)
            self._ends = []

    def _close(self) -> None:
        if self._tokens is not None:
            self._flush_ends()
            self.shards[-1]["tokens"] = self._count
            self._tokens.close()
            self._documents.close()
            self._tokens = self._documents = None

    def write(self, documents: Sequence[Sequence[int]]) -> None:
        """Append documents (one list of ids each; an empty one is an empty line)."""
        if self._tokens is None:
            self._open()
        lengths = np.fromiter(map(len, documents), np.int64, len(documents))
        flat = np.fromiter((i for doc in documents for i in doc), np.int64, int(lengths.sum()))
        if flat.size and (flat.min() < 0 or flat.max() >= self.vocab_size):
            bad = int(flat.min()) if flat.min() < 0 else int(flat.max())
            raise InputError(f"token id {bad} is outside the vocabulary of {self.vocab_size}")
        ends = np.cumsum(lengths)
        done = 0  # documents written
        while done < len(documents):
            room = self.shard_tokens - self._count
            # the documents that fit in this shard (a shard holds at least one document)
            take = int(np.searchsorted(ends - (ends[done - 1] if done else 0), room, side="right")) - done
            take = max(take, 1 if self._count == 0 else 0)
            if take == 0:
                self._close()
                self._open()
                continue
            first = int(ends[done - 1]) if done else 0
            last = int(ends[done + take - 1])
            self._tokens.write(flat[first:last].astype(self.dtype.newbyteorder("<")).tobytes())
            self._ends.extend((self._count + ends[done : done + take] - first).tolist())
            self._count += last - first
            done += take
            if len(self._ends) >= 1 << 16:
                self._flush_ends()
            if self._count >= self.shard_tokens and done < len(documents):
                self._close()
                self._open()

    def finish(self, **info: Any) -> dict[str, Any]:
        """Close the last shard and write ``index.json`` (``info``: the tokenizer's identity, eos_id, source)."""
        self._close()
        if not self.shards:  # no input at all: one empty shard, so the directory is still readable
            self._open()
            self._close()
        index = {
            "format": SHARD_FORMAT,
            "format_version": SHARD_FORMAT_VERSION,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "tokens": sum(s["tokens"] for s in self.shards),
            "documents": sum(s["documents"] for s in self.shards),
            **info,
            "shards": self.shards,
        }
        (self.directory / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        return index


def copy_tokenizer(tokenizer_path: str | os.PathLike, directory: str | os.PathLike) -> dict[str, Any]:
    """Copy the tokenizer file beside the shards; returns its identity for the index."""
    source = Path(tokenizer_path)
    name = "tokenizer.model" if source.suffix == ".model" else "tokenizer.json"
    shutil.copyfile(source, Path(directory) / name)
    return {"file": name, "source": str(source), "sha256": file_sha256(source)}


class TokenShards:
    """A shard directory opened for reading: its index, the whole stream, and each document's ids."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        path = self.directory / INDEX_NAME
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{self.directory}: not a token shard directory (no {INDEX_NAME})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(index, dict) or index.get("format") != SHARD_FORMAT:
            raise InputError(f"{path}: not a dlnlp token shard index (format {SHARD_FORMAT!r})")
        if index.get("format_version") != SHARD_FORMAT_VERSION:
            raise InputError(
                f"{path}: shard format version {index.get('format_version')} is not supported "
                f"(this dlnlp reads {SHARD_FORMAT_VERSION})"
            )
        self.index = index
        self.shards = index["shards"]
        for shard in self.shards:
            for key in ("file", "documents_file"):
                name = shard[key]
                if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                    raise InputError(f"{path}: shard file name {name!r} leaves {self.directory}")
                if not (self.directory / name).is_file():
                    raise InputError(f"{self.directory / name}: missing (the index lists it)")
            size = (self.directory / shard["file"]).stat().st_size
            if size != shard["tokens"] * np.dtype(index["dtype"]).itemsize:
                raise InputError(
                    f"{self.directory / shard['file']}: {size} bytes, the index says "
                    f"{shard['tokens']} tokens of {index['dtype']} (damaged or still being written)"
                )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.index["dtype"])

    @property
    def vocab_size(self) -> int:
        return int(self.index["vocab_size"])

    def __len__(self) -> int:
        return int(self.index["tokens"])

    def stream(self) -> TokenStream:
        return TokenStream(
            [self.directory / s["file"] for s in self.shards], self.dtype, [s["tokens"] for s in self.shards]
        )

    def document_ends(self) -> np.ndarray:
        """Where each document ends in the whole stream (int64, in memory: 8 bytes a document)."""
        parts, offset = [], 0
        for shard in self.shards:
            ends = np.fromfile(self.directory / shard["documents_file"], dtype="<i8")
            parts.append(ends + offset)
            offset += shard["tokens"]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def documents(self) -> list[list[int]]:
        """Every document's ids (for tests and small corpora: all in memory)."""
        ids = self.stream().read()
        starts = 0
        out = []
        for end in self.document_ends().tolist():
            out.append(ids[starts:end].tolist())
            starts = end
        return out

    def tokenizer_path(self) -> Path | None:
        """The tokenizer stored beside the shards, if any."""
        info = self.index.get("tokenizer") or {}
        name = info.get("file")
        return self.directory / name if name and (self.directory / name).is_file() else None
