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

    Requirements:
        1. Graded labels with at least two distinct levels in a list (``listwise = True``: the
           trainer drops a list whose passages share one label, it would teach nothing).
        2. Any batch size (``min_queries = 1``); in-batch passages are not used.

    Relations:
        - ``wasserstein`` (SyCL's loss) also fits a softmax target built from the labels, but as a
          distance between batch-level Gaussians that spans in-batch negatives too; ListNet is the
          per-query version of that idea.
        - ``infonce`` binarises the labels and uses in-batch negatives; ListNet keeps every level
          and ignores the other queries' passages.

    References:
        - Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach", ICML 2007.

    Example:
        The loss on a tiny batch, and what a training run would call (``listrank train synth.jsonl
        --loss listnet`` wires it up from the command line)::

            >>> import torch
            >>> from listrank.losses import get
            >>> loss = get("listnet")
            >>> labels = torch.tensor([[3., 2., 1., 0.], [3., 2., 1., 0.]])  # B = 2 queries, G = 4
            >>> def scores(own):  # each query against all B*G = 8 passages; the other's score -1
            ...     s = torch.full((2, 8), -1.0)
            ...     s[0, :4], s[1, 4:] = own, own
            ...     return s.requires_grad_()
            >>> follows = scores(torch.tensor([3., 2., 1., 0.]))  # scored in the order of the levels
            >>> value = loss(follows, labels, temperature=0.5)
            >>> reverse = scores(torch.tensor([0., 1., 2., 3.]))  # the opposite order
            >>> round(value.item(), 2), bool(value < loss(reverse, labels, temperature=0.5))
            (0.21, True)
            >>> value.backward(); follows.grad.shape
            torch.Size([2, 8])
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
