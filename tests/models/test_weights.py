"""Saved weights checked against the model a config describes: one line naming what differs."""

from __future__ import annotations

import pytest
import torch

from dlnlp.errors import ModelDirError
from dlnlp.models.weights import check_weights, weights_mismatch


def test_mismatch_names_missing_unexpected_and_reshaped_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert weights_mismatch(model.state_dict(), state) == ""
    del state["1.bias"]
    state["0.weight"] = torch.zeros(5, 4)
    state["extra"] = torch.zeros(1)
    assert weights_mismatch(model.state_dict(), state) == (
        "missing 1.bias; unexpected extra; shape of 0.weight is [5, 4], config.json says [3, 4]")
    assert weights_mismatch(model.state_dict(), {**state, "1.bias": torch.zeros(2)}, optional=["1.bias"]).startswith(
        "unexpected extra")
    with pytest.raises(ModelDirError, match=r"^m/model.safetensors: weights do not match config.json \(missing 1.bias"):
        check_weights(model, state, "m/model.safetensors")
