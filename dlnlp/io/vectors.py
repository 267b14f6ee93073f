"""Word vectors apart from the trainer that made them (gensim's ``KeyedVectors`` idea), and their formats.

Formats read and written:

* ``word2vec-text``: a ``COUNT DIM`` header line, then ``word v1 ... vDIM`` per line (word2vec.c's
  ``-binary 0``; gensim's ``save_word2vec_format(binary=False)``).
* ``word2vec-binary``: the same header, then per word ``word<SPACE>`` + DIM little-endian float32 +
  ``\\n`` (word2vec.c's ``-binary 1``; gensim's ``binary=True``).
* ``glove``: GloVe's text output, ``word v1 ... vDIM`` lines with no header (read only; written with
  ``fmt="glove"``).
* a dlnlp model directory of kind ``vectors``: ``config.json``, ``model.safetensors`` (``vectors``,
  float32) and ``vocab.txt`` (``word<TAB>count``, count 0 when unknown).

Row order is meaningful: it is the frequency order the trainer wrote (most frequent first), and
evaluation's ``restrict`` keeps the first N rows, as gensim's ``restrict_vocab`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dlnlp.errors import InputError, ModelDirError, UsageError
from dlnlp.io.atomic import atomic_open, check_can_write

FORMATS = ("word2vec-text", "word2vec-binary", "glove", "dlnlp")
VECTORS_KIND = "vectors"


class KeyedVectors:
    """Words and a float32 matrix of their vectors, one row per word, plus optional counts."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, counts: Sequence[int] | np.ndarray | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"expected a ({len(words)}, dim) matrix, got shape {vectors.shape}")
        self.words: list[str] = list(words)
        self.vectors = vectors
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.index: dict[str, int] = {}
        for i, word in enumerate(self.words):
            self.index.setdefault(word, i)
        self._norms: np.ndarray | None = None

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        try:
            return self.vectors[self.index[word]]
        except KeyError:
            raise KeyError(f"word {word!r} not in vocabulary") from None

    @property
    def norms(self) -> np.ndarray:
        """Euclidean norm of each row (computed once; gensim's ``fill_norms``)."""
        if self._norms is None:
            self._norms = np.linalg.norm(self.vectors, axis=1)
        return self._norms

    @property
    def _divisors(self) -> np.ndarray:
        """Norms with zeros replaced by 1: an all-zero vector has cosine 0 with everything, not NaN."""
        norms = self.norms
        return np.where(norms > 0, norms, 1.0)

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit length (zero rows stay zero)."""
        return self.vectors / self._divisors[:, None]

    def unit(self, word: str) -> np.ndarray:
        i = self.index[word]
        return self.vectors[i] / self._divisors[i]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words."""
        return float(np.dot(self.unit(a), self.unit(b)))

    def resolve(self, word: str) -> str:
        """``word`` when it is in the vocabulary, else its most frequent (first) spelling in another case,
        as ``vectors eval`` matches words (gensim's case-insensitive evaluation); unchanged when there is none."""
        if word in self.index:
            return word
        folded = word.lower()
        return next((w for w in self.words if w.lower() == folded), word)

    def _lookup(self, word: str) -> int:
        if word not in self.index:
            raise InputError(f"word {word!r} is not in the vocabulary")
        return self.index[word]

    def most_similar(self, positive: str | Iterable[str] = (), negative: str | Iterable[str] = (), topn: int = 10,
                     restrict: int | None = None) -> list[tuple[str, float]]:
        """Nearest words by cosine to the mean of the unit vectors (positive +1, negative -1).

        The input words themselves are excluded, as in gensim's ``most_similar``. ``restrict``
        considers only the first N (most frequent) words.
        """
        _check_search(topn, restrict)
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise InputError("most_similar needs at least one word")
        ids = [self._lookup(w) for w in positive + negative]
        weights = [1.0] * len(positive) + [-1.0] * len(negative)
        divisors = self._divisors
        mean = np.mean([w * self.vectors[i] / divisors[i] for w, i in zip(weights, ids, strict=True)], axis=0)
        length = np.linalg.norm(mean)
        mean = (mean / length if length > 0 else mean).astype(np.float32)
        limit = len(self) if restrict is None else min(restrict, len(self))
        dists = self.vectors[:limit] @ mean / divisors[:limit]
        return self._top(dists, topn, set(ids))

    def most_similar_cosmul(self, positive: Sequence[str], negative: Sequence[str], topn: int = 10,
                            restrict: int | None = None) -> list[tuple[str, float]]:
        """3CosMul (Levy and Goldberg 2014): prod cos(x, p) / (prod cos(x, n) + 1e-3), cosines mapped to [0, 1]."""
        ids_pos = [self._lookup(w) for w in positive]
        ids_neg = [self._lookup(w) for w in negative]
        _check_search(topn, restrict)
        limit = len(self) if restrict is None else min(restrict, len(self))
        unit = self.normalized()[:limit]
        full = self.normalized()
        score = np.ones(limit, dtype=np.float32)
        for i in ids_pos:
            score *= (1 + unit @ full[i]) / 2
        denominator = np.ones(limit, dtype=np.float32)
        for i in ids_neg:
            denominator *= (1 + unit @ full[i]) / 2
        return self._top(score / (denominator + 1e-3), topn, set(ids_pos + ids_neg))

    def _top(self, scores: np.ndarray, topn: int, exclude: set[int]) -> list[tuple[str, float]]:
        k = min(topn + len(exclude), len(scores))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best if i not in exclude][:topn]

    def subset(self, limit: int) -> KeyedVectors:
        counts = None if self.counts is None else self.counts[:limit]
        return KeyedVectors(self.words[:limit], self.vectors[:limit], counts)

    def keyed_vectors(self) -> KeyedVectors:
        """Itself: every model with word vectors answers ``keyed_vectors()`` (word2vec, and these)."""
        return self


# -- writing ----------------------------------------------------------------------------------
def _check_search(topn: int, restrict: int | None) -> None:
    if topn < 1:
        raise InputError(f"--topn must be >= 1, got {topn}")
    if restrict is not None and restrict < 1:
        raise InputError(f"--restrict must be >= 1, got {restrict}")


def _check_words(kv: KeyedVectors, fmt: str) -> None:
    for word in kv.words:
        if not word or any(ch.isspace() for ch in word):
            raise InputError(f"cannot write word {word!r} in {fmt} format: words must be non-empty, without spaces")


def save_vectors(kv: KeyedVectors, path: str | os.PathLike, fmt: str = "word2vec-text", force: bool = False) -> Path:
    """Write ``kv`` atomically in ``fmt`` (one of FORMATS); an existing output needs ``force``."""
    target = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown vectors format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "dlnlp":
        return _save_model_dir(kv, target, force)
    _check_words(kv, fmt)
    check_can_write(target, force)
    with atomic_open(target, "wb", force=force) as handle:
        if fmt != "glove":
            handle.write(f"{len(kv)} {kv.dim}\n".encode())
        if fmt == "word2vec-binary":
            rows = kv.vectors.astype("<f4")
            for word, row in zip(kv.words, rows, strict=True):
                handle.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            # 9 significant digits round-trip float32 exactly.
            line = " ".join(["%.9g"] * kv.dim) + "\n"
            lines = [f"{word} " + line % tuple(row) for word, row in zip(kv.words, kv.vectors.tolist(), strict=True)]
            handle.write("".join(lines).encode("utf-8"))
    return target


def _save_model_dir(kv: KeyedVectors, target: Path, force: bool, files: dict[str, str] | None = None,
                    **config: object) -> Path:
    from dlnlp.io.modeldir import make_config, write_model_dir

    counts = kv.counts if kv.counts is not None else np.zeros(len(kv), dtype=np.int64)
    vocab_text = "".join(f"{w}\t{int(c)}\n" for w, c in zip(kv.words, counts, strict=True))
    cfg = make_config(VECTORS_KIND, dim=kv.dim, vocab_size=len(kv), **config)
    write_model_dir(target, cfg, {"vectors": kv.vectors}, {"vocab.txt": vocab_text, **(files or {})}, force=force)
    return target


OUTPUT_FORMATS = ("auto", "dir", "word2vec-text", "word2vec-binary", "glove")


def output_format(out: Path, fmt: str) -> str:
    """The format a training command writes for ``--format`` (``auto``: by the suffix of --out:
    ``.bin`` word2vec binary, ``.txt``/``.vec``/``.w2v`` word2vec text, ``-`` (stdout) word2vec text,
    else a model directory)."""
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(OUTPUT_FORMATS)}")
    if fmt != "auto":
        return fmt
    if str(out) == "-":
        return "word2vec-text"
    suffix = Path(out).suffix.lower()
    if suffix == ".bin":
        return "word2vec-binary"
    if suffix in (".txt", ".vec", ".w2v"):
        return "word2vec-text"
    return "dir"


def write_vectors_output(kv: KeyedVectors, out: str | os.PathLike, fmt: str, *, force: bool = False,
                         config: dict | None = None, files: dict[str, str] | None = None) -> Path:
    """Write a training command's vectors: a model directory (``config`` into config.json, ``files``
    beside it, such as metrics.jsonl) or a vectors file."""
    if fmt == "dir":
        # dim and vocab_size come from the vectors themselves.
        extra = {k: v for k, v in (config or {}).items() if k not in ("dim", "vocab_size")}
        return _save_model_dir(kv, Path(out), force, files=files, **extra)
    return save_vectors(kv, out, fmt=fmt, force=force)


def save_vectors_dir(kv: KeyedVectors, path: str | os.PathLike, *, force: bool = False, **config: object) -> Path:
    """A dlnlp model directory of kind ``vectors``; ``config`` adds training hyperparameters to config.json."""
    return _save_model_dir(kv, Path(path), force, **config)


# -- reading ----------------------------------------------------------------------------------
def _parse_header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def detect_format(path: str | os.PathLike) -> str:
    """``dlnlp`` for a directory, else ``word2vec-binary``, ``word2vec-text`` or ``glove`` by content."""
    target = Path(path)
    if target.is_dir():
        return "dlnlp"
    with open(target, "rb") as handle:
        first = handle.readline()
        header = _parse_header(first)
        if header is None:
            return "glove"
        count, dim = header
        if count == 0:
            return "word2vec-text"
        # A text record is "word" + dim numbers on one line; a binary one has raw float bytes after
        # the space, which do not read as dim decimal numbers.
        line = handle.readline(1 << 20)
    try:
        values = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return "word2vec-binary"
    # A line of printable text is a text record (raw float bytes essentially never decode as
    # printable UTF-8); a malformed one is then reported by the text reader with its line number.
    text = line.decode("utf-8").rstrip("\r\n")
    if len(values) >= 2 and all(ch.isprintable() or ch in " \t" for ch in text):
        return "word2vec-text"
    return "word2vec-binary"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_vectors(path: str | os.PathLike, fmt: str = "auto", *, limit: int | None = None,
                 encoding_errors: str = "strict") -> KeyedVectors:
    """Read vectors in any of FORMATS (``auto`` detects it); ``limit`` reads only the first N words."""
    target = Path(path)
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    if not target.exists():
        raise InputError(f"{target}: no such file")
    if fmt == "auto":
        fmt = detect_format(target)
    if fmt not in FORMATS:
        raise InputError(f"unknown vectors format {fmt!r} (expected auto or one of {', '.join(FORMATS)})")
    if fmt == "dlnlp":
        kv = _load_model_dir(target)
        return kv.subset(limit) if limit else kv
    if target.is_dir():
        raise InputError(f"{target}: is a directory, expected a {fmt} file")
    if fmt == "word2vec-binary":
        return _load_binary(target, limit, encoding_errors)
    return _load_text(target, fmt == "word2vec-text", limit, encoding_errors)


def _load_model_dir(target: Path) -> KeyedVectors:
    from dlnlp.io.modeldir import load_weights, read_config

    # Any model directory with a "vectors" tensor and vocab.txt: kind "vectors", "word2vec", ...
    config = read_config(target)
    weights = load_weights(target, framework="np")
    if "vectors" not in weights:
        raise ModelDirError(f"{target}: a {config['kind']!r} model directory without word vectors")
    words, counts = [], []
    vocab_path = target / "vocab.txt"
    if not vocab_path.is_file():
        raise ModelDirError(f"{target}: no vocab.txt")
    try:
        text = vocab_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelDirError(f"{vocab_path}: not valid UTF-8 ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line:
            word, tab, count = line.rpartition("\t")
            if not tab or not (count.isdigit() or count == ""):
                raise ModelDirError(f"{vocab_path}:{number}: expected WORD<tab>COUNT, got {line[:60]!r}")
            words.append(word)
            counts.append(int(count or 0))
    vectors = weights["vectors"]
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ModelDirError(f"{target}: vocab.txt has {len(words)} words, model.safetensors "
                            f"{'x'.join(map(str, vectors.shape))} vectors")
    return KeyedVectors(words, vectors, counts)


def _decode(raw: bytes, target: Path, where: str, errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise InputError(f"{target}:{where}: not valid UTF-8 ({exc.reason})") from exc


def _dedupe(words: list[str], rows: list) -> tuple[list[str], list]:
    seen: set[str] = set()
    if len(set(words)) == len(words):
        return words, rows
    keep = [i for i, w in enumerate(words) if not (w in seen or seen.add(w))]
    from dlnlp.progress import warn

    warn(f"{len(words) - len(keep)} duplicate word(s) in the vectors file; keeping the first of each")
    return [words[i] for i in keep], [rows[i] for i in keep]


def _load_text(target: Path, has_header: bool, limit: int | None, errors: str) -> KeyedVectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim: int | None = None
    expected: int | None = None
    with open(target, "rb") as handle:
        number = 0
        if has_header:
            number = 1
            header = _parse_header(handle.readline())
            if header is None:
                raise InputError(f"{target}:1: expected a 'COUNT DIM' header")
            expected, dim = header
        for raw in handle:
            number += 1
            if limit is not None and len(words) >= limit:
                break
            line = _decode(raw, target, str(number), errors).rstrip("\r\n").rstrip(" ")
            if not line:
                continue
            parts = line.split(" ")
            if dim is None:  # GloVe: the first line fixes the dimension
                dim = len(parts) - 1
                if dim < 1:
                    raise InputError(f"{target}:{number}: expected 'word v1 v2 ...'")
            if len(parts) < dim + 1:
                raise InputError(f"{target}:{number}: expected a word and {dim} numbers, got {len(parts)} fields")
            try:
                rows.append(np.array(parts[-dim:], dtype=np.float32))
            except ValueError as exc:
                raise InputError(f"{target}:{number}: not a number ({exc})") from exc
            words.append(" ".join(parts[:-dim]))
    if dim is None:
        raise InputError(f"{target}: no vectors in the file")
    if expected is not None and limit is None and len(words) != expected:
        raise InputError(f"{target}: header says {expected} words, the file has {len(words)}")
    words, rows = _dedupe(words, rows)
    matrix = np.vstack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return KeyedVectors(words, matrix)


def _load_binary(target: Path, limit: int | None, errors: str) -> KeyedVectors:
    data = target.read_bytes()
    end = data.find(b"\n")
    header = _parse_header(data[:end]) if end >= 0 else None
    if header is None:
        raise InputError(f"{target}:1: expected a 'COUNT DIM' header")
    count, dim = header
    if limit is not None:
        count = min(count, limit)
    width = 4 * dim
    pos = end + 1
    words: list[str] = []
    matrix = np.empty((count, dim), dtype=np.float32)
    for i in range(count):
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):  # word2vec.c's optional newline
            pos += 1
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + width > len(data):
            raise InputError(f"{target}: truncated binary vectors file at word {i + 1} of {count}")
        words.append(_decode(data[pos:space], target, f"word {i + 1}", errors))
        matrix[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    words, rows = _dedupe(words, list(matrix))
    if len(rows) != len(matrix):
        matrix = np.vstack(rows)
    return KeyedVectors(words, matrix)
