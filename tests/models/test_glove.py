"""GloVe: the weighting function, loss and gradients against autograd, glove.c's update, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlnlp.kernels import glove_native
from dlnlp.kernels.glove_loss import adagrad_step_, glove_loss_and_grads, glove_weight
from dlnlp.models.glove import GloVe, GloVeConfig
from tests.conftest import requires_cuda

needs_native = pytest.mark.skipif(glove_native.load_library() is None, reason="no C compiler for the native kernel")


def test_weighting_function():
    x = torch.tensor([0.5, 10.0, 50.0, 100.0, 250.0], dtype=torch.float64)
    f = glove_weight(x, x_max=100.0, alpha=0.75)
    assert f.tolist() == pytest.approx([(0.5 / 100) ** 0.75, 0.1 ** 0.75, 0.5 ** 0.75, 1.0, 1.0])
    assert glove_weight(torch.tensor([5.0]), x_max=10.0, alpha=1.0).item() == pytest.approx(0.5)
    # Monotone and capped at 1.
    grid = torch.linspace(0.01, 300, 500, dtype=torch.float64)
    values = glove_weight(grid, 100.0, 0.75)
    assert torch.all(values[1:] >= values[:-1]) and values.max() == 1.0


def augmented(batch, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    word = torch.randn(batch, dim + 2, generator=g, dtype=torch.float64)
    context = torch.randn(batch, dim + 2, generator=g, dtype=torch.float64)
    word[:, dim + 1] = 1.0  # [w, b, 1]
    context[:, dim] = 1.0  # [w~, 1, b~]
    return word, context


def test_loss_and_gradients_match_autograd():
    dim, batch = 6, 9
    word, context = augmented(batch, dim)
    x = torch.rand(batch, dtype=torch.float64) * 20 + 0.5
    log_x, weight = x.log(), glove_weight(x, 10.0, 0.75)
    loss, grad_word, grad_context = glove_loss_and_grads(word, context, log_x, weight, clip=None)
    # The paper's J with explicit w, b, w~, b~ leaves, halved (glove.c's cost).
    w = word[:, :dim].clone().requires_grad_()
    b = word[:, dim].clone().requires_grad_()
    wt = context[:, :dim].clone().requires_grad_()
    bt = context[:, dim + 1].clone().requires_grad_()
    j = 0.5 * (weight * ((w * wt).sum(1) + b + bt - log_x) ** 2).sum()
    j.backward()
    assert loss.item() == pytest.approx(j.item(), rel=1e-12)
    torch.testing.assert_close(grad_word[:, :dim], w.grad)
    torch.testing.assert_close(grad_word[:, dim], b.grad)
    torch.testing.assert_close(grad_context[:, :dim], wt.grad)
    torch.testing.assert_close(grad_context[:, dim + 1], bt.grad)


def test_gradient_clipping_is_elementwise_on_vectors_only():
    dim = 4
    word, context = augmented(3, dim, seed=1)
    word *= 30  # large rows, so f * diff * row exceeds the clip
    log_x = torch.zeros(3, dtype=torch.float64)
    weight = torch.ones(3, dtype=torch.float64)
    _, raw, _ = glove_loss_and_grads(word.clone(), context.clone(), log_x, weight, clip=None)
    _, clipped, _ = glove_loss_and_grads(word.clone(), context.clone(), log_x, weight, clip=5.0)
    torch.testing.assert_close(clipped[:, :dim], raw[:, :dim].clamp(-5, 5))
    torch.testing.assert_close(clipped[:, dim:], raw[:, dim:])  # bias gradient not clipped
    assert raw[:, :dim].abs().max() > 5


def test_adagrad_step_formula():
    # glove.c: u = lr g; G += u^2; p -= u / sqrt(G), G starting at 1.
    param = torch.tensor([[1.0, 2.0]])
    acc = torch.ones(1, 2)
    grad = torch.tensor([[4.0, -2.0]])
    adagrad_step_(param, acc, grad.clone(), torch.tensor([0.5, 0.0]))
    assert acc.tolist() == [[5.0, 1.0]]
    assert param[0, 0].item() == pytest.approx(1.0 - 2.0 / math.sqrt(5.0))
    assert param[0, 1].item() == 2.0  # zero rate: the constant slot never moves


def glove_c_update(word, context, gw, gc, i, j, x, dim, lr, bias_lr, x_max, alpha, clip):
    """glove.c's per-entry update, transcribed in numpy (double precision)."""
    w, c = word[i], context[j]
    diff = w[:dim] @ c[:dim] + w[dim] + c[dim + 1] - math.log(x)
    fdiff = diff * (1.0 if x > x_max else (x / x_max) ** alpha)
    t1 = np.clip(fdiff * c[:dim], -clip, clip) * lr
    t2 = np.clip(fdiff * w[:dim], -clip, clip) * lr
    u1, u2 = t1 / np.sqrt(gw[i, :dim]), t2 / np.sqrt(gc[j, :dim])
    gw[i, :dim] += t1 * t1
    gc[j, :dim] += t2 * t2
    w[:dim] -= u1
    c[:dim] -= u2
    t = fdiff * bias_lr
    w[dim] -= t / math.sqrt(gw[i, dim])
    c[dim + 1] -= t / math.sqrt(gc[j, dim + 1])
    gw[i, dim] += t * t
    gc[j, dim + 1] += t * t
    return 0.5 * fdiff * diff


@needs_native
def test_native_kernel_is_glove_c_update():
    dim, vocab = 5, 4
    cfg = GloVeConfig(dim=dim, x_max=10.0, lr=0.05, bias_lr=1.0, grad_clip=0.3, epochs=1, seed=3)
    model = GloVe(vocab, cfg)
    word, context = model.word.double().numpy().copy(), model.context.double().numpy().copy()
    gw, gc = np.ones_like(word), np.ones_like(context)
    entries = [(0, 1, 3.0), (1, 0, 25.0), (2, 2, 0.5), (0, 1, 3.0), (3, 0, 7.0)]
    expected_cost = sum(glove_c_update(word, context, gw, gc, i, j, x, dim, 0.05, 1.0, 10.0, 0.75, 0.3)
                        for i, j, x in entries)
    rows = np.array([e[0] for e in entries], dtype=np.int32)
    cols = np.array([e[1] for e in entries], dtype=np.int32)
    x = np.array([e[2] for e in entries])
    cost = glove_native.train_epoch_native(
        rows=rows, cols=cols, log_x=np.log(x).astype(np.float32),
        weight=glove_weight(torch.from_numpy(x), 10.0, 0.75).numpy().astype(np.float32),
        word=model.word.numpy(), context=model.context.numpy(), gsq_word=model._state[0].numpy(),
        gsq_context=model._state[1].numpy(), dim=dim, lr=0.05, bias_lr=1.0, clip=0.3, threads=1,
        progress=np.zeros(2, dtype=np.int64))
    assert cost == pytest.approx(expected_cost, rel=1e-4)
    np.testing.assert_allclose(model.word.numpy(), word, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.context.numpy(), context, rtol=1e-4, atol=1e-6)


def low_rank_matrix(vocab=40, rank=3, seed=0):
    """A dense co-occurrence matrix whose logs are exactly w . w~ + b + b~ (GloVe can fit it)."""
    rng = np.random.default_rng(seed)
    w, wt = rng.normal(0, 0.7, (vocab, rank)), rng.normal(0, 0.7, (vocab, rank))
    b, bt = rng.normal(1.5, 0.5, vocab), rng.normal(1.5, 0.5, vocab)
    log_x = w @ wt.T + b[:, None] + bt[None, :]
    rows, cols = np.meshgrid(np.arange(vocab), np.arange(vocab), indexing="ij")
    return rows.ravel(), cols.ravel(), np.exp(log_x).ravel()


@pytest.mark.parametrize("backend,optimizer", [("torch", "adagrad"), ("torch", "adam"),
                                               pytest.param("native", "adagrad", marks=needs_native)])
def test_training_fits_a_low_rank_log_matrix(backend, optimizer):
    rows, cols, x = low_rank_matrix()
    lr = 0.05 if optimizer == "adagrad" else 0.02
    cfg = GloVeConfig(dim=8, x_max=100.0, epochs=60, lr=lr, batch_size=64, optimizer=optimizer, seed=1)
    model = GloVe(40, cfg)
    before = model.loss(torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(x))
    history = model.fit(rows, cols, x, backend=backend, threads=1)
    after = model.loss(torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(x))
    assert len(history) == 60 and history[-1]["backend"] == backend
    assert after < 0.05 * before
    assert history[-1]["cost"] < history[0]["cost"]


def test_same_seed_same_vectors_and_outputs():
    rows, cols, x = low_rank_matrix(vocab=20)
    runs = []
    for _ in range(2):
        model = GloVe(20, GloVeConfig(dim=4, epochs=3, batch_size=32, seed=7))
        model.fit(rows, cols, x, backend="torch")
        runs.append(model)
    np.testing.assert_array_equal(runs[0].vectors(), runs[1].vectors())
    model = runs[0]
    np.testing.assert_allclose(model.vectors("sum"), (model.W + model.W_tilde).numpy())
    np.testing.assert_allclose(model.vectors("word"), model.W.numpy())
    assert set(model.state_dict()) == {"W", "W_tilde", "b", "b_tilde"}


def test_initialization_follows_glove_c():
    model = GloVe(500, GloVeConfig(dim=10))
    assert model.W.abs().max() <= 0.05 and model.b.abs().max() <= 0.05  # (rand - 0.5) / dim
    assert torch.all(model.word[:, 11] == 1) and torch.all(model.context[:, 10] == 1)


def test_bad_input_and_max_time():
    model = GloVe(5, GloVeConfig(dim=2, epochs=2))
    with pytest.raises(ValueError):
        model.fit(np.array([0]), np.array([1]), np.array([0.0]))
    with pytest.raises(ValueError):
        model.fit(np.array([0]), np.array([7]), np.array([1.0]))
    with pytest.raises(ValueError):
        GloVeConfig(optimizer="sgd").validate()
    rows, cols, x = low_rank_matrix(vocab=30)
    history = GloVe(30, GloVeConfig(dim=4, epochs=1000, batch_size=8)).fit(rows, cols, x, backend="torch",
                                                                            max_time=0.2)
    assert len(history) < 1000


@requires_cuda
def test_cuda_training_matches_shapes():
    rows, cols, x = low_rank_matrix()
    model = GloVe(40, GloVeConfig(dim=8, epochs=20, batch_size=64), device="cuda")
    history = model.fit(rows, cols, x)
    assert history[-1]["backend"] == "torch" and history[-1]["cost"] < history[0]["cost"]
    assert model.vectors().shape == (40, 8)


@pytest.mark.parametrize(("changes", "message"), [({"alpha": -5.0}, "--alpha must be >= 0, got -5.0"),
                                                  ({"epochs": 0}, "--epochs must be >= 1, got 0")])
def test_config_refuses_meaningless_alpha_and_epochs(changes, message):
    # `glove train --alpha -5` and `--epochs 0` trained (or skipped training) and wrote vectors.
    with pytest.raises(ValueError, match=message):
        GloVeConfig(**changes).validate()
