"""Streaming a float32 matrix to a file one batch of rows at a time: ``.npy``, safetensors or text.

Sentence embeddings come out in batches and the number of rows is known only at the end, so the
binary formats reserve a fixed-size header, stream the rows after it and rewrite the header with
the final shape when the writer closes (memory does not grow with the input):

* ``npy``: NumPy format 1.0 with a 128-byte header (its length field says so; ``np.load`` reads any
  header length), C order, little-endian float32;
* ``safetensors``: one tensor (``embeddings`` by default) after a header padded with spaces to a
  fixed length, which the format allows;
* ``text``: one row a line, values separated by spaces, printed with 9 significant digits (enough
  to read every float32 back exactly); it may go to stdout (``-``).

The file is written through :func:`dlnlp.io.atomic.atomic_open`: a temporary file renamed into place
on success, never overwriting an existing file without ``force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from dlnlp.errors import OptionError, UsageError
from dlnlp.io.atomic import atomic_open, is_stream

ROW_FORMATS = ("npy", "safetensors", "text")
NPY_HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the dict, padded
SAFETENSORS_HEADER_BYTES = 256  # the JSON header after the 8-byte length; rows start 8-byte aligned


def row_format(path: str | os.PathLike, fmt: str = "auto", formats: tuple[str, ...] = ROW_FORMATS,
               fallback: str = "text") -> str:
    """``fmt`` (one of ``formats``), or with ``auto`` the format of ``path``'s suffix (``.npy``,
    ``.safetensors``, else ``fallback``)."""
    if fmt == "auto":
        suffix = Path(str(path)).suffix.lower()
        return {".npy": "npy", ".safetensors": "safetensors"}.get(suffix, fallback)
    if fmt not in formats:
        raise UsageError(f"--format must be auto, {', '.join(formats)}, got {fmt!r}")
    return fmt


def _npy_header(rows: int, dim: int) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    body = header.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def _safetensors_header(rows: int, dim: int, name: str) -> bytes:
    header = json.dumps({name: {"dtype": "F32", "shape": [rows, dim], "data_offsets": [0, rows * dim * 4]}})
    return struct.pack("<Q", SAFETENSORS_HEADER_BYTES) + header.ljust(SAFETENSORS_HEADER_BYTES).encode("utf-8")


class RowWriter:
    """Appends float32 rows of width ``dim`` to an open binary handle in one of :data:`ROW_FORMATS`."""

    def __init__(self, handle: IO[bytes], fmt: str, dim: int, name: str = "embeddings") -> None:
        self.handle, self.format, self.dim, self.name = handle, fmt, dim, name
        self.rows = 0
        if fmt != "text":
            self.handle.write(self._header())

    def _header(self) -> bytes:
        if self.format == "npy":
            return _npy_header(self.rows, self.dim)
        return _safetensors_header(self.rows, self.dim, self.name)

    def write(self, rows: np.ndarray) -> None:
        """Append ``rows`` ``[n, dim]`` (converted to float32)."""
        rows = np.ascontiguousarray(rows, dtype="<f4")
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"rows of shape {rows.shape}, expected [n, {self.dim}]")
        if self.format == "text":
            np.savetxt(self.handle, rows, fmt="%.9g")
        else:
            self.handle.write(rows.tobytes())
        self.rows += rows.shape[0]

    def finish(self) -> None:
        """Write the final shape into the header (binary formats)."""
        if self.format != "text":
            self.handle.seek(0)
            self.handle.write(self._header())
            self.handle.seek(0, os.SEEK_END)


@contextlib.contextmanager
def open_row_writer(path: str | os.PathLike, fmt: str, dim: int, *, force: bool = False,
                    name: str = "embeddings") -> Iterator[RowWriter]:
    """A :class:`RowWriter` on ``path`` (``-`` for stdout, text only), written atomically."""
    fmt = row_format(path, fmt)
    if fmt != "text" and is_stream(path):
        raise OptionError(f"--format {fmt} needs a file (its header, written last, holds the row count); "
                          "give --out FILE, or --format text for stdout")
    with atomic_open(path, "wb", force=force) as handle:
        writer = RowWriter(handle, fmt, dim, name)
        yield writer
        writer.finish()


def read_rows(path: str | os.PathLike, fmt: str = "auto", name: str = "embeddings") -> np.ndarray:
    """Read back what :func:`open_row_writer` wrote (float32 ``[rows, dim]``)."""
    fmt = row_format(path, fmt)
    if fmt == "npy":
        return np.load(path)
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))[name]
    return np.loadtxt(path, dtype=np.float32, ndmin=2)
