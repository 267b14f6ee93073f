"""Small tokenizers trained once per test session on the built-in corpus (always available offline)."""

from __future__ import annotations

import pytest

from dlnlp.io.corpus import iter_lines
from dlnlp.tokenization.train import TrainSpec, train_tokenizer

CORPUS = "builtin:python-help"


def _train(tmp_path_factory, name: str, **spec) -> str:
    path = tmp_path_factory.mktemp("tok") / name
    path.write_bytes(train_tokenizer(iter_lines([CORPUS]), TrainSpec(**spec)))
    return str(path)


@pytest.fixture(scope="session")
def bytelevel_path(tmp_path_factory) -> str:
    return _train(tmp_path_factory, "bytelevel.json", model="bpe", vocab_size=1000)


@pytest.fixture(scope="session")
def sp_bpe_path(tmp_path_factory) -> str:
    return _train(tmp_path_factory, "sp-bpe.model", model="bpe", engine="sentencepiece", vocab_size=800)
