"""Memory estimates: parameter counts match the real models, the check names what to lower."""

from __future__ import annotations

import pytest
import torch

import dlnlp.kernels.memory as memory
from dlnlp.kernels.memory import (
    MemoryEstimateError,
    Need,
    check_fits,
    gpt_training_needs,
    human,
    recurrent_parameters,
    transformer_parameters,
)
from dlnlp.models.gpt import GPT, GPTConfig
from dlnlp.models.rnn_lm import RNNLMConfig, build_model


def _count(model: torch.nn.Module) -> int:
    params = {id(p): p for p in model.parameters()}.values()  # tied weights once
    buffers = sum(b.numel() for b in model.buffers())
    return sum(p.numel() for p in params) + buffers


@pytest.mark.parametrize("kwargs", [
    {"n_layer": 2, "n_embd": 16, "n_head": 2, "block_size": 32},
    {"n_layer": 1, "n_embd": 24, "n_head": 3, "block_size": 7, "tie_weights": False, "mlp_dim": 40},
    {"n_layer": 3, "n_embd": 8, "n_head": 2, "block_size": 50, "position": "sinusoidal"},
])
def test_transformer_parameters_count_the_gpt_exactly(kwargs):
    config = GPTConfig(vocab_size=37, **kwargs)
    parts = transformer_parameters(37, config.n_embd, config.n_layer, config.block_size, mlp_dim=config.mlp_dim,
                                   tied=config.tie_weights, learned_positions=config.position == "learned")
    table = 0 if config.position == "learned" else config.block_size * config.n_embd  # a buffer
    assert sum(parts.values()) + table == _count(GPT(config))


@pytest.mark.parametrize("kwargs", [
    {"cell": "lstm", "embed": 8, "hidden": 12, "layers": 2},
    {"cell": "gru", "embed": 8, "hidden": 8, "layers": 1, "tie_weights": True},
    {"cell": "rnn", "embed": 6, "hidden": 10, "layers": 3, "tie_weights": True},
    {"cell": "ffnn", "embed": 5, "hidden": 9, "context": 3, "direct": True},
])
def test_recurrent_parameters_count_the_rnn_lm_exactly(kwargs):
    config = RNNLMConfig(vocab_size=23, **kwargs)
    parts = recurrent_parameters(23, config.embed, config.hidden, config.layers, config.cell,
                                 tied=config.tie_weights, context=config.context, direct=config.direct)
    assert sum(parts.values()) == _count(build_model(config))


def test_human_units():
    assert human(512) == "512 B"
    assert human(1536) == "1.5 KiB"
    assert human(205 * 2**30) == "205 GiB"


def test_check_names_the_largest_part_and_its_option(monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device="cpu": (2**30, "available host memory"))
    assert check_fits([Need("a", 2**29, "--a"), Need("b", 2**28, "--b")], task="x") == 3 * 2**28
    with pytest.raises(MemoryEstimateError) as info:
        check_fits([Need("small part", 2**20, "--a"), Need("big part", 3 * 2**30, "--big")], task="training")
    assert str(info.value) == ("training needs about 3 GiB (big part: 3 GiB) but available host memory is 1 GiB; "
                               "lower --big")
    monkeypatch.setenv("DLNLP_MEMORY_CHECK", "off")
    check_fits([Need("big part", 3 * 2**30, "--big")], task="training")


def test_gpt_estimate_points_at_the_option_that_grows_it():
    # Issue #19: --block-size 100000000 (learned positions) and --dim 10000000.
    [params] = gpt_training_needs(65, 128, 4, 100_000_000)
    assert params.lower == "--block-size" and params.bytes > 100 * 2**30
    [params] = gpt_training_needs(65, 10_000_000, 4, 256)
    assert params.lower == "--dim or --layers"
    needs = gpt_training_needs(65, 128, 4, 256, batch=10**6, seq=256)
    assert max(needs, key=lambda n: n.bytes).lower == "--batch-size or --block-size"


def test_available_reads_host_memory():
    room, where = memory.available("cpu")
    assert where == "available host memory"
    assert room is None or room > 0
