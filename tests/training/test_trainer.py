"""The shared trainer: schedules, optimizers, accumulation, stopping, exact resume, failures."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

import dlnlp.training.trainer as trainer_module
from dlnlp.models.rnn_lm import RNNLMConfig, build_model
from dlnlp.training import NonFiniteLoss, TrainConfig, Trainer, TrainingInterrupted, build_optimizer
from dlnlp.training.data import RandomWindows, StreamBatches
from dlnlp.training.schedule import decay_progress, lr_factor


def _tokens(n: int = 3000, vocab: int = 11, seed: int = 0) -> np.ndarray:
    # A learnable but not trivial stream: a noisy counter modulo vocab.
    rng = np.random.default_rng(seed)
    return ((np.arange(n) + (rng.random(n) < 0.2)) % vocab).astype(np.uint16)


def _losses(out_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _val_losses(out_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]


# -- schedules ------------------------------------------------------------------------------------

def test_warmup_is_linear_then_cosine_and_linear_decay():
    assert lr_factor("cosine", 0, 4, 0.0) == pytest.approx(0.25)
    assert lr_factor("cosine", 3, 4, 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 4, 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 4, 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 4, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor("linear", 10, 0, 0.25) == pytest.approx(0.75)
    assert lr_factor("constant", 10, 0, 0.9) == 1.0


def test_decay_progress_takes_the_step_or_time_share_whichever_is_further():
    assert decay_progress(6, 2, 10, 0.0, None) == pytest.approx(0.5)
    assert decay_progress(1, 0, 100, 30.0, 60.0) == pytest.approx(0.5)
    assert decay_progress(1, 0, None, 90.0, 60.0) == 1.0


def test_trainer_sets_the_scheduled_lr_each_step(tmp_path):
    model = nn.Linear(2, 1)
    batches = [(torch.randn(4, 2), torch.randn(4))] * 3
    cfg = TrainConfig(lr=0.1, max_steps=10, warmup_steps=2, schedule="linear", log_interval=1, device="cpu",
                      quiet=True, clip=None, optimizer="sgd", momentum=0.0)
    Trainer(_Reg(model), cfg, batches, out_dir=tmp_path).fit()
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # metrics record the lr of the step just taken: warmup 0.05, 0.1, then linear decay over 8 steps
    expected = [0.05, 0.1] + [0.1 * (1 - k / 8) for k in range(8)]
    assert lrs == pytest.approx(expected)


class _Reg(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, y):
        return nn.functional.mse_loss(self.inner(x).squeeze(-1), y)


# -- optimizers, clipping, accumulation -----------------------------------------------------------

def test_optimizer_groups_decay_only_matrices():
    model = build_model(RNNLMConfig(vocab_size=7, embed=4, hidden=6, layers=1, tie_weights=True))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1, max_steps=1), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() == 1 for p in plain["params"])
    n_unique = len({id(p) for p in model.parameters()})
    assert len(decayed["params"]) + len(plain["params"]) == n_unique  # the tied matrix once
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8, max_steps=1), torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8)
    init = nn.Linear(3, 1).state_dict()
    results = []
    for accum, batches in ((1, [(x, y)]), (2, [(x[:4], y[:4]), (x[4:], y[4:])])):
        inner = nn.Linear(3, 1)
        inner.load_state_dict(init)
        cfg = TrainConfig(optimizer="sgd", momentum=0.0, lr=0.1, max_steps=1, grad_accum=accum, clip=None,
                          device="cpu", quiet=True)
        Trainer(_Reg(inner), cfg, batches).fit()
        results.append(inner.weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_clipping_bounds_the_update(tmp_path):
    inner = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(inner.weight)
    batches = [(torch.full((1, 1), 100.0), torch.full((1,), 1e4))]  # gradient norm ~2e6
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, lr=1.0, max_steps=1, clip=0.5, device="cpu", quiet=True)
    Trainer(_Reg(inner), cfg, batches).fit()
    assert inner.weight.abs().item() == pytest.approx(0.5, rel=1e-4)


# -- stopping ---------------------------------------------------------------------------------------

def test_epochs_and_max_time_stop(tmp_path):
    batches = [(torch.randn(2, 2), torch.randn(2))] * 4
    result = Trainer(_Reg(nn.Linear(2, 1)), TrainConfig(epochs=2, device="cpu", quiet=True), batches).fit()
    assert (result.steps, result.stopped_by) == (8, "epochs")
    cfg = TrainConfig(max_time=0.3, device="cpu", quiet=True, eval_interval=0)
    result = Trainer(_Reg(nn.Linear(2, 1)), cfg, batches, val_data=batches, out_dir=tmp_path).fit()
    assert result.stopped_by == "max_time" and result.final_val_loss is not None
    assert result.final_val_full is True  # a quick validation is read to the end
    # the budget holds the final validation and save: training stops early enough, not after
    assert 0.3 * (1 - trainer_module.RESERVE_MAX_SHARE) - 0.01 <= result.elapsed <= 0.3 + 0.2
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "checkpoint" / "trainer.json").is_file()


class _SlowToValidate(_Reg):
    """Validation batches take 20 ms each (a large held-out part read by a slow model)."""

    def forward(self, x, y):
        if not self.training:
            time.sleep(0.02)
        return super().forward(x, y)


@pytest.mark.parametrize("eval_interval", [0, 1])
def test_max_time_bounds_the_final_validation(tmp_path, monkeypatch, eval_interval):
    # Issue #19: `rnn train --max-time 20` ran 811 s, the final validation over the whole held-out
    # part being unbounded. Here reading all 500 validation batches would take 10 s. With
    # eval_interval 1 the validation after step 1 also runs into the time limit.
    train = [(torch.randn(2, 2), torch.randn(2))] * 4
    val = [(torch.randn(2, 2), torch.randn(2))] * 500
    cfg = TrainConfig(max_time=0.5, device="cpu", quiet=True, eval_interval=eval_interval)
    started = time.perf_counter()
    result = Trainer(_SlowToValidate(nn.Linear(2, 1)), cfg, train, val_data=val, out_dir=tmp_path).fit()
    wall = time.perf_counter() - started
    assert result.stopped_by == "max_time"
    assert wall < 0.5 + 0.3  # the final validation reads what fits in the budget; slack for one batch and saving
    assert result.final_val_loss is not None and result.final_val_full is False
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert len(rows) == 1 + eval_interval
    for row in rows:
        assert row["full"] is False and 0 < row["val_batches"] < 500 and row["val_tokens"] == 2 * row["val_batches"]


def test_max_time_reserves_the_measured_validation_and_save(tmp_path):
    # Issue #20: a --max-time 60 run stopped at 121-164 s. Periodic validations (5 batches of 20 ms)
    # measure what the final one will cost (20 batches, 0.4 s): training stops early enough for it to
    # read the whole held-out part and save within the budget.
    train = [(torch.randn(2, 2), torch.randn(2))] * 4
    val = [(torch.randn(2, 2), torch.randn(2))] * 20
    cfg = TrainConfig(max_time=2.5, device="cpu", quiet=True, eval_interval=50, eval_batches=5)
    trainer = Trainer(_SlowToValidate(nn.Linear(2, 1)), cfg, train, val_data=val, out_dir=tmp_path)
    started = time.perf_counter()  # (the first optimizer of a process takes seconds to import)
    result = trainer.fit()
    wall = time.perf_counter() - started
    assert result.stopped_by == "max_time" and result.final_val_full is True
    assert 1.5 < wall <= 2.5 + 0.2


def test_max_time_counts_the_setup_before_training(tmp_path):
    train = [(torch.randn(2, 2), torch.randn(2))] * 4
    cfg = TrainConfig(max_time=1.0, device="cpu", quiet=True, eval_interval=0)
    started = time.perf_counter() - 0.6  # the recipe spent 0.6 s before the trainer started
    result = Trainer(_Reg(nn.Linear(2, 1)), cfg, train, out_dir=tmp_path, started=started).fit()
    assert result.stopped_by == "max_time" and result.elapsed < 0.5


def test_evaluate_loss_stops_after_the_batch_that_passes_the_deadline():
    from dlnlp.training.trainer import evaluate_loss

    model = _SlowToValidate(nn.Linear(2, 1))
    batches = [(torch.randn(2, 2), torch.randn(2))] * 50
    full = evaluate_loss(model, batches, torch.device("cpu"))
    assert full["val_batches"] == 50 and "cut_short" not in full
    cut = evaluate_loss(model, batches, torch.device("cpu"), deadline=time.perf_counter() + 0.05)
    assert cut["cut_short"] is True and 1 <= cut["val_batches"] <= 5
    # A deadline already past still reads one batch (a loss over nothing is no loss).
    one = evaluate_loss(model, batches, torch.device("cpu"), deadline=time.perf_counter() - 1)
    assert one["val_batches"] == 1 and one["val_tokens"] == 2


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            loss = (self.w * x).sum()
            return loss * float("nan") if self.calls > 3 else loss

    batches = [torch.ones(2)] * 10
    cfg = TrainConfig(max_steps=10, checkpoint_interval=1, eval_interval=0, device="cpu", quiet=True,
                      optimizer="sgd")
    with pytest.raises(NonFiniteLoss, match=r"nan at step 4.*step 3"):
        Trainer(Exploding(), cfg, batches, out_dir=tmp_path).fit()
    meta = json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())
    assert meta["step"] == 3


# -- exact resume -----------------------------------------------------------------------------------

def _lstm_run(out_dir, stop_at=None, resume=False, max_steps=12, ema_decay=0.0):
    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=11, embed=8, hidden=16, layers=2, dropout=0.3))
    tokens = _tokens()
    train = StreamBatches(tokens[:2500], 4, 16)     # 39 windows per epoch
    val = StreamBatches(tokens[2500:], 4, 16, clamp=True)
    cfg = TrainConfig(lr=5e-3, max_steps=max_steps, schedule="cosine", warmup_steps=2, log_interval=1,
                      eval_interval=4, eval_batches=2, grad_accum=2, device="cpu", quiet=True, seed=3,
                      ema_decay=ema_decay)

    def on_step(trainer):
        if stop_at is not None and trainer.step == stop_at:
            trainer.request_stop()

    return Trainer(model, cfg, train, val, out_dir=out_dir, resume=resume, on_step=on_step).fit()


def test_interrupted_and_resumed_run_reproduces_the_losses_step_for_step(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    _lstm_run(full)
    with pytest.raises(TrainingInterrupted):
        _lstm_run(part, stop_at=5)
    assert json.loads((part / "checkpoint" / "trainer.json").read_text())["step"] == 5
    with open(part / "metrics.jsonl", "a") as log:  # what a hard crash after the checkpoint leaves
        log.write('{"step": 6, "loss": 123.0}\n{"step": 7, "lo')
    _lstm_run(part, resume=True)
    expected, got = _losses(full), _losses(part)
    assert [s for s, _ in got] == list(range(1, 13))
    assert got == expected  # bit for bit: same data position, state, RNG, optimizer and schedule
    assert _val_losses(part) == _val_losses(full)


def test_resume_with_weight_averaging_restores_the_average(tmp_path):
    from dlnlp.io.modeldir import load_weights

    full, part = tmp_path / "full", tmp_path / "part"
    _lstm_run(full, ema_decay=0.7)
    with pytest.raises(TrainingInterrupted):
        _lstm_run(part, stop_at=6, ema_decay=0.7)
    _lstm_run(part, resume=True, ema_decay=0.7)
    assert _val_losses(part) == _val_losses(full)  # validated on the averaged weights
    saved_full, saved_part = load_weights(full / "model.safetensors"), load_weights(part / "model.safetensors")
    assert all(torch.equal(saved_full[k], saved_part[k]) for k in saved_full)


def test_weight_averaging_validates_and_saves_the_moving_average(tmp_path):
    from dlnlp.io.modeldir import load_weights
    from dlnlp.training.trainer import evaluate_loss

    torch.manual_seed(0)
    model = build_model(RNNLMConfig(vocab_size=11, embed=8, hidden=16, layers=1))
    tokens = _tokens()
    train, val = StreamBatches(tokens[:2500], 4, 16), StreamBatches(tokens[2500:], 4, 16, clamp=True)
    decay, steps = 0.8, 10
    cfg = TrainConfig(lr=1e-2, max_steps=steps, eval_interval=0, device="cpu", quiet=True, ema_decay=decay)
    snapshots = []
    initial = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, cfg, train, val, out_dir=tmp_path / "run",
                      on_step=lambda t: snapshots.append([p.detach().clone() for p in t.model.parameters()]))
    result = trainer.fit()
    expected = initial
    for t, weights in enumerate(snapshots, start=1):
        rate = max(1 - decay, 1 / t)
        expected = [e + rate * (w - e) for e, w in zip(expected, weights, strict=True)]
    names = [name for name, _ in model.named_parameters()]
    saved = load_weights(tmp_path / "run" / "model.safetensors")
    for name, value in zip(names, expected, strict=True):
        assert torch.allclose(saved[name], value, atol=1e-6), name
    # Training went on with the raw weights; they are back in the model after validation.
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), snapshots[-1], strict=True))
    assert not torch.allclose(saved[names[0]], snapshots[-1][0])
    averaged = build_model(RNNLMConfig(vocab_size=11, embed=8, hidden=16, layers=1))
    averaged.load_state_dict(saved)
    assert result.final_val_loss == pytest.approx(evaluate_loss(averaged, val, torch.device("cpu"))["val_loss"])


def test_random_windows_resume_with_sgd_momentum(tmp_path):
    tokens = _tokens(800)

    class Bigram(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(11, 11)
            self.drop = nn.Dropout(0.2)

        def forward(self, x, y):
            return nn.functional.cross_entropy(self.drop(self.table(x)).view(-1, 11), y.reshape(-1))

    def run(out, stop_at=None, resume=False):
        torch.manual_seed(0)
        cfg = TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.5, max_steps=9, log_interval=1,
                          eval_interval=0, device="cpu", quiet=True, schedule="linear")

        def hook(trainer):
            if trainer.step == stop_at:
                trainer.request_stop()

        return Trainer(Bigram(), cfg, RandomWindows(tokens, 3, 8, seed=5), out_dir=out, resume=resume,
                       on_step=hook).fit()

    run(tmp_path / "a")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "b", stop_at=4)
    run(tmp_path / "b", resume=True)
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")


def test_best_weights_are_kept_by_validation_loss(tmp_path):
    out = tmp_path / "run"
    result = _lstm_run(out, max_steps=8)
    vals = [v for _, v in _val_losses(out)]
    assert result.best_val_loss == min(vals)
    assert math.isfinite(result.final_val_loss)
