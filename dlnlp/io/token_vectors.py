"""Streaming per-token vectors of many lines to a file numpy or torch users read without dlnlp.

A job writes the vectors of every token of every line, in order, and the offsets of each line's
first token (``offsets[i]:offsets[i+1]`` are line ``i``'s rows; ``len(offsets) = lines + 1``):

* ``safetensors``: tensors ``vectors`` ``[tokens, *shape]`` float32 and ``offsets`` ``[lines + 1]``
  int64 in one file (``safetensors.numpy.load_file``);
* ``npy``: ``FILE.npy`` holds the vectors, ``FILE.offsets.npy`` the offsets (``np.load``, with
  ``mmap_mode="r"`` for big ones);
* ``jsonl``: one object per line, ``{"words": [...], "vectors": [[...], ...]}`` (small jobs).

The vectors are streamed as they come (memory does not grow with the input): ``npy`` reserves a
fixed-size header rewritten with the final shape (as :mod:`dlnlp.io.rows` does); ``safetensors``,
whose offsets come first in the file so that both tensors stay 8-byte aligned, spools the vectors to
a temporary file beside the output and copies them after the header at the end. Every file goes
through :func:`dlnlp.io.atomic.atomic_open`: written under a temporary name, renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from dlnlp.errors import OptionError
from dlnlp.io.atomic import atomic_open, check_can_write, is_stream

TOKEN_FORMATS = ("safetensors", "npy", "jsonl")
NPY_HEADER_BYTES = 128


def token_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """``fmt``, or with ``auto`` the format of ``path``'s suffix (``.safetensors``, ``.npy``, else jsonl)."""
    from dlnlp.io.rows import row_format

    return row_format(path, fmt, TOKEN_FORMATS, fallback="jsonl")


def offsets_path(path: str | os.PathLike) -> Path:
    """Where the ``npy`` format writes the offsets: ``vectors.npy`` -> ``vectors.offsets.npy``."""
    path = Path(path)
    stem = path.name[:-4] if path.name.lower().endswith(".npy") else path.name
    return path.with_name(stem + ".offsets.npy")


def output_paths(path: str | os.PathLike, fmt: str) -> list[Path]:
    """Every file a job in ``fmt`` writes at ``path``."""
    return [Path(path), offsets_path(path)] if fmt == "npy" else [Path(path)]


def check_outputs(path: str | os.PathLike, fmt: str, force: bool, inputs: Sequence[Any]) -> None:
    """Refuse (before any work) outputs that exist without ``force``, or that are inputs."""
    if fmt != "jsonl" and is_stream(path):
        raise OptionError(f"--format {fmt} needs a file; give --output FILE, or --format jsonl for stdout")
    for target in output_paths(path, fmt):
        check_can_write(target, force, inputs=inputs, directory=False)


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    body = header.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class TokenVectorWriter:
    """Appends each line's ``[words, *shape]`` vectors; see the module docstring for the formats."""

    def __init__(self, handle: IO[bytes], fmt: str, shape: tuple[int, ...], spool: IO[bytes] | None = None):
        self.handle, self.format, self.shape = handle, fmt, tuple(shape)
        self.spool = spool
        self.offsets = [0]
        if fmt == "npy":
            handle.write(_npy_header((0, *self.shape)))

    @property
    def tokens(self) -> int:
        return self.offsets[-1]

    @property
    def lines(self) -> int:
        return len(self.offsets) - 1

    def write(self, words: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.shape != (len(words), *self.shape):
            raise ValueError(f"vectors of shape {vectors.shape}, expected {(len(words), *self.shape)}")
        if self.format == "jsonl":
            record = {"words": list(words), "vectors": vectors.tolist()}
            self.handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        elif self.format == "npy":
            self.handle.write(vectors.tobytes())
        else:
            self.spool.write(vectors.tobytes())
        self.offsets.append(self.offsets[-1] + len(words))

    def finish(self) -> np.ndarray:
        """Complete the file; returns the offsets (``npy`` callers write them beside it)."""
        offsets = np.asarray(self.offsets, dtype="<i8")
        if self.format == "npy":
            self.handle.seek(0)
            self.handle.write(_npy_header((self.tokens, *self.shape)))
            self.handle.seek(0, os.SEEK_END)
        elif self.format == "safetensors":
            size = self.tokens * int(np.prod(self.shape)) * 4
            header = json.dumps(
                {
                    "offsets": {"dtype": "I64", "shape": [len(offsets)], "data_offsets": [0, offsets.nbytes]},
                    "vectors": {
                        "dtype": "F32",
                        "shape": [self.tokens, *self.shape],
                        "data_offsets": [offsets.nbytes, offsets.nbytes + size],
                    },
                }
            ).encode("utf-8")
            header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned
            self.handle.write(struct.pack("<Q", len(header)) + header + offsets.tobytes())
            self.spool.seek(0)
            shutil.copyfileobj(self.spool, self.handle, 1 << 20)
        return offsets


@contextlib.contextmanager
def open_token_writer(
    path: str | os.PathLike, fmt: str, shape: tuple[int, ...], *, force: bool = False
) -> Iterator[TokenVectorWriter]:
    """A :class:`TokenVectorWriter` on ``path`` (``-``: stdout, jsonl only), each file written atomically."""
    fmt = token_format(path, fmt)
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(atomic_open(path, "wb", force=force))
        spool = None
        if fmt == "safetensors":
            where = Path(path).resolve().parent
            spool = stack.enter_context(tempfile.TemporaryFile(dir=where, prefix=f".{Path(path).name}.spool"))
        writer = TokenVectorWriter(handle, fmt, shape, spool)
        yield writer
        offsets = writer.finish()
        if fmt == "npy":
            with atomic_open(offsets_path(path), "wb", force=force) as out:
                np.save(out, offsets)


def read_token_vectors(path: str | os.PathLike, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(vectors, offsets) of what :func:`open_token_writer` wrote (jsonl: the vectors concatenated)."""
    fmt = token_format(path, fmt)
    if fmt == "npy":
        return np.load(path), np.load(offsets_path(path))
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        return tensors["vectors"], tensors["offsets"]
    rows, offsets = [], [0]
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            vectors = np.asarray(json.loads(line)["vectors"], dtype=np.float32)
            if len(vectors):
                rows.append(vectors)
            offsets.append(offsets[-1] + len(vectors))
    vectors = np.concatenate(rows) if rows else np.zeros((0,), dtype=np.float32)
    return vectors, np.asarray(offsets, dtype=np.int64)
