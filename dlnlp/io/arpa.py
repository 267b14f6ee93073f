"""ARPA back-off language model files (read and write, plain or ``.gz``/``.bz2``/``.xz``).

The format (Doug Paul's ARPA / SRILM / KenLM)::

    \\data\\
    ngram 1=3
    ngram 2=2

    \\1-grams:
    -1.2041  <unk>  0
    -99      <s>    -0.3010
    ...
    \\end\\

Each entry is ``log10 p <TAB> w1 .. wn [<TAB> log10 backoff]``; a missing backoff means 0. Files
are read in one pass into :class:`ArpaTables` (the n-grams of each order as word-id rows, with their
log10 probabilities and backoffs); vocabulary ids are assigned with ``<unk>``, ``<s>``, ``</s>``
first (:data:`SPECIALS`, the convention :mod:`dlnlp.models.ngram_counts` shares), and the n-gram
model builds itself from the tables (:func:`dlnlp.models.ngram.load_arpa`). A file without
``<unk>`` gets one with log10 probability -100, as KenLM does when it loads such a file. A log10 value of -99 or less means
probability 0 (SRILM's convention) and is kept as ``-inf``; zero probabilities are written as -99.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlnlp.errors import InputError

SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 in every vocabulary read from ARPA

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
MISSING_UNK_LOG10 = -100.0
LOG10_ZERO = -99.0


def _open_text(path: str | os.PathLike, mode: str):
    opener = _OPENERS.get(Path(path).suffix)
    if opener is not None:
        return opener(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")  # noqa: SIM115


def _fmt(values: np.ndarray) -> list[str]:
    """Shortest float32 decimal strings (what KenLM writes; C-speed); -inf is ARPA's -99."""
    v = np.where(np.isfinite(values), values, LOG10_ZERO).astype(np.float32)
    v[v == 0] = 0.0  # no "-0.0"
    return v.astype(np.dtypes.StringDType()).tolist()


# n-grams formatted and written per block: progress moves, and the text of one block is all that is
# held at once beside the words of the order being written
WRITE_BLOCK = 1 << 20
READ_BLOCK = 1 << 24  # characters read per progress update
# Smaller files and models take well under a second: no progress lines for them (a bad small file
# then fails with its one error line only).
PROGRESS_MIN_BYTES = 1 << 22
PROGRESS_MIN_NGRAMS = 100_000


def write_arpa(model, path: str | os.PathLike, *, force: bool = False, quiet: bool = True) -> None:
    """Write an n-gram model as ARPA (atomically; compressed by suffix). ``model`` is anything with the
    trie of :class:`~dlnlp.models.ngram.NgramModel`: ``vocab``, ``order``, ``keys``, ``logp``, ``logbo``,
    ``counts()``, ``smoothing`` and ``normalized``. Progress (n-grams written) goes to stderr unless
    ``quiet``."""
    from dlnlp.io.atomic import atomic_open
    from dlnlp.progress import Progress
    vocab = np.array(model.vocab, dtype=object)
    target = Path(path)
    opener = _OPENERS.get(target.suffix)
    counts = list(model.counts())
    quiet = quiet or sum(counts) < PROGRESS_MIN_NGRAMS
    with (atomic_open(target, "wb", force=force) as raw,
          Progress("writing ARPA", total=sum(counts), unit="n-grams", quiet=quiet) as progress):
        # A compressor over the temporary file does not close it; TextIOWrapper is detached instead.
        out = opener(raw, "wt", encoding="utf-8") if opener else io.TextIOWrapper(raw, encoding="utf-8")
        out.write(f"# dlnlp n-gram model, smoothing: {model.smoothing}"
                  f"{'' if model.normalized else ' (scores, not normalized)'}\n")
        out.write("\\data\\\n")
        for n, count in enumerate(counts, start=1):
            out.write(f"ngram {n}={count}\n")
        V = len(model.vocab)
        words = vocab
        for n in range(1, model.order + 1):
            out.write(f"\n\\{n}-grams:\n")
            keys = model.keys[n - 1]
            logp = model.logp[n - 1]
            logbo = model.logbo[n - 1] if n < model.order else None
            if n > 1:  # an n-gram's text is its context's text plus its last word
                words = words[keys // V] + " " + vocab[keys % V]
            for start in range(0, len(keys), WRITE_BLOCK):
                block = slice(start, start + WRITE_BLOCK)
                lines = words[block].tolist()
                probs = _fmt(logp[block])
                if logbo is None:
                    lines = [f"{p}\t{w}\n" for p, w in zip(probs, lines, strict=True)]
                else:
                    bos = _fmt(logbo[block])
                    zero = (logbo[block] == 0).tolist()
                    lines = [f"{p}\t{w}\n" if z else f"{p}\t{w}\t{b}\n"
                             for p, w, b, z in zip(probs, lines, bos, zero, strict=True)]
                out.write("".join(lines))
                progress.update(len(lines), order=n)
        out.write("\n\\end\\\n")
        if opener:
            out.close()
        else:
            out.flush()
            out.detach()


@dataclass
class ArpaTables:
    """What an ARPA file holds: the vocabulary (``SPECIALS`` first) and, for each order ``n``, the
    n-grams as rows of ``n`` word ids with their log10 probabilities and (below the top order) backoffs."""

    vocab: list[str]
    rows: list[np.ndarray]
    logp: list[np.ndarray]
    logbo: list[np.ndarray]
    source: str = ""
    info: dict = field(default_factory=dict)


def _read_text(path: str | os.PathLike, quiet: bool) -> str:
    """The whole (decompressed) text, read in blocks so that a progress line can follow it."""
    from dlnlp.progress import Progress

    plain = Path(path).suffix not in _OPENERS
    total = Path(path).stat().st_size if plain else None  # a compressed file's text size is unknown
    blocks = []
    with (_open_text(path, "r") as handle,
          Progress("reading ARPA", total=total, unit="bytes" if plain else "chars", quiet=quiet) as progress):
        while block := handle.read(READ_BLOCK):
            blocks.append(block)
            # a plain file's bytes read so far; a compressed one's decompressed characters
            progress.update(handle.buffer.tell() - progress.completed if plain else len(block))
    return "".join(blocks)


def read_arpa_tables(path: str | os.PathLike, warn=None, *, quiet: bool = True) -> ArpaTables:
    """Read an ARPA file into :class:`ArpaTables` (-99 and below become ``-inf``); progress (text read,
    then n-grams parsed) goes to stderr unless ``quiet``."""
    from dlnlp.progress import Progress

    name = str(path)
    if not Path(path).is_file():
        raise InputError(f"{name}: no such file")
    quiet = quiet or Path(path).stat().st_size < PROGRESS_MIN_BYTES
    try:
        text = _read_text(path, quiet)
    except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as exc:
        raise InputError(f"{name}: cannot read ARPA file ({exc})") from exc
    start = text.find("\\data\\")
    if start < 0:
        raise InputError(f"{name}: not an ARPA file (no \\data\\ header)")
    first_section = text.find("\n\\", start + 6)
    expected: dict[int, int] = {}
    for line in text[start + 6: first_section if first_section > 0 else len(text)].split("\n"):
        line = line.strip()
        if line.startswith("ngram "):
            try:
                n, c = line[6:].split("=")
                expected[int(n)] = int(c)
            except ValueError as exc:
                raise InputError(f"{name}: bad header line {line!r}") from exc
    if not expected or sorted(expected) != list(range(1, max(expected) + 1)):
        raise InputError(f"{name}: bad \\data\\ section (n-gram counts missing)")
    N = max(expected)
    sections: dict[int, str] = {}
    pos = start
    for n in range(1, N + 1):
        head = text.find(f"\\{n}-grams:", pos)
        if head < 0:
            raise InputError(f"{name}: no \\{n}-grams: section")
        body = text.find("\n", head) + 1
        end = text.find("\n\\", body - 1)
        end = len(text) if end < 0 else end
        sections[n] = text[body:end].strip()
        pos = end
    del text
    with Progress("parsing ARPA", total=sum(expected.values()), unit="n-grams", quiet=quiet) as parsing:
        # Unigrams define the vocabulary: specials first.
        uni_words, uni_p, uni_bo = _parse_section(sections.pop(1), 1, expected[1], name)
        parsing.update(expected[1], order=1)
        vocab = list(SPECIALS)
        index = {w: i for i, w in enumerate(vocab)}
        for w in uni_words:
            if w not in index:
                index[w] = len(vocab)
                vocab.append(w)
        V = len(vocab)
        p1 = np.full(V, np.nan)
        bo1 = np.zeros(V)
        ids = np.fromiter((index[w] for w in uni_words), dtype=np.int64, count=len(uni_words))
        if len(np.unique(ids)) != len(ids):
            raise InputError(f"{name}: duplicate unigrams")
        p1[ids] = uni_p
        bo1[ids] = uni_bo
        missing_unk = bool(np.isnan(p1[0]))
        if missing_unk:
            if warn is not None:
                warn(f"{name}: no <unk> in the model; giving it log10 probability {MISSING_UNK_LOG10}")
            p1[0] = MISSING_UNK_LOG10
        for special in (1, 2):
            if np.isnan(p1[special]):
                if warn is not None:
                    warn(f"{name}: no {vocab[special]} in the model; adding it")
                p1[special] = LOG10_ZERO
        rows = [np.arange(V, dtype=np.int64).reshape(-1, 1)]
        logp = [p1]
        logbo = [bo1]
        for n in range(2, N + 1):
            columns, p, bo = _parse_section(sections.pop(n), n, expected[n], name)
            r = np.empty((len(p), n), dtype=np.int64)
            try:
                for j, col in enumerate(columns):
                    r[:, j] = np.fromiter(map(index.__getitem__, col), dtype=np.int64, count=len(col))
            except KeyError as exc:
                raise InputError(f"{name}: the {n}-grams use a word that is not a unigram: {exc.args[0]}") from exc
            rows.append(r)
            logp.append(p)
            logbo.append(bo)
            parsing.update(expected[n], order=n)
    # ARPA's -99 (or less) is probability 0; a missing <unk> gets KenLM's finite -100 regardless.
    logp = [np.where(p <= LOG10_ZERO, -np.inf, p) for p in logp]
    if missing_unk:
        logp[0][0] = MISSING_UNK_LOG10
    logp[0][1] = -np.inf  # <s> is context only
    logbo = [np.where(b <= LOG10_ZERO, -np.inf, b) for b in logbo]
    return ArpaTables(vocab, rows, logp, logbo[: N - 1], name, {"source": name})


def _parse_section(block: str, n: int, expected: int, name: str):
    """Words, log10 probabilities and backoffs of one section, parsed column-wise."""
    width = n + 2
    tokens = block.split()
    lines: list[str] = []
    if block.count("\n") + 1 == expected and len(tokens) == expected * (n + 1):
        width = n + 1  # no backoffs at all (the top order)
    elif not (block.count("\n") + 1 == expected and len(tokens) == expected * (n + 2)):
        lines = [line for line in block.split("\n") if line.strip()]
        if len(lines) != expected:
            raise InputError(f"{name}: the header says {expected} {n}-grams, the file has {len(lines)}")
        # Mixed: lmplz omits zero backoffs. Give every tab-separated line its backoff...
        tokens = "\n".join([line if line.count("\t") >= 2 else line + "\t0" for line in lines]).split()
    if len(tokens) != expected * width:
        # ...and where that does not add up (space-separated files), parse line by line.
        fixed = []
        for line in lines:
            fields = line.split()
            if len(fields) == n + 1:
                fields.append("0")
            elif len(fields) != n + 2:
                raise InputError(f"{name}: bad {n}-gram line {line.strip()!r}")
            fixed.extend(fields)
        tokens = fixed
    try:
        probs = np.array(tokens[0::width], dtype=np.float64)
        backoffs = (np.array(tokens[width - 1::width], dtype=np.float64) if width == n + 2
                    else np.zeros(expected))
    except ValueError as exc:
        raise InputError(f"{name}: bad number in the {n}-grams ({exc})") from exc
    if n == 1:
        words = tokens[1::width]
    else:
        words = [tokens[1 + j::width] for j in range(n)]  # one list per position
    return words, probs, backoffs
