"""The logistic-regression probe (dlnlp.transfer.logreg) against scikit-learn and by its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlnlp.errors import InputError
from dlnlp.transfer.logreg import Standardizer, choose_l2, fit_logistic, held_out_split


def problem(n: int = 240, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features on very different scales and offsets; labels from a noisy linear rule (not separable)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.logspace(-1, 1, d) + torch.linspace(-3, 5, d)
    w = torch.randn(d, classes, generator=g)
    y = (((x - x.mean(0)) / x.std(0)) @ w + torch.randn(n, classes, generator=g)).argmax(-1)
    return x, y


@pytest.mark.parametrize("l2", [1e-3, 3e-2])
def test_the_fit_matches_scikit_learn_at_the_same_strength(l2):
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = problem()
    fit = fit_logistic(x, y, l2=l2)
    assert isinstance(fit.linear, torch.nn.Linear) and fit.l2 == l2 and fit.held_out == {}
    z = Standardizer.fit(x)(x).numpy().astype(np.float64)
    # sklearn minimizes ||W||^2 / 2 + C sum CE: the same problem at C = 1 / (l2 N)
    reference = linear_model.LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(z, y.numpy())
    with torch.no_grad():
        ours = fit.linear(x).softmax(-1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(z), atol=2e-3)
    assert (ours.argmax(-1) == reference.predict(z)).mean() >= 0.99


def test_folding_the_standardization_gives_the_same_logits():
    x, _ = problem(n=50, d=7)
    standardize = Standardizer.fit(x)
    linear = torch.nn.Linear(7, 4)
    folded = standardize.fold(linear)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), linear(standardize(x)), atol=1e-4, rtol=1e-5)
    assert type(folded) is torch.nn.Linear


def test_a_constant_feature_does_not_break_the_fit():
    x, y = problem(n=60, d=4, classes=2)
    x[:, 2] = 7.0
    fit = fit_logistic(x, y, l2=1e-2)
    assert torch.isfinite(fit.linear.weight).all() and torch.isfinite(fit.linear(x)).all()


def test_the_held_out_tenth_is_seeded_and_disjoint():
    fit_rows, held = held_out_split(95, seed=3)
    assert len(held) == 9 and len(fit_rows) == 86
    assert sorted(torch.cat([fit_rows, held]).tolist()) == list(range(95))
    again, held_again = held_out_split(95, seed=3)
    assert torch.equal(held, held_again) and not torch.equal(held, held_out_split(95, seed=4)[1])


def test_choose_l2_takes_the_best_score_and_the_weaker_penalty_on_a_tie():
    seen = []

    def score(fit_rows, held, l2):
        seen.append((len(fit_rows), len(held)))
        return {1e-3: 0.5, 1e-2: 0.8, 1e-1: 0.8}[l2]

    best, scores = choose_l2(score, 40, grid=(1e-1, 1e-3, 1e-2))
    assert best == 1e-2 and list(scores) == [1e-3, 1e-2, 1e-1]
    assert seen == [(36, 4)] * 3
    with pytest.raises(InputError, match="at least 10"):
        choose_l2(score, 9)


def test_noisy_data_gets_a_stronger_penalty_than_clean_data():
    grid = (1e-4, 1e-2, 1.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 300, generator=g)
    y = (x[:, 0] > 0).long()
    clean = fit_logistic(x[:, :3], y, grid=grid)  # separable by one of three features
    flipped = torch.where(torch.rand(400, generator=g) < 0.1, 1 - y, y)
    noisy = fit_logistic(x, flipped, grid=grid)  # 299 noise features, a tenth of the labels flipped
    assert clean.l2 < noisy.l2
    assert set(noisy.held_out) == set(grid) and noisy.held_out_accuracy == max(noisy.held_out.values())


def test_one_class_is_refused():
    with pytest.raises(InputError, match="two classes"):
        fit_logistic(torch.randn(20, 3), torch.zeros(20, dtype=torch.long), l2=1e-3)
