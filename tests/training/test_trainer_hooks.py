"""Trainer hooks for transfer learning: parameter groups, ignored targets, best metric, aux modules."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dlnlp.errors import DlnlpError
from dlnlp.io.modeldir import load_weights
from dlnlp.training import (
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_param_groups,
    evaluate_loss,
    layer_decay_groups,
)
from dlnlp.training.schedule import decay_progress, lr_factor


class Tagger(nn.Module):
    """A backbone (embedding + hidden layer) and a head: batch ``(ids, labels)`` -> token cross-entropy."""

    def __init__(self, vocab: int = 7, dim: int = 6, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, classes)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.hidden(self.embed(ids))))

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(ids).flatten(0, 1), labels.flatten())  # ignore_index -100


def _batches(n: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 7, (2, 5), generator=g)
        out.append((ids, ids % 3))
    return out


def _group_lrs(trainer: Trainer) -> list[float]:
    return [group["lr"] for group in trainer.optimizer.param_groups]


# -- parameter groups -----------------------------------------------------------------------------

def test_a_head_at_ten_times_the_backbone_rate_stays_ten_times_through_warmup_and_cosine():
    torch.manual_seed(0)
    model = Tagger()
    cfg = TrainConfig(lr=0.01, max_steps=10, warmup_steps=3, schedule="cosine", min_lr_ratio=0.1,
                      weight_decay=0.1, device="cpu", quiet=True, eval_interval=0)
    seen = []
    trainer = Trainer(model, cfg, _batches(), param_groups=[{"params": model.head.parameters(), "lr_scale": 10}],
                      on_step=lambda t: seen.append(_group_lrs(t)))
    groups = trainer.optimizer.param_groups
    # the head is split into its decayed matrix and undecayed bias; the rest keeps the default groups
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(1, 0.1), (1, 0.0), (2, 0.1), (1, 0.0)]
    assert groups[0]["params"][0] is model.head.weight and groups[1]["params"][0] is model.head.bias
    trainer.fit()
    assert len(seen) == 10
    for step, lrs in enumerate(seen):  # the rates of the step just taken
        factor = lr_factor("cosine", step, 3, decay_progress(step, 3, 10, 0.0, None), 0.1)
        assert lrs[2] == lrs[3] == pytest.approx(0.01 * factor)
        assert lrs[0] == lrs[1] == pytest.approx(0.1 * factor)
    assert seen[0][0] == pytest.approx(0.1 / 3) and seen[-1][0] < seen[3][0]  # warmed up, then decayed


def test_absolute_group_rates_and_explicit_weight_decay():
    model = Tagger()
    cfg = TrainConfig(lr=0.01, weight_decay=0.1, max_steps=1)
    groups = build_param_groups(model, cfg, [{"params": model.embed.parameters(), "lr": 0.003, "weight_decay": 0.0}])
    assert groups[0]["lr"] == 0.003 and groups[0]["weight_decay"] == 0.0 and len(groups[0]["params"]) == 1
    assert all(g["lr"] == 0.01 for g in groups[1:])
    # the default stays the decay / no-decay split of nanoGPT, without any lr of its own
    default = build_param_groups(model, cfg)
    assert [sorted(g) for g in default] == [["params", "weight_decay"]] * 2
    with pytest.raises(ValueError, match="not both"):
        build_param_groups(model, cfg, [{"params": model.head.parameters(), "lr": 0.1, "lr_scale": 2}])
    with pytest.raises(ValueError, match="earlier group"):
        build_param_groups(model, cfg, [{"params": [model.head.bias]}, {"params": model.head.parameters()}])
    with pytest.raises(ValueError, match="not the model's"):
        build_param_groups(model, cfg, [{"params": nn.Linear(2, 2).parameters()}])


def test_frozen_parameters_are_left_out_and_do_not_change():
    torch.manual_seed(0)
    model = Tagger()
    model.embed.requires_grad_(False)
    model.hidden.requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    cfg = TrainConfig(lr=0.05, weight_decay=0.5, max_steps=5, device="cpu", quiet=True, eval_interval=0)
    # a group naming frozen parameters too: they are skipped, not trained
    trainer = Trainer(model, cfg, _batches(), param_groups=[{"params": model.parameters(), "lr_scale": 2}])
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(model.head.weight), id(model.head.bias)}
    head = model.head.weight.detach().clone()
    trainer.fit()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    assert not torch.equal(model.head.weight, head)


def test_layer_decay_scales_each_depth():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 2)
            self.blocks = nn.ModuleList(nn.Linear(2, 2) for _ in range(11))
            self.head = nn.Linear(2, 1)

    model = Stack()
    depths = {"embed": 0, **{f"blocks.{i}": i + 1 for i in range(11)}}
    groups = layer_decay_groups(model, depths, decay=0.5)
    assert [g["lr_scale"] for g in groups] == [0.5 ** (12 - d) for d in range(12)]
    assert groups[1]["params"] == list(model.blocks[0].parameters())  # "blocks.1" does not take "blocks.10"
    assert groups[2]["params"] == list(model.blocks[1].parameters())
    built = build_param_groups(model, TrainConfig(lr=1.0, max_steps=1), groups)
    rate = {id(p): g["lr"] for g in built for p in g["params"]}
    assert rate[id(model.embed.weight)] == 0.5 ** 12 and rate[id(model.blocks[10].weight)] == 0.5
    assert rate[id(model.head.weight)] == 1.0  # the head, under no prefix, trains at lr
    with pytest.raises(ValueError, match="'encoder'"):
        layer_decay_groups(model, {"encoder": 0}, decay=0.5)


def _grouped_run(out_dir, stop_at=None, resume=False):
    torch.manual_seed(0)
    model = Tagger()
    cfg = TrainConfig(lr=0.02, max_steps=8, warmup_steps=2, schedule="cosine", weight_decay=0.01, log_interval=1,
                      eval_interval=0, device="cpu", quiet=True)
    groups = [{"params": model.head.parameters(), "lr": 0.1}, {"params": model.embed.parameters(), "lr_scale": 0.5}]
    rates = []

    def on_step(trainer):
        rates.append(_group_lrs(trainer))
        if trainer.step == stop_at:
            trainer.request_stop()

    Trainer(model, cfg, _batches(), out_dir=out_dir, resume=resume, on_step=on_step, param_groups=groups).fit()
    return rates


def test_resume_restores_the_per_group_rates_exactly(tmp_path):
    full = _grouped_run(tmp_path / "full")
    with pytest.raises(TrainingInterrupted):
        _grouped_run(tmp_path / "part", stop_at=3)
    rest = _grouped_run(tmp_path / "part", resume=True)
    # head matrix and bias at 0.1, the embedding at 0.01, the hidden layer at 0.02 (x the schedule)
    assert len(full) == 8 and full[1] == [0.1, 0.1, 0.01, 0.02, 0.02]
    assert rest == full[3:]  # bit for bit
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("full", "part")]
    assert losses[0] == losses[1]


# -- ignored targets ------------------------------------------------------------------------------

def test_ignored_targets_are_left_out_of_the_validation_mean_and_token_counts():
    torch.manual_seed(0)
    model = Tagger()
    ids = torch.randint(0, 7, (4, 6))
    labels = ids % 3
    first, second = labels[:2].clone(), labels[2:].clone()
    first[0, :5] = -100           # 7 counted targets
    second[:, 1:] = -100          # 2 counted targets
    empty = torch.full((1, 6), -100)
    batches = [(ids[:2], first), (ids[2:], second), (ids[:1], empty)]
    result = evaluate_loss(model, batches, torch.device("cpu"))
    with torch.no_grad():
        everything = nn.functional.cross_entropy(model.logits(ids).flatten(0, 1), torch.cat([first, second]).flatten())
    assert result["val_tokens"] == 9 and result["val_batches"] == 3
    assert result["val_loss"] == pytest.approx(everything.item(), rel=1e-6)
    # weighting by numel (the old rule) would give another figure
    with torch.no_grad():
        by_numel = (model(ids[:2], first) * 12 + model(ids[2:], second) * 12) / 24
    assert abs(by_numel.item() - result["val_loss"]) > 1e-3
    with pytest.raises(DlnlpError, match="ignore index"):
        evaluate_loss(model, [(ids[:1], empty)], torch.device("cpu"))
    # training counts the same targets
    cfg = TrainConfig(max_steps=2, device="cpu", quiet=True, eval_interval=0)
    assert Trainer(model, cfg, batches[:2]).fit().tokens == 9
    assert Trainer(model, cfg.replace(ignore_index=None), batches[:2]).fit().tokens == 24
    # a label per sequence: the input tokens count
    sequences = [(ids, torch.tensor([0, 1, -100, 2]))]
    pooled = lambda m, b, s: (nn.functional.cross_entropy(m.logits(b[0]).mean(1), b[1]), None)  # noqa: E731
    assert Trainer(model, cfg, sequences, loss_fn=pooled).fit().tokens == 2 * 24


# -- best checkpoint by another metric ------------------------------------------------------------

def _scripted_val(accuracies, snapshots):
    """val_fn whose loss always falls while the accuracy follows ``accuracies``."""
    calls = iter(range(100))

    def val_fn(model):
        i = next(calls)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_loss": 1.0 / (i + 1), "accuracy": accuracies[i]}

    return val_fn


def test_the_best_checkpoint_is_chosen_by_accuracy_higher_is_better(tmp_path):
    torch.manual_seed(0)
    snapshots = []
    cfg = TrainConfig(lr=0.1, max_steps=3, eval_interval=1, device="cpu", quiet=True, best_metric="accuracy",
                      best_mode="max")
    result = Trainer(Tagger(), cfg, _batches(), out_dir=tmp_path,
                     val_fn=_scripted_val([0.5, 0.9, 0.7], snapshots)).fit()
    assert len(snapshots) == 3
    saved = load_weights(tmp_path / "model.safetensors")
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)  # the accuracy peak, not the lowest loss
    assert not torch.equal(saved["head.weight"], snapshots[2]["head.weight"])
    assert result.best_value == 0.9 and result.best_val_loss == pytest.approx(1 / 3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [r["best"] for r in rows] == [True, True, False]
    meta = json.loads((tmp_path / "checkpoint" / "trainer.json").read_text())
    assert meta["best_value"] == 0.9 and meta["config"]["best_metric"] == "accuracy"

    # resumed (with the config from the checkpoint), a lower accuracy keeps the best weights
    resumed_cfg = TrainConfig.from_dict(meta["config"]).replace(max_steps=5)
    more = []
    result = Trainer(Tagger(), resumed_cfg, _batches(), out_dir=tmp_path, resume=True,
                     val_fn=_scripted_val([0.8, 0.8], more)).fit()
    assert len(more) == 2 and result.best_value == 0.9
    assert all(torch.equal(load_weights(tmp_path / "model.safetensors")[k], snapshots[1][k]) for k in saved)


def test_best_metric_is_checked():
    with pytest.raises(ValueError, match="best_mode"):
        TrainConfig(max_steps=1, best_mode="higher").validate()
    cfg = TrainConfig(max_steps=1, device="cpu", quiet=True, best_metric="accuracy")
    with pytest.raises(DlnlpError, match="'accuracy' is not among the validation results"):
        Trainer(Tagger(), cfg, _batches(), val_data=_batches()).fit()


# -- auxiliary modules ----------------------------------------------------------------------------

def test_a_teacher_is_on_the_device_in_eval_mode_without_gradients_and_not_trained(tmp_path):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Embedding(7, 6), nn.Dropout(0.5), nn.Linear(6, 3))
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    modes = []

    def distill(model, batch, state):
        ids, _ = batch
        teacher = trainer.aux["teacher"]
        modes.append(teacher.training)
        with torch.no_grad():
            soft = teacher(ids).softmax(-1)
        log_probs = model.logits(ids).log_softmax(-1)
        return -(soft * log_probs).sum(-1).mean(), None

    cfg = TrainConfig(lr=0.1, max_steps=3, device="cpu", quiet=True, eval_interval=0)
    model = Tagger()
    trainer = Trainer(model, cfg, _batches(), out_dir=tmp_path, loss_fn=distill, aux_modules={"teacher": teacher})
    assert trainer.aux["teacher"] is teacher and not teacher.training
    assert all(p.device == trainer.device and not p.requires_grad for p in teacher.parameters())
    trainer.fit()
    assert modes == [False] * 3
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in before.items())
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}
    assert not any(id(p) in in_optimizer for p in teacher.parameters())
    assert set(load_weights(tmp_path / "model.safetensors")) == set(model.state_dict())
    assert len(trainer.optimizer.state) == len(in_optimizer)
    with pytest.raises(ValueError, match="shares parameters"):
        Trainer(model, cfg, _batches(), aux_modules={"teacher": model.head})


def test_counts_kept_on_the_device_until_a_log_line_give_the_same_tokens(tmp_path):
    # what CUDA does (no sync per step), exercised on the CPU
    ids = torch.randint(0, 7, (3, 2, 5), generator=torch.Generator().manual_seed(1))
    labels = torch.where(ids > 3, ids % 3, torch.full_like(ids, -100))
    batches = list(zip(ids, labels, strict=True))
    tokens = []
    for defer in (False, True):
        torch.manual_seed(0)
        cfg = TrainConfig(max_steps=7, log_interval=3, checkpoint_interval=2, eval_interval=0, device="cpu",
                          quiet=True)
        trainer = Trainer(Tagger(), cfg, batches, out_dir=tmp_path / str(defer))
        trainer.defer_counts = defer
        result = trainer.fit()
        rows = [json.loads(line) for line in (tmp_path / str(defer) / "metrics.jsonl").read_text().splitlines()]
        tokens.append((result.tokens, [r["tokens"] for r in rows]))
    expected = sum(int((labels[i % 3] != -100).sum()) for i in range(7))
    assert tokens[0] == tokens[1] and tokens[0][0] == expected and len(tokens[0][1]) == 2
