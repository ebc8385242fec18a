"""SyCL's list-wise loss: squared 2-Wasserstein distance between Gaussians fitted to the batch."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from listrank.errors import ListrankError
from listrank.losses._common import block_label_matrix, check_inputs, check_label_temperature
from listrank.losses.registry import register


@register("wasserstein")
class WassersteinLoss(nn.Module):
    r"""Closed-form squared 2-Wasserstein (Fréchet) distance, as in SyCL (arXiv 2503.23239).

    Inputs:
        scores: float ``[B, B*G]``, query i scored against every passage of the batch; its own
            group is columns ``i*G .. i*G+G-1``, the rest are in-batch negatives.
        labels: ``[B, G]`` graded labels of each query's own group (e.g. 3/2/1/0).
        temperature: divides the scores only (float > 0, or a scalar tensor).
        Needs B >= 2. Returns a scalar of ``scores.dtype``.

    Math (computed in float64):
        P = softmax(scores / T) row-wise                      ``[B, D]``, D = B*G
        Q = softmax(L / tau_L) row-wise, L = block-diagonal labels   (in-batch negatives get label 0;
                                                      tau_L = label_temperature, 1 in the paper)
        mu_p, mu_t = mean of the B rows of P, Q
        X_p = (P - mu_p) / sqrt(B-1),  X_t = (Q - mu_t) / sqrt(B-1)
        Sigma_p = X_p^T X_p,  Sigma_t = X_t^T X_t              (unbiased covariance, ``[D, D]``)
        loss = ||mu_p - mu_t||^2 + Tr(Sigma_p) + Tr(Sigma_t) - 2 Tr((Sigma_p Sigma_t)^{1/2})

    The cross term is never formed as a ``[D, D]`` square root: the non-zero eigenvalues of
    Sigma_p Sigma_t are those of (X_p X_t^T)(X_p X_t^T)^T, so
    Tr((Sigma_p Sigma_t)^{1/2}) = ||X_p X_t^T||_* (nuclear norm of a ``[B, B]`` matrix), the sum of
    its singular values (``torch.linalg.svdvals``). The backward of a sum of singular values is
    U V^T: unlike eigenvector-based routes it has no 1/(s_i^2 - s_j^2) terms, and unlike
    sqrt(eigenvalues) no 1/sqrt(0), so it is finite when singular values repeat or vanish and no
    epsilon is needed. A zero singular value always occurs (centring gives 1^T X = 0, so the
    ones vector spans a null space of X_p X_t^T) but its U V^T part is (1/B) 1 1^T, which
    contributes 0 once multiplied back by the centred X. gradcheck passes at random points, at
    P == Q, with repeated singular values and with identical targets (tests/test_losses.py).

    This is a *batch-level* distance: the B rows are samples of two distributions over the D
    columns, so the value depends on B and on which queries share the batch; it is not a sum of
    per-query terms. It is invariant to permuting the queries (rows with their column groups).

    Reference implementation: ``WS2Loss`` (alias ``ws2``) in SyCL's training script, built on
    Trove (github.com/BatsResearch/sycl, github.com/BatsResearch/trove). Details matched here:
    the temperature divides the scores only, targets are ``softmax(labels)`` without T; labels are
    expanded with ``torch.block_diag`` so in-batch negatives get label 0 (so, like level-0
    passages, weight exp(0) in the target softmax); covariances use 1/(B-1); computation in
    float64. Differences: the reference takes sqrt(eigvals(M M^T) + 1e-15) where we take
    singular values (its epsilon lowers the value by at most 2 * B * sqrt(1e-15) = 6.3e-8 * B,
    checked numerically; otherwise equal, with stable gradients); it applies the softmax in the
    scores' own dtype (we upcast first); it silently uses factor 1 for B < 2 (we raise); it
    returns float64 (we cast back to ``scores.dtype``).

    Options (defaults = the paper):
        label_temperature (default 1.0): the target is ``Q = softmax(L / tau_L)``. With raw labels
            (tau_L = 1) and D = B*G columns, a row's target is nearly flat: query i's level-3
            passage gets weight e^3 ~= 20 against 1 for each of the ~D zeros (its own level-0
            passages and all (B-1)*G in-batch negatives), so at B = 43, G = 8 the whole own group
            holds only ~10% of the target mass and the best passage ~5%. Matching that target asks
            the model to score in-batch negatives almost like its own positives. A level-3 passage
            beats the mass of the zeros only when e^(3/tau_L) >> D, i.e. tau_L << 3 / ln(D)
            (0.51 at D = 344). tau_L -> 0 makes Q uniform over the row's top-labelled passages
            (InfoNCE-like); each level then weighs e^(1/tau_L) times the level below.
        in_batch_targets (default True): in-batch negatives are target columns with label 0, as in
            the paper. False gives them target mass 0 instead: row i of Q is
            ``softmax(labels_i / tau_L)`` on its own group's columns and 0 elsewhere (the prediction
            P still spans all D columns, so in-batch negatives are pushed towards probability 0).

    Requirements:
        1. At least 2 queries per batch (``min_queries = 2``): the distance compares the batch's
           rows as samples; the trainer skips smaller batches, the loss raises on B < 2.
        2. Graded labels (e.g. SyCL's 3/2/1/0) with at least two distinct levels in a list
           (``listwise = True``: the trainer drops a list whose passages share one label).
        3. Scores of every query against every passage of the batch, own group on the diagonal
           block (in-batch negatives are part of both the prediction and, by default, the target).

    Relations:
        - ``listnet`` fits the same kind of softmax target per query (KL, own group only); this
          loss instead matches the Gaussians of the whole batch, so it depends on which queries
          share the batch and also uses the in-batch negatives.
        - ``infonce`` is the binary baseline: labels >= ``positive_threshold`` are positives, all
          else (own lower levels and in-batch passages) negatives; ``label_temperature`` -> 0
          moves this loss's target towards InfoNCE's.

    References:
        - SyCL: "Synthetic Data for Contrastive Learning of Retrievers with Graded Relevance",
          arXiv:2503.23239 (the loss and its defaults).
        - Dowson & Landau 1982, "The Fréchet distance between multivariate normal distributions"
          (the closed form of W2 between Gaussians).

    Example:
        The loss on a tiny batch, and what a training run would call (``listrank train synth.jsonl
        --loss wasserstein`` wires it up from the command line)::

            >>> import torch
            >>> from listrank.losses import get
            >>> loss = get("wasserstein")
            >>> labels = torch.tensor([[3., 2., 1., 0.], [3., 2., 1., 0.]])  # B = 2 queries, G = 4
            >>> def scores(own):  # each query against all B*G = 8 passages; the other's score -1
            ...     s = torch.full((2, 8), -1.0)
            ...     s[0, :4], s[1, 4:] = own, own
            ...     return s.requires_grad_()
            >>> follows = scores(torch.tensor([3., 2., 1., 0.]))  # scored in the order of the levels
            >>> value = loss(follows, labels, temperature=0.5)
            >>> reverse = scores(torch.tensor([0., 1., 2., 3.]))  # the opposite order
            >>> round(value.item(), 2), bool(value < loss(reverse, labels, temperature=0.5))
            (0.16, True)
            >>> value.backward(); follows.grad.shape
            torch.Size([2, 8])
    """

    listwise = True
    min_queries = 2  # compares distributions across the queries of a batch

    def __init__(self, label_temperature: float = 1.0, in_batch_targets: bool = True):
        super().__init__()
        self.label_temperature = check_label_temperature(label_temperature)
        if not isinstance(in_batch_targets, bool):
            raise ListrankError(f"in_batch_targets must be true or false, got {in_batch_targets!r}")
        self.in_batch_targets = in_batch_targets

    def extra_repr(self) -> str:
        return f"label_temperature={self.label_temperature}, in_batch_targets={self.in_batch_targets}"

    def targets(self, labels: Tensor, b: int, g: int) -> Tensor:
        """The target rows Q ``[B, B*G]`` (float64) for ``labels`` ``[B, G]``, as in the docstring."""
        if self.in_batch_targets:
            return torch.softmax(block_label_matrix(labels.double(), b, g) / self.label_temperature, dim=1)
        own = torch.softmax(labels.double() / self.label_temperature, dim=1)
        return block_label_matrix(own, b, g)  # own-group softmax on the diagonal block, 0 elsewhere

    def forward(self, scores: Tensor, labels: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        labels, b, g = check_inputs(scores, labels, temperature)
        if b < 2:
            raise ValueError(
                f"the wasserstein loss compares distributions across the queries of a batch and "
                f"needs at least 2 queries, got B = {b}"
            )
        # float64: the covariances of softmax rows are tiny and the difference of traces cancels.
        pred = torch.softmax(scores.double() / temperature, dim=1)
        target = self.targets(labels, b, g)

        mu_p, mu_t = pred.mean(dim=0), target.mean(dim=0)
        scale = 1.0 / math.sqrt(b - 1)
        xp = (pred - mu_p) * scale
        xt = (target - mu_t) * scale

        mean_term = (mu_p - mu_t).square().sum()
        trace_term = xp.square().sum() + xt.square().sum()  # Tr(X^T X) = squared Frobenius norm
        cross_term = torch.linalg.svdvals(xp @ xt.T).sum()
        loss = mean_term + trace_term - 2.0 * cross_term
        return loss.to(scores.dtype)
