"""A new model family plugs in without touching anybody's files: its model, a recipe spec and a registry
entry, all in this test. The toy is a bigram LM (embedding -> logits of the next token); it trains through
the shared LM recipe flow, resumes, loads through ``load_model`` and decodes through ``dlnlp generate``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.decoding.interface import FullContextNextToken
from dlnlp.io.modeldir import load_weights, read_config
from dlnlp.models import registry
from dlnlp.models.registry import Family, load_model, register
from dlnlp.recipes.lm import LMRecipe, resume_lm_training, start_lm_training
from dlnlp.tokenization.text_codec import load_codec
from dlnlp.training.config import TrainConfig
from dlnlp.training.data import StreamBatches
from tests.conftest import run_main

KIND = "toy-bigram"


@dataclass
class BigramConfig:
    vocab_size: int = 1
    dim: int = 16

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BigramConfig:
        return cls(**data)

    def validate(self) -> None:
        if self.dim < 1:
            raise ValueError(f"--dim must be >= 1, got {self.dim}")


class BigramLM(nn.Module):
    """p(x_t | x_{t-1}) = softmax(W e(x_{t-1}))."""

    def __init__(self, config: BigramConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.head(self.embed(ids))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def next_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self(ids)[0][:, -1]


def load_bigram(directory, device) -> tuple[BigramLM, dict[str, Any]]:
    config = read_config(directory, KIND)
    model = BigramLM(BigramConfig.from_dict(config["model"]))
    model.load_state_dict(load_weights(directory))
    return model.to(device).eval(), config


def bigram_next_token(model: BigramLM) -> FullContextNextToken:
    return FullContextNextToken(model.next_logits, model.config.vocab_size, next(model.parameters()).device)


RECIPE = LMRecipe(
    kind=KIND, format_version=1, config_class=BigramConfig, build=BigramLM, shape=("seq_len", "batch_size"),
    batches=lambda tokens, config, shape, seed, validation: StreamBatches(tokens, shape["batch_size"],
                                                                          shape["seq_len"], clamp=validation),
    check_memory=lambda config, train_config, shape, tokens: None,
    describe=lambda model, data, train: f"toy bigram LM, vocabulary {data.vocab_size}",
    loss_fn=lambda model, batch, state: (model(*batch)[1], None),
)


@pytest.fixture
def toy_family():
    register(Family(KIND, load_bigram, (1,), BigramConfig, BigramLM,
                    codec=lambda directory, config, model: load_codec(directory, config, model.config.vocab_size),
                    next_token=f"{__name__}:bigram_next_token"))
    yield
    registry._FAMILIES.pop(KIND, None)


def _train_config(steps: int) -> TrainConfig:
    return TrainConfig(lr=0.05, max_steps=steps, eval_interval=0, device="cpu", quiet=True, seed=0)


def test_a_toy_family_trains_resumes_loads_and_decodes(tmp_path, toy_family):
    corpus = tmp_path / "abc.txt"
    corpus.write_text(("abc" * 10 + "\n") * 200)
    out = tmp_path / "toy"
    first = start_lm_training(RECIPE, [str(corpus)], out, BigramConfig(dim=16), _train_config(60),
                              {"seq_len": 16, "batch_size": 8})
    assert first["steps"] == 60
    saved = read_config(out)
    assert (saved["kind"], saved["level"], saved["seq_len"], saved["batch_size"]) == (KIND, "char", 16, 8)

    resumed = resume_lm_training(RECIPE, out, {"max_steps": 120})
    assert resumed["steps"] == 120
    # 'a'->'b' and 'b'->'c' are certain, 'c'->'a' nine times in ten: far below the uniform ln(4)
    assert resumed["val_loss"] < 0.5 * math.log(4)

    loaded = load_model(out)
    assert loaded.family.kind == KIND and isinstance(loaded.model, BigramLM)
    assert loaded.codec.decode(loaded.codec.encode("cab")) == "cab"

    code, stdout, stderr = run_main("generate", out, "--prompt", "ab", "--strategy", "greedy",
                                    "--max-new-tokens", "6", "--device", "cpu")
    assert code == 0, stderr
    assert stdout == "abcabcab\n"


def test_the_recipe_flow_checks_the_family_config_and_shape(tmp_path, toy_family):
    corpus = tmp_path / "abc.txt"
    corpus.write_text("abc\n" * 50)
    from dlnlp.errors import DlnlpError

    with pytest.raises(DlnlpError, match="--dim must be >= 1, got 0"):
        start_lm_training(RECIPE, [str(corpus)], tmp_path / "a", BigramConfig(dim=0), _train_config(5),
                          {"seq_len": 4, "batch_size": 2})
    with pytest.raises(DlnlpError, match="--seq-len must be >= 1, got 0"):
        start_lm_training(RECIPE, [str(corpus)], tmp_path / "b", BigramConfig(), _train_config(5),
                          {"seq_len": 0, "batch_size": 2})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
