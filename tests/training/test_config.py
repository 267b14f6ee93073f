"""``TrainConfig.validate``: every meaningless value is refused with the option named as typed."""

from __future__ import annotations

import pytest

from dlnlp.training.config import TrainConfig


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 0}, "--epochs must be > 0, got 0"),
    ({"eval_batches": 0}, "--eval-batches must be >= 1, got 0"),
    ({"eval_batches": -1}, "--eval-batches must be >= 1, got -1"),
    ({"checkpoint_interval": 0}, "--checkpoint-interval must be >= 1, got 0"),
    ({"betas": (0.9, 1.5)}, "--beta2 must be in [0, 1), got 1.5"),
    ({"betas": (0.9, 1.0)}, "--beta2 must be in [0, 1), got 1.0"),
    ({"momentum": -1.0}, "--momentum must be in [0, 1), got -1.0"),
    ({"log_interval": 0}, "--log-interval must be >= 1, got 0"),
    ({"eval_interval": -1}, "--eval-interval must be >= 0, got -1"),
    ({"eps": 0.0}, "eps must be > 0, got 0.0"),
])
def test_meaningless_values_are_refused(changes, message):
    config = TrainConfig(max_steps=1).replace(**changes)
    with pytest.raises(ValueError) as info:
        config.validate()
    assert str(info.value) == message


def test_defaults_are_valid():
    TrainConfig(max_steps=1).validate()
    TrainConfig(epochs=0.5, optimizer="sgd", momentum=0.0, betas=(0.0, 0.0), eval_batches=1).validate()
