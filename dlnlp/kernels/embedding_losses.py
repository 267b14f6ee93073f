"""Batched Torch kernels for word-embedding training (word2vec now, GloVe's losses can live here too).

Every embedding objective of the word2vec family is a sum of binary logistic terms over a few
gathered output rows per example:

* negative sampling (Mikolov et al. 2013b): for hidden vector ``h`` and target ``w`` with
  negatives ``n_1..n_K ~ P(w)^0.75``,  ``L = -log s(h.u_w) - sum_k log s(-h.u_{n_k})``;
* hierarchical softmax (Morin and Bengio 2005; Mikolov et al. 2013b): for the inner nodes
  ``p_1..p_L`` on the Huffman path of ``w`` and branch bits ``c_j``,
  ``L = -sum_j log s((1 - 2 c_j) h.v_{p_j})``, i.e. label ``1 - c_j`` for node ``p_j``.

So one fused kernel serves both: gather rows ``U[idx]`` (B x T x D), scores ``h.U[idx]`` (B x T),
``g = label - sigmoid(score)`` masked, and the two gradients ``g @ U[idx]`` (for ``h``) and
``g (x) h`` (for the gathered rows). Updates are plain SGD applied with ``index_add_`` on the rows
that were touched (no dense gradient over the vocabulary); rows hit several times in one batch
get the sum of their updates, the batched relaxation of word2vec's sequential SGD (for
hierarchical softmax, whose top inner nodes are on every path, damped by 1/sqrt(hits); see
:func:`sgd_step_logistic`).
"""

from __future__ import annotations

import torch


def gather_context_mean(weight: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                       torch.Tensor]:
    """CBOW's hidden vector: mean of ``weight[context]`` over the valid (mask) positions.

    Returns ``(h, count)``; rows with no valid context get ``h = 0`` and ``count = 0``.
    """
    rows = weight[context] * mask.unsqueeze(-1).to(weight.dtype)
    count = mask.sum(dim=1)
    h = rows.sum(dim=1) / count.clamp(min=1).unsqueeze(-1).to(weight.dtype)
    return h, count


def logistic_scores(h: torch.Tensor, out_rows: torch.Tensor) -> torch.Tensor:
    """Scores ``h_b . u_{b,t}`` for hidden vectors (B x D) and gathered output rows (B x T x D)."""
    return torch.bmm(out_rows, h.unsqueeze(-1)).squeeze(-1)


def binary_logistic_loss(h: torch.Tensor, out_rows: torch.Tensor, labels: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """``-sum_{b,t} mask * log s(sign * score)``, sign = +1 for label 1 and -1 for label 0 (reference loss)."""
    scores = logistic_scores(h, out_rows)
    signed = torch.where(labels > 0.5, scores, -scores)
    return -(torch.nn.functional.logsigmoid(signed) * mask).sum()


def binary_logistic_grad(h: torch.Tensor, out_rows: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused forward and backward of :func:`binary_logistic_loss`.

    Returns ``(loss, grad_h, grad_rows)`` where the gradients are those of the loss (descend along
    minus them). ``g = (label - s(score)) * mask`` is word2vec's ``g`` before the learning rate.
    """
    scores = logistic_scores(h, out_rows)
    prob = torch.sigmoid(scores)
    g = (labels - prob) * mask
    signed = torch.where(labels > 0.5, scores, -scores)
    loss = -(torch.nn.functional.logsigmoid(signed) * mask).sum()
    grad_h = -torch.bmm(g.unsqueeze(1), out_rows).squeeze(1)
    grad_rows = -g.unsqueeze(-1) * h.unsqueeze(1)
    return loss, grad_h, grad_rows


def sgd_step_logistic(out_weight: torch.Tensor, h: torch.Tensor, out_index: torch.Tensor,
                      labels: torch.Tensor, mask: torch.Tensor, lr: float | torch.Tensor,
                      damp_duplicates: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the output rows ``out_weight[out_index]``; returns ``(loss, grad_h)``.

    The caller routes ``grad_h`` to the input rows (one row for skip-gram, every context row for
    CBOW) with :func:`sgd_rows`. ``out_index`` is B x T; ``labels``/``mask`` B x T floats.
    """
    out_rows = out_weight[out_index]
    loss, grad_h, grad_rows = binary_logistic_grad(h, out_rows, labels, mask)
    flat = out_index.reshape(-1)
    grad_rows = grad_rows.reshape(-1, out_weight.shape[1])
    if damp_duplicates:
        # A row hit n times in one batch (the Huffman root is on every path) would get the sum of
        # n gradients all taken at the same stale value, which overshoots and diverges where
        # sequential SGD corrects itself after each step; scale such rows by 1/sqrt(n) (the sum
        # for n = 1, between the sum and the mean otherwise). Used for hierarchical softmax.
        counts = torch.bincount(flat, minlength=out_weight.shape[0])[flat]
        grad_rows = grad_rows * counts.to(grad_rows.dtype).rsqrt().unsqueeze(1)
    out_weight.index_add_(0, flat, grad_rows, alpha=-lr)
    return loss, grad_h


def sgd_rows(weight: torch.Tensor, index: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor) -> None:
    """``weight[index] -= lr * grad`` with repeated indices summed (sparse update)."""
    weight.index_add_(0, index.reshape(-1), grad.reshape(-1, weight.shape[1]), alpha=-lr)


def negative_sampling_targets(positive: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                         torch.Tensor]:
    """Targets ``[w, n_1..n_K]``, labels ``[1, 0..0]`` and a mask that drops negatives equal to ``w``

    (word2vec.c and gensim skip a negative that happens to be the positive word).
    """
    index = torch.cat([positive.unsqueeze(1), negatives], dim=1)
    labels = torch.zeros(index.shape, dtype=torch.float32, device=index.device)
    labels[:, 0] = 1.0
    mask = torch.ones_like(labels)
    mask[:, 1:] = (negatives != positive.unsqueeze(1)).to(labels.dtype)
    return index, labels, mask


def hierarchical_softmax_targets(words: torch.Tensor, points: torch.Tensor, codes: torch.Tensor,
                                 lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inner nodes, labels ``1 - code`` and mask for each word's Huffman path.

    ``points``/``codes`` are V x L tables padded past each word's ``lengths`` (padding points at
    node 0 with mask 0, so gathers stay in range).
    """
    index = points[words]
    labels = 1.0 - codes[words].to(torch.float32)
    steps = torch.arange(points.shape[1], device=words.device)
    mask = (steps.unsqueeze(0) < lengths[words].unsqueeze(1)).to(torch.float32)
    return index, labels, mask


class AliasSampler:
    """O(1) draws from a fixed discrete distribution with Walker's alias method, on any device."""

    def __init__(self, prob: torch.Tensor, other: torch.Tensor):
        self.prob = prob.to(torch.float32)
        self.other = other.to(torch.int64)

    @classmethod
    def from_weights(cls, weights: torch.Tensor) -> AliasSampler:
        from dlnlp.kernels.w2v_native import build_alias

        prob, other = build_alias(weights.detach().cpu().double().numpy())
        device = weights.device
        return cls(torch.from_numpy(prob).to(device), torch.from_numpy(other).to(device))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.prob.device
        n = self.prob.shape[0]
        bucket = torch.randint(0, n, shape, device=device, generator=generator)
        coin = torch.rand(shape, device=device, generator=generator)
        return torch.where(coin < self.prob[bucket], bucket, self.other[bucket])
