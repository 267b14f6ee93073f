"""The ``vectors`` family: word vectors without their trainer (GloVe, PPMI-SVD and imported vectors).

Their model directories (``model.safetensors`` with a ``vectors`` tensor, ``vocab.txt``) are written
and read by :mod:`dlnlp.io.vectors`; this file registers the kind so that ``load_model`` reads them
as a :class:`~dlnlp.io.vectors.KeyedVectors`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlnlp.io.vectors import VECTORS_KIND, KeyedVectors, save_vectors_dir
from dlnlp.models.registry import Family, register

KIND = VECTORS_KIND


def load_vectors_dir(directory: str | Path, device: object = None) -> tuple[KeyedVectors, dict[str, Any]]:
    """(KeyedVectors, config.json) of a ``vectors`` model directory."""
    from dlnlp.io.modeldir import read_config
    from dlnlp.io.vectors import load_vectors

    config = read_config(directory, KIND)
    return load_vectors(directory, "dlnlp"), config


def load_word_vectors(path: str | Path, fmt: str = "auto", *, limit: int | None = None) -> KeyedVectors:
    """Word vectors from a file (word2vec text or binary, GloVe text) or from any model directory, loaded
    through the registry, whose model has them (``keyed_vectors()``: word2vec, GloVe, PPMI-SVD, ...)."""
    from dlnlp.errors import ModelDirError
    from dlnlp.io.vectors import load_vectors
    from dlnlp.models.registry import load_model

    if fmt not in ("auto", "dlnlp") or not Path(path).is_dir():
        return load_vectors(path, fmt, limit=limit)
    if limit is not None and limit < 1:
        return load_vectors(path, fmt, limit=limit)  # its error for --limit
    loaded = load_model(path)
    if not hasattr(loaded.model, "keyed_vectors"):
        raise ModelDirError(f"{path}: a {loaded.family.kind!r} model directory without word vectors")
    vectors = loaded.model.keyed_vectors()
    return vectors.subset(limit) if limit else vectors


register(Family(KIND, load_vectors_dir, (1,), save=save_vectors_dir, description="word vectors (GloVe, PPMI-SVD, imported)"))
