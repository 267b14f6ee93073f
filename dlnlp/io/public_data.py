"""The public corpora the README, tests and benchmarks use: a manifest, a cache, and how to fill it.

``data/manifest.json`` (read through the package's link ``dlnlp/io/public_data.json``) names each
dataset, its files (paths relative to a data directory laid out as ``corpora/...`` and
``eval/...``), the SHA-256 and size of each file, its upstream source URLs, its licence and the rule
that splits it. The files live in a cache directory, ``$DLNLP_DATA_DIR`` (default
``~/.cache/dlnlp/data``), under those same relative paths.

:func:`get` fills the cache in one of two ways, and accepts a file only when its SHA-256 matches the
manifest's (a file is written under a temporary name and renamed into place, so an interrupted or
corrupt download leaves nothing behind):

* **From a mirror** (``$DLNLP_DATA_MIRROR`` or ``mirror=``): an ``http(s)://`` or ``file://`` URL, or
  a local directory, laid out like the data directory. Each final file is fetched by its relative
  path. This is how the tests run offline (against a local HTTP server) and how a site serves a
  verified copy to machines without internet access.
* **From upstream** (no mirror): the source archives are downloaded with :mod:`urllib` into
  ``DIR/.sources/NAME/`` and the files are built by the dataset's split rule (the ``_build_*`` functions
  below; the rules are pure functions, tested offline on small inputs and, where the inputs are
  themselves in the data directory, against the real files). The result must still match the
  manifest; when it differs (an upstream file changed) nothing is installed and the error says so.
  The project's tests never touch the network, so this path is exercised only by a user online:
  the split rules are tested, the downloads are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dlnlp.errors import DlnlpError, UsageError
from dlnlp.io.atomic import atomic_path

MANIFEST_PATH = Path(__file__).with_name("public_data.json")  # a link to data/manifest.json
DATA_DIR_ENV = "DLNLP_DATA_DIR"
MIRROR_ENV = "DLNLP_DATA_MIRROR"
CHUNK = 1 << 16
TIMEOUT_S = 60


class DataError(DlnlpError):
    """A dataset that could not be fetched, built or verified; the message says which file and why."""


@dataclass(frozen=True)
class DataFile:
    """One final file of a dataset: its path relative to the data directory, SHA-256 and size."""

    path: str
    sha256: str
    size: int

    @property
    def short(self) -> str:
        """The file's name without its extension (``train`` for ``corpora/brown/train.txt``)."""
        return Path(self.path).name.split(".")[0]


@dataclass(frozen=True)
class Dataset:
    """A manifest entry: ``files`` are what the cache holds, ``sources`` where upstream publishes them."""

    name: str
    description: str
    files: tuple[DataFile, ...]
    sources: tuple[str, ...]
    licence: str
    split: str
    builder: str
    requires: tuple[str, ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, Dataset]:
    """The datasets of the manifest, by name, in the manifest's order."""
    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the data manifest ({exc})") from None
    if raw.get("format_version") != 1:
        raise DataError(f"{path}: data manifest format_version {raw.get('format_version')!r}, expected 1")
    datasets = {}
    for entry in raw["datasets"]:
        files = tuple(DataFile(f["path"], f["sha256"], int(f["size"])) for f in entry["files"])
        datasets[entry["name"]] = Dataset(
            name=entry["name"],
            description=entry["description"],
            files=files,
            sources=tuple(entry.get("sources", ())),
            licence=entry["licence"],
            split=entry["split"],
            builder=entry["builder"],
            requires=tuple(entry.get("requires", ())),
        )
    return datasets


def data_dir(directory: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``directory``, else ``$DLNLP_DATA_DIR``, else ``~/.cache/dlnlp/data``."""
    if directory is not None:
        return Path(directory).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlnlp" / "data"


def default_mirror() -> str | None:
    """``$DLNLP_DATA_MIRROR`` when set (and not empty)."""
    return os.environ.get(MIRROR_ENV) or None


def select(names: Iterable[str], manifest: Mapping[str, Dataset]) -> list[tuple[Dataset, list[DataFile]]]:
    """Resolve names to (dataset, files): ``brown`` is every file of the dataset, ``brown/train`` one of
    them (by file name without extension), and a relative path such as ``corpora/brown/train.txt`` too."""
    chosen: list[tuple[Dataset, list[DataFile]]] = []
    for name in names:
        found = None
        if name in manifest:
            found = (manifest[name], list(manifest[name].files))
        else:
            head, _, tail = name.partition("/")
            for dataset in manifest.values():
                match = [
                    f for f in dataset.files if f.path == name or (head == dataset.name and f.short == tail)
                ]
                if match:
                    found = (dataset, match)
                    break
        if found is None:
            known = ", ".join(
                n + (f" ({', '.join(f'{n}/{f.short}' for f in d.files)})" if len(d.files) > 1 else "")
                for n, d in manifest.items()
            )
            raise UsageError(f"unknown dataset {name!r} (known: {known})")
        chosen.append(found)
    return chosen


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def local_path(file: DataFile, root: Path) -> Path:
    return root / file.path


def is_present(file: DataFile, root: Path, *, verify: bool = False) -> bool:
    """The file is in the cache with its size (and, with ``verify``, its SHA-256)."""
    path = local_path(file, root)
    try:
        if not path.is_file() or path.stat().st_size != file.size:
            return False
    except OSError:
        return False
    return not verify or sha256_file(path) == file.sha256


def paths(
    names: Iterable[str], *, root: Path | None = None, manifest: Mapping[str, Dataset] | None = None
) -> list[Path]:
    """The cached paths of ``names``; a missing one is an error naming ``dlnlp data get``."""
    root = data_dir(root)
    manifest = manifest if manifest is not None else load_manifest()
    found = []
    for dataset, files in select(names, manifest):
        for file in files:
            if not is_present(file, root):
                raise DataError(
                    f"{dataset.name}: {local_path(file, root)} is not downloaded; "
                    f"run `dlnlp data get {dataset.name}` first"
                )
            found.append(local_path(file, root))
    return found


# --- fetching -------------------------------------------------------------------------------------

Reporter = Callable[[str, int | None], "contextlib.AbstractContextManager[Callable[[int], None]]"]


@contextlib.contextmanager
def _silent(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    yield lambda advance: None


def _open_url(url: str) -> tuple[IO[bytes], int | None]:
    request = urllib.request.Request(url, headers={"User-Agent": "dlnlp-data"})
    response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (http, https and file only)
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def _is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https", "file")


def _open_mirror(mirror: str, relative: str) -> tuple[IO[bytes], int | None, str]:
    """Open ``relative`` on a mirror (URL or directory): the stream, its length if known, where it came from."""
    if _is_url(mirror):
        url = mirror.rstrip("/") + "/" + urllib.parse.quote(relative)
        try:
            stream, length = _open_url(url)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"{url}: cannot download ({reason})") from None
        return stream, length, url
    path = Path(mirror).expanduser() / relative
    if not Path(mirror).expanduser().is_dir():
        raise DataError(f"{mirror}: the data mirror is neither an http(s)/file URL nor a directory")
    try:
        return open(path, "rb"), path.stat().st_size, str(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read from the mirror ({exc.strerror})") from None


def _copy_verified(stream: IO[bytes], origin: str, file: DataFile, target: Path, progress: Reporter) -> None:
    """Stream into a temporary file beside ``target`` while hashing; rename it into place only when
    the size and SHA-256 match (else it is removed, and ``target`` is left as it was)."""
    digest = hashlib.sha256()
    size = 0
    with (
        atomic_path(target, force=True, check=False) as tmp,
        open(tmp, "wb") as out,
        progress(file.path, file.size) as advance,
    ):
        for block in iter(lambda: stream.read(CHUNK), b""):
            out.write(block)
            digest.update(block)
            size += len(block)
            advance(len(block))
        out.flush()
        os.fsync(out.fileno())
        if size != file.size:
            raise DataError(
                f"{origin}: {'incomplete download: ' if size < file.size else ''}got {size} bytes, "
                f"expected {file.size}; nothing was installed"
            )
        if digest.hexdigest() != file.sha256:
            raise DataError(
                f"{origin}: SHA-256 mismatch (got {digest.hexdigest()}, expected {file.sha256}); "
                "the file is corrupt or not the published version; nothing was installed"
            )


def fetch_from_mirror(file: DataFile, mirror: str, root: Path, progress: Reporter = _silent) -> Path:
    stream, _, origin = _open_mirror(mirror, file.path)
    target = local_path(file, root)
    with stream:
        try:
            _copy_verified(stream, origin, file, target, progress)
        except (OSError, urllib.error.URLError) as exc:  # a connection cut mid-transfer
            raise DataError(f"{origin}: download failed ({exc}); nothing was installed") from None
    return target


def _download_source(url: str, sources_dir: Path, progress: Reporter) -> Path:
    """Download an upstream source archive once into ``sources_dir`` (kept for the other files of the
    dataset and for reruns; upstream publishes no checksums, the final files are verified instead)."""
    target = sources_dir / Path(urllib.parse.urlsplit(url).path).name
    if target.is_file():
        return target
    stream, length = _open_url(url)
    size = 0
    with (
        stream,
        atomic_path(target, force=True, check=False) as tmp,
        open(tmp, "wb") as out,
        progress(target.name, length) as advance,
    ):
        for block in iter(lambda: stream.read(CHUNK), b""):
            out.write(block)
            size += len(block)
            advance(len(block))
        if length is not None and size != length:  # http.client does not raise on a short body
            raise OSError(f"incomplete download: got {size} of {length} bytes")
    return target


def _sources_dir(dataset: Dataset, root: Path) -> Path:
    return root / ".sources" / dataset.name


def _first_source(dataset: Dataset, root: Path, progress: Reporter) -> Path:
    """The first of the dataset's source URLs that downloads (they are mirrors of one another)."""
    errors = []
    for url in dataset.sources:
        try:
            return _download_source(url, _sources_dir(dataset, root), progress)
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DataError(
        f"{dataset.name}: no source could be downloaded ({'; '.join(errors)}); "
        f"set {MIRROR_ENV} or --mirror to a copy of the data directory"
    )


# --- the split rules (pure functions of the upstream bytes) ---------------------------------------------


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the member of a zip or tar archive whose name ends with ``suffix``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name.endswith(suffix):
                    return zf.read(name)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile() and member.name.endswith(suffix):
                    return tf.extractfile(member).read()
    raise DataError(f"{archive}: no member ending with {suffix!r}")


BROWN_FILE = re.compile(r"(?:^|/)(c[a-r]\d\d)$")


def brown_sentences(tagged: str) -> list[str]:
    """Sentences of one Brown file as NLTK's tagged reader sees them: each non-blank line is a
    sentence, each whitespace token ``word/TAG`` keeps the text before its last ``/``."""
    return [
        " ".join(token[: token.rfind("/")] if "/" in token else token for token in line.split())
        for line in tagged.splitlines()
        if line.strip()
    ]


def split_brown(files: Mapping[str, str]) -> tuple[str, str]:
    """(train, valid) text from Brown's files by id: in sorted order numbered from 0, file i goes to
    valid when i % 20 == 1, is held out (a test split) when i % 20 == 0, and goes to train otherwise."""
    train: list[str] = []
    valid: list[str] = []
    for index, fileid in enumerate(sorted(files)):
        if index % 20 == 0:
            continue
        (valid if index % 20 == 1 else train).extend(brown_sentences(files[fileid]))
    return "".join(s + "\n" for s in train), "".join(s + "\n" for s in valid)


def _build_brown(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    archive = _first_source(dataset, root, progress)
    with zipfile.ZipFile(archive) as zf:
        files = {
            m.group(1): zf.read(name).decode("utf-8")
            for name in zf.namelist()
            if (m := BROWN_FILE.search(name))
        }
    if len(files) != 500:
        raise DataError(f"{archive}: expected Brown's 500 text files, found {len(files)}")
    train, valid = split_brown(files)
    return {"corpora/brown/train.txt": train.encode(), "corpora/brown/valid.txt": valid.encode()}


def abc_text(rural: bytes, science: bytes) -> str:
    """ABC news: rural.txt (UTF-8) then science.txt (Latin-1, as NLTK's reader decodes them)."""
    parts = [rural.decode("utf-8"), science.decode("latin-1")]
    return "".join(p.replace("\r\n", "\n") for p in parts)


def _build_abc(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    archive = _first_source(dataset, root, progress)
    text = abc_text(_member(archive, "abc/rural.txt"), _member(archive, "abc/science.txt"))
    return {"corpora/abc-news.txt": text.encode()}


EMBED_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def embed_lines(lines: Iterable[str], min_tokens: int = 2) -> Iterator[str]:
    """The embedding corpus: each line lowercased, tokens ``[a-z0-9]+('[a-z]+)?`` joined by one space,
    lines with fewer than ``min_tokens`` tokens dropped."""
    for line in lines:
        tokens = EMBED_TOKEN.findall(line.lower())
        if len(tokens) >= min_tokens:
            yield " ".join(tokens)


def _build_embed(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    lines: list[str] = []
    for relative in ("corpora/brown/train.txt", "corpora/abc-news.txt"):
        with open(root / relative, encoding="utf-8") as handle:
            lines.extend(embed_lines(handle))
    return {"corpora/embed-train.txt": "".join(line + "\n" for line in lines).encode()}


def _build_wikitext(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    archive = _first_source(dataset, root, progress)
    return {"corpora/wikitext-2/valid.txt": _member(archive, "wikitext-2/wiki.valid.tokens")}


def split_mr(positive: Iterable[str], negative: Iterable[str], seed: int = 13) -> tuple[str, str]:
    """(train, dev) TSV of sentence polarity: positives (label 1) then negatives (label 0), stripped,
    shuffled by ``random.Random(seed).shuffle``; the first tenth is held out (test), the next tenth
    is dev, the rest train."""
    pairs = [(line.strip(), 1) for line in positive] + [(line.strip(), 0) for line in negative]
    random.Random(seed).shuffle(pairs)
    tenth = len(pairs) // 10
    header = "text\tlabel\n"

    def tsv(rows: list[tuple[str, int]]) -> str:
        return header + "".join(f"{text}\t{label}\n" for text, label in rows)

    return tsv(pairs[2 * tenth :]), tsv(pairs[tenth : 2 * tenth])


def _build_mr(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    archive = _first_source(dataset, root, progress)
    positive = _member(archive, "rt-polarity.pos").decode("latin-1").splitlines()
    negative = _member(archive, "rt-polarity.neg").decode("latin-1").splitlines()
    train, dev = split_mr([p for p in positive if p.strip()], [n for n in negative if n.strip()])
    return {"corpora/mr/train.tsv": train.encode(), "corpora/mr/dev.tsv": dev.encode()}


def split_conll(text: str, dev_sentences: int = 1000) -> tuple[str, str]:
    """(train, dev) of a CoNLL column file: sentences are separated by blank lines; the last
    ``dev_sentences`` are dev. Each sentence is written as its lines then one blank line."""
    sentences = [
        block.strip("\n") for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if block.strip()
    ]
    if len(sentences) <= dev_sentences:
        raise DataError(f"CoNLL file has {len(sentences)} sentences, fewer than the {dev_sentences} dev ones")

    def join(blocks: list[str]) -> str:
        return "".join(block + "\n\n" for block in blocks)

    return join(sentences[:-dev_sentences]), join(sentences[-dev_sentences:])


def _build_conll(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    archive = _first_source(dataset, root, progress)
    train, dev = split_conll(_member(archive, "conll2000/train.txt").decode("utf-8"))
    return {"corpora/conll2000/train.txt": train.encode(), "corpora/conll2000/dev.txt": dev.encode()}


def _build_copy(dataset: Dataset, root: Path, progress: Reporter) -> dict[str, bytes]:
    (file,) = dataset.files
    return {file.path: _first_source(dataset, root, progress).read_bytes()}


BUILDERS: dict[str, Callable[[Dataset, Path, Reporter], dict[str, bytes]]] = {
    "copy": _build_copy,
    "brown": _build_brown,
    "abc": _build_abc,
    "embed-train": _build_embed,
    "wikitext-2": _build_wikitext,
    "mr": _build_mr,
    "conll2000": _build_conll,
}


def build_from_upstream(dataset: Dataset, root: Path, progress: Reporter = _silent) -> list[Path]:
    """Download the sources, apply the split rule, and install the files only if every one of them
    matches the manifest's SHA-256 (else a DataError lists what differs and nothing is installed)."""
    built = BUILDERS[dataset.builder](dataset, root, progress)
    differ = []
    for file in dataset.files:
        data = built[file.path]
        got = hashlib.sha256(data).hexdigest()
        if got != file.sha256:
            differ.append(
                f"{file.path} (built {len(data)} bytes, SHA-256 {got[:12]}..; "
                f"expected {file.size} bytes, {file.sha256[:12]}..)"
            )
    if differ:
        # A source cached by an earlier run may be the stale one: the next run downloads it again.
        shutil.rmtree(_sources_dir(dataset, root), ignore_errors=True)
        raise DataError(
            f"{dataset.name}: the files built from upstream differ from the published ones: "
            f"{'; '.join(differ)}. Upstream may have changed; nothing was installed. A mirror "
            f"({MIRROR_ENV} or --mirror) serves the verified files"
        )
    installed = []
    for file in dataset.files:
        target = local_path(file, root)
        with atomic_path(target, force=True, check=False) as tmp:
            tmp.write_bytes(built[file.path])
        installed.append(target)
    return installed


def get(
    names: Iterable[str],
    *,
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
    force: bool = False,
    progress: Reporter = _silent,
    manifest: Mapping[str, Dataset] | None = None,
) -> list[Path]:
    """Fetch ``names`` (datasets or single files, see :func:`select`) into the cache and return their
    paths. Files already there with the right SHA-256 are kept unless ``force``. ``mirror`` (default
    ``$DLNLP_DATA_MIRROR``) fetches the final files; without one they are built from upstream."""
    root = data_dir(root)
    manifest = manifest if manifest is not None else load_manifest()
    mirror = mirror if mirror is not None else default_mirror()
    result: list[Path] = []
    for dataset, files in select(names, manifest):
        missing = [f for f in files if force or not is_present(f, root, verify=True)]
        if missing and mirror is not None:
            for file in missing:
                fetch_from_mirror(file, mirror, root, progress)
        elif missing:
            # A rule builds all of a dataset's files at once; a derived one needs its inputs first.
            if dataset.requires:
                get(dataset.requires, root=root, mirror=None, progress=progress, manifest=manifest)
            build_from_upstream(dataset, root, progress)
        result.extend(local_path(f, root) for f in files)
    return result


def listing(
    root: str | os.PathLike | None = None, manifest: Mapping[str, Dataset] | None = None
) -> list[dict]:
    """Every dataset as a JSON-ready dict, with each file's local path and whether it is present."""
    root = data_dir(root)
    manifest = manifest if manifest is not None else load_manifest()
    return [
        {
            "name": d.name,
            "description": d.description,
            "licence": d.licence,
            "split": d.split,
            "sources": list(d.sources),
            "requires": list(d.requires),
            "size": d.size,
            "present": all(is_present(f, root) for f in d.files),
            "files": [
                {
                    "path": f.path,
                    "sha256": f.sha256,
                    "size": f.size,
                    "local_path": str(local_path(f, root)),
                    "present": is_present(f, root),
                }
                for f in d.files
            ],
        }
        for d in manifest.values()
    ]


__all__ = [
    "DataError",
    "DataFile",
    "Dataset",
    "brown_sentences",
    "data_dir",
    "embed_lines",
    "get",
    "listing",
    "load_manifest",
    "paths",
    "select",
    "split_brown",
    "split_conll",
    "split_mr",
    "abc_text",
]
