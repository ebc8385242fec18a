"""Per-query list-wise baseline: ListNet top-1 (KL divergence) over each query's own group."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from listrank.losses._common import check_inputs, compute_dtype, own_group
from listrank.losses.registry import register


@register("listnet")
class ListNetLoss(nn.Module):
    r"""ListNet top-1 loss (Cao et al., ICML 2007) on each query's own group.

    Inputs:
        scores: float ``[B, B*G]``; only the own-group columns ``i*G .. i*G+G-1`` of row i are
            used (in-batch negatives are ignored: their labels are unknown).
        labels: ``[B, G]`` graded labels of the own group.
        temperature: divides the scores only, like SyCL's wasserstein targets (float > 0, or a
            scalar tensor). Returns a scalar of ``scores.dtype``.

    Math, per query i over its G passages:
        q_i = softmax(labels_i),  p_i = softmax(scores_i,own / T)
        loss = (1/B) sum_i KL(q_i || p_i) = (1/B) sum_i sum_g q_ig (log q_ig - log p_ig)

    KL differs from ListNet's cross-entropy only by the labels' entropy (a constant), so the
    gradients are the same and a perfect fit gives 0. Unlike ``wasserstein`` this is a mean of
    per-query terms: it does not depend on which queries share a batch.
    """

    listwise = True
    min_queries = 1

    def __init__(self):  # no options; an explicit signature lets get() reject unknown ones
        super().__init__()

    def forward(self, scores: Tensor, labels: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        labels, b, g = check_inputs(scores, labels, temperature)
        dtype = compute_dtype(scores)
        log_p = torch.log_softmax(own_group(scores, b, g).to(dtype) / temperature, dim=1)
        log_q = torch.log_softmax(labels.to(dtype), dim=1)
        loss = F.kl_div(log_p, log_q, log_target=True, reduction="sum") / b
        return loss.to(scores.dtype)
