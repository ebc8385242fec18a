"""Contrastive baseline: InfoNCE over each query's row, graded labels binarised at a threshold."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from listrank.errors import ListrankError
from listrank.losses._common import block_label_matrix, check_inputs, compute_dtype
from listrank.losses.registry import register


@register("infonce")
class InfoNCELoss(nn.Module):
    r"""InfoNCE / MultipleNegativesRankingLoss with in-batch negatives (van den Oord et al. 2018).

    Inputs:
        scores: float ``[B, B*G]`` (query i's own group is columns ``i*G .. i*G+G-1``).
        labels: ``[B, G]`` graded labels of the own group.
        temperature: divides the scores (float > 0, or a scalar tensor).
        Returns a scalar of ``scores.dtype``.

    Options:
        positive_threshold (default 2): own-group passages with label >= threshold are positives,
            the rest (<= threshold-1) negatives -- SyCL's "synthetic binary" baseline, which keeps
            levels 3 and 2 as positives and 1 and 0 as negatives. For 0/1 labels use 1.

    Math: with s = scores / T, for query i let N_i be its negatives (own-group passages below the
    threshold plus every other query's passages, whatever their labels) and P_i its positives.
    Each positive p is its own cross-entropy term whose denominator holds p and N_i only (the
    other positives of the same query are masked out, so they do not act as negatives):

        l(i, p) = -log( exp(s_ip) / (exp(s_ip) + sum_{n in N_i} exp(s_in)) )
                = softplus( logsumexp_{n in N_i} s_in - s_ip )
        loss = mean over all (i, p) pairs in the batch

    This is the usual multi-positive generalisation of InfoNCE/MNRL; with exactly one positive
    per query it equals ``cross_entropy(s, target)``. A query without a positive in its group
    contributes no term (its passages still serve as negatives for the others); a row with no
    negative at all (only possible with B = 1) gives terms of 0. A batch with no
    positive at all raises ``ListrankError``: a silent zero loss would hide a wrong threshold
    (e.g. 0/1 labels with the default threshold 2) and train nothing.

    Requirements:
        1. Every batch has a passage with label >= ``positive_threshold`` (else ``ListrankError``).
        2. Any batch size (``min_queries = 1``); ``listwise = False``: a list whose passages share
           one label is kept, its passages still serve as negatives.
        3. Scores of every query against every passage of the batch: the other queries' passages
           are the in-batch negatives.

    Relations:
        - With one positive per query and ``temperature = 1/scale`` this is sentence-transformers'
          ``MultipleNegativesRankingLoss`` (scores as similarities, in-batch negatives).
        - ``wasserstein`` and ``listnet`` use all levels (3 > 2 > 1 > 0); this loss only knows
          positive vs negative: SyCL's "synthetic binary" baseline.

    References:
        - van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
          arXiv:1807.03748 (InfoNCE).
        - Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply",
          arXiv:1705.00652 (multiple negatives ranking).
        - SyCL, arXiv:2503.23239 (the binarised baseline at threshold 2).

    Example:
        The loss on a tiny batch, and what a training run would call (``listrank train synth.jsonl
        --loss infonce`` wires it up from the command line)::

            >>> import torch
            >>> from listrank.losses import get
            >>> loss = get("infonce")
            >>> labels = torch.tensor([[3., 2., 1., 0.], [3., 2., 1., 0.]])  # B = 2 queries, G = 4
            >>> def scores(own):  # each query against all B*G = 8 passages; the other's score -1
            ...     s = torch.full((2, 8), -1.0)
            ...     s[0, :4], s[1, 4:] = own, own
            ...     return s.requires_grad_()
            >>> follows = scores(torch.tensor([3., 2., 1., 0.]))  # scored in the order of the levels
            >>> value = loss(follows, labels, temperature=0.5)
            >>> reverse = scores(torch.tensor([0., 1., 2., 3.]))  # the opposite order
            >>> round(value.item(), 2), bool(value < loss(reverse, labels, temperature=0.5))
            (0.09, True)
            >>> value.backward(); follows.grad.shape
            torch.Size([2, 8])
    """

    listwise = False  # a list with one label still gives negatives
    min_queries = 1

    def __init__(self, positive_threshold: float = 2):
        super().__init__()
        self.positive_threshold = positive_threshold

    def extra_repr(self) -> str:
        return f"positive_threshold={self.positive_threshold}"

    def forward(self, scores: Tensor, labels: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        labels, b, g = check_inputs(scores, labels, temperature)
        logits = scores.to(compute_dtype(scores)) / temperature

        # positives live only in the own group; everything else in the row is a negative
        pos = block_label_matrix(labels >= self.positive_threshold, b, g)  # [B, B*G] bool
        if not bool(pos.any()):
            raise ListrankError(
                f"infonce: no positive in this batch (labels max {labels.max().item()} < "
                f"positive_threshold {self.positive_threshold}); for 0/1 labels use "
                f"positive_threshold=1"
            )
        neg = ~pos
        has_neg = neg.any(dim=1, keepdim=True)
        # Rows without any negative (B = 1, all positives) would give logsumexp(-inf...) and a
        # NaN gradient; give them dummy finite logits and drop their terms below.
        neg_logits = torch.where(neg, logits, float("-inf"))
        neg_logits = torch.where(has_neg, neg_logits, torch.zeros_like(logits))
        lse_neg = torch.logsumexp(neg_logits, dim=1, keepdim=True)  # [B, 1]

        terms = F.softplus(lse_neg - logits)  # [B, B*G]; only the positive entries are used
        # masked mean rather than terms[pos]: no data-dependent shape, no extra device sync
        terms = torch.where(pos & has_neg, terms, torch.zeros_like(terms))
        loss = terms.sum() / pos.sum()
        return loss.to(scores.dtype)
