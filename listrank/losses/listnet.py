"""Per-query list-wise baseline: ListNet top-1 (KL divergence) over each query's own group."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from listrank.losses._common import check_inputs, check_label_temperature, compute_dtype, own_group
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
        q_i = softmax(labels_i / tau_L),  p_i = softmax(scores_i,own / T)
        loss = (1/B) sum_i KL(q_i || p_i) = (1/B) sum_i sum_g q_ig (log q_ig - log p_ig)

    KL differs from ListNet's cross-entropy only by the labels' entropy (a constant), so the
    gradients are the same and a perfect fit gives 0. Unlike ``wasserstein`` this is a mean of
    per-query terms: it does not depend on which queries share a batch.

    Options:
        label_temperature tau_L (default 1.0, the raw labels): divides the labels in the target
            softmax; each level then weighs e^(1/tau_L) times the level below (tau_L = 1: e ~= 2.7;
            tau_L -> 0: uniform over the group's top-labelled passages).
    """

    listwise = True
    min_queries = 1

    def __init__(self, label_temperature: float = 1.0):
        super().__init__()
        self.label_temperature = check_label_temperature(label_temperature)

    def extra_repr(self) -> str:
        return f"label_temperature={self.label_temperature}"

    def forward(self, scores: Tensor, labels: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        labels, b, g = check_inputs(scores, labels, temperature)
        dtype = compute_dtype(scores)
        log_p = torch.log_softmax(own_group(scores, b, g).to(dtype) / temperature, dim=1)
        log_q = torch.log_softmax(labels.to(dtype) / self.label_temperature, dim=1)
        loss = F.kl_div(log_p, log_q, log_target=True, reduction="sum") / b
        return loss.to(scores.dtype)
