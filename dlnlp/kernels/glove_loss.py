"""GloVe's weighted least-squares loss and its optimizers, as batched Torch kernels (CPU and CUDA).

Pennington et al. (2014), eq. 8: ``J = sum_ij f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2`` over the
non-zero entries, with ``f(x) = (x / x_max)^alpha`` below ``x_max`` and 1 above (eq. 9). Like
Stanford's ``glove.c`` the kernels use ``0.5 * J`` (its reported cost), whose gradient is
``f * diff * w~_j`` for ``w_i``, ``f * diff * w_i`` for ``w~_j`` and ``f * diff`` for both biases.

Rows are *augmented* so one gather and one dot product give the whole prediction: a word row is
``[w_i, b_i, 1]`` and a context row ``[w~_j, 1, b~_j]``, so ``row_i . row_j = w_i . w~_j + b_i + b~_j``
and the gradient of a row is ``f * diff`` times the other row (its bias slot gets ``f * diff``; the
constant slot's gradient is discarded by a zero learning-rate scale).
"""

from __future__ import annotations

import torch


def glove_weight(x: torch.Tensor, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """The weighting function f(x) = (x / x_max)^alpha for x < x_max, else 1 (GloVe eq. 9)."""
    return torch.where(x < x_max, (x / x_max).pow(alpha), torch.ones_like(x))


def glove_loss_and_grads(word_rows: torch.Tensor, context_rows: torch.Tensor, log_x: torch.Tensor,
                         weight: torch.Tensor, clip: float | None = 100.0,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss ``0.5 * sum f (row_i . row_j - log X)^2`` of a batch and the gradient of each row.

    ``word_rows``/``context_rows`` are augmented rows (B, dim + 2). The gradients are per entry
    (B, dim + 2), the way glove.c computes them before its update: the vector part of each entry's
    gradient is clipped elementwise to ``[-clip, clip]`` (glove.c's ``-grad-clip``, default 100;
    biases are not clipped). Duplicate rows in a batch are summed by the caller (``index_add_``).
    """
    diff = torch.linalg.vecdot(word_rows, context_rows) - log_x
    fdiff = weight * diff
    loss = 0.5 * torch.dot(fdiff, diff)
    grad_word = context_rows * fdiff[:, None]
    grad_context = word_rows * fdiff[:, None]
    if clip is not None:
        dim = word_rows.shape[1] - 2
        grad_word[:, :dim].clamp_(-clip, clip)
        grad_context[:, :dim].clamp_(-clip, clip)
    return loss, grad_word, grad_context


def adagrad_step_(param: torch.Tensor, accumulator: torch.Tensor, grad: torch.Tensor, scale: torch.Tensor) -> None:
    """glove.c's AdaGrad on whole matrices, in place: ``u = scale * g; G += u^2; p -= u / sqrt(G)``.

    ``scale`` is the per-column learning rate (vector columns ``lr``, bias column the bias rate,
    constant column 0). With the accumulator starting at 1 this is glove.c's update
    ``p -= lr g / sqrt(1 + sum (lr g)^2)``; the accumulator is updated before the step (Duchi et al.)
    so that a batch's summed gradient cannot move a coordinate by more than 1.
    Rows with a zero gradient are unchanged.
    """
    update = grad.mul_(scale)
    accumulator.addcmul_(update, update)
    param.addcdiv_(update, accumulator.sqrt(), value=-1.0)


def adam_step_(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, grad: torch.Tensor,
               scale: torch.Tensor, step: int, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """Adam (Kingma and Ba 2015) on whole matrices, in place; ``scale`` is the per-column learning rate."""
    beta1, beta2 = betas
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    correction1 = 1 - beta1 ** step
    correction2 = 1 - beta2 ** step
    denom = (exp_avg_sq / correction2).sqrt_().add_(eps)
    param.addcdiv_(exp_avg * (scale / correction1), denom, value=-1.0)
