"""Multinomial logistic regression on fixed features: the probing classifier of SentEval (Conneau &
Kiela 2018), what ``dlnlp finetune --strategy features --head-fit logreg`` fits on frozen features.

    fit = fit_logistic(x, y)        # x [N, D] float, y [N] class ids 0..C-1
    fit.linear(x_new).softmax(-1)   # a plain nn.Linear: the standardization is folded into it
    fit.l2, fit.held_out            # the chosen L2 strength; held-out accuracy at each strength tried

The fit, on the features standardized by the training rows' mean and standard deviation
(``z = (x - mean) / std``), minimizes full-batch by L-BFGS with a strong-Wolfe line search

    mean_i CE(W z_i + b, y_i) + l2 / 2 * ||W||^2          (the bias is not penalized)

which is scikit-learn's ``LogisticRegression(C=1 / (l2 * N))`` (multinomial; it minimizes
``||W||^2 / 2 + C * sum_i CE``). Two classes keep two rows of ``W``, as the multinomial model does.
Without a given ``l2`` the strength comes from :data:`L2_GRID`, each tried on a held-out tenth of the
training rows (a seeded split, SentEval's protocol; ties go to the weaker penalty), and the model is
then refit on all rows at the chosen one. ``W z + b = (W / std) x + (b - (W / std) mean)``: the
returned ``nn.Linear`` reads raw features.

The pieces (:class:`Standardizer`, :func:`lbfgs`, :func:`penalized_loss`, :func:`choose_l2`) serve
probes that learn more than a linear map on the same protocol, such as ``bench/elmo.py``'s scalar mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dlnlp.errors import InputError

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
HELD_OUT_PARTS = 10   # one part in this many held out to choose the L2 strength
MAX_ITER = 500        # L-BFGS iterations per fit


@dataclass
class Standardizer:
    """``(x - mean) / std`` per feature, with the mean and (sample) standard deviation of the rows it
    was fit on; a constant feature keeps ``std`` 1e-6 and maps to 0."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        """Statistics over the first dimension (rows); any trailing shape (``[N, D]``, ``[N, L, D]``)."""
        return cls(x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def fold(self, linear: nn.Linear) -> nn.Linear:
        """The ``nn.Linear`` that applies ``linear`` to standardized input, reading raw ``[..., D]`` input."""
        mean, std = self.mean.reshape(-1), self.std.reshape(-1)
        folded = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device)
        with torch.no_grad():
            weight = linear.weight / std
            folded.weight.copy_(weight)
            folded.bias.copy_(linear.bias - weight @ mean)
        return folded


def penalized_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy plus ``l2 / 2 * ||weight||^2``."""
    return F.cross_entropy(logits, y) + 0.5 * l2 * weight.pow(2).sum()


def lbfgs(params: Iterable[torch.Tensor], loss_fn: Callable[[], torch.Tensor], max_iter: int = MAX_ITER) -> None:
    """Minimize ``loss_fn()`` over ``params`` (in place) full-batch by L-BFGS: strong-Wolfe line search,
    history 20, up to ``max_iter`` iterations, torch's default tolerances."""
    opt = torch.optim.LBFGS(list(params), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


def held_out_split(n: int, seed: int = 0, parts: int = HELD_OUT_PARTS) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit rows, held-out rows): ``n // parts`` rows drawn with ``seed`` held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n // parts:], order[: n // parts]


def choose_l2(fit_and_score: Callable[[torch.Tensor, torch.Tensor, float], float], n: int,
              grid: Iterable[float] = L2_GRID, seed: int = 0) -> tuple[float, dict[float, float]]:
    """The strength of ``grid`` whose model, fit on the fit rows, scores best on the held-out rows
    (:func:`held_out_split`): ``fit_and_score(fit_rows, held_rows, l2) -> accuracy``. Returns
    (best, {strength: score}); ties go to the weaker penalty."""
    grid = sorted(grid)
    if not grid:
        raise ValueError("an empty L2 grid")
    fit_rows, held_rows = held_out_split(n, seed)
    if not len(held_rows):
        raise InputError(f"{n} training examples: choosing the L2 strength holds out a tenth, which needs "
                         f"at least {HELD_OUT_PARTS}")
    scores = {l2: fit_and_score(fit_rows, held_rows, l2) for l2 in grid}
    return max(grid, key=lambda l2: (scores[l2], -l2)), scores


@dataclass
class LogisticFit:
    """What :func:`fit_logistic` returns: the classifier over raw features and how it was chosen."""

    linear: nn.Linear
    l2: float
    held_out: dict[float, float] = field(default_factory=dict)  # accuracy at each strength tried (none given)

    @property
    def held_out_accuracy(self) -> float | None:
        """The held-out accuracy at the chosen strength (None when ``l2`` was given)."""
        return self.held_out.get(self.l2)


def fit_logistic(x: torch.Tensor, y: torch.Tensor | Iterable[int], num_classes: int | None = None, *,
                 l2: float | None = None, grid: Iterable[float] = L2_GRID, seed: int = 0,
                 max_iter: int = MAX_ITER) -> LogisticFit:
    """Multinomial logistic regression of class ids ``y`` on features ``x`` ``[N, D]`` (see the module
    docstring): the L2 strength ``l2``, or the best of ``grid`` on a held-out tenth (drawn with ``seed``)."""
    x = torch.as_tensor(x).float()
    y = torch.as_tensor(y, dtype=torch.long, device=x.device)
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features [N, D] and one label per row, got {tuple(x.shape)} and {tuple(y.shape)}")
    classes = int(num_classes if num_classes is not None else int(y.max()) + 1)
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < classes:
        raise ValueError(f"labels must be in 0..{classes - 1}")
    if classes < 2 or len(torch.unique(y)) < 2:
        raise InputError("logistic regression needs training examples of at least two classes")
    standardizer = Standardizer.fit(x)
    z = standardizer(x)

    def fit(rows: torch.Tensor | None, strength: float) -> nn.Linear:
        inputs, targets = (z, y) if rows is None else (z[rows], y[rows])
        linear = nn.Linear(z.shape[1], classes).to(z.device)
        nn.init.zeros_(linear.weight)  # convex: start at zero, deterministic
        nn.init.zeros_(linear.bias)
        lbfgs(linear.parameters(), lambda: penalized_loss(linear(inputs), targets, linear.weight, strength),
              max_iter)
        return linear

    def fit_and_score(fit_rows: torch.Tensor, held_rows: torch.Tensor, strength: float) -> float:
        linear = fit(fit_rows, strength)
        with torch.no_grad():
            return float((linear(z[held_rows]).argmax(-1) == y[held_rows]).float().mean())

    held_out: dict[float, float] = {}
    if l2 is None:
        l2, held_out = choose_l2(fit_and_score, len(y), grid, seed)
    elif not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    linear = standardizer.fold(fit(None, l2))
    return LogisticFit(linear.requires_grad_(False), float(l2), held_out)
