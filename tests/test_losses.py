"""The loss registry and the three losses, checked against independent numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch
import torch.nn.functional as F

from listrank import losses
from listrank.errors import ListrankError

# The contract tests cover every loss listrank ships: the registry, not a hand-kept list (losses a
# test module registers for itself live outside the listrank package and are left out).
SHIPPED = [n for n in losses.available() if losses.loss_class(n).__module__.startswith("listrank.")]

# B=2 queries, G=2 passages each: scores [2, 4], labels [2, 2]
SCORES = np.array([[2.0, 0.5, -1.0, 0.3], [0.2, -0.4, 1.5, 0.1]])
LABELS = np.array([[3, 1], [0, 2]])


def _t(a, dtype=torch.float64):
    return torch.tensor(a, dtype=dtype)


def _label_matrix_np(labels: np.ndarray) -> np.ndarray:
    b, g = labels.shape
    out = np.zeros((b, b * g))
    for i in range(b):
        out[i, i * g : (i + 1) * g] = labels[i]
    return out


def _frechet_np(pred: np.ndarray, target: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows, the textbook way (scipy sqrtm)."""
    mu_p, mu_t = pred.mean(0), target.mean(0)
    cov_p, cov_t = np.cov(pred, rowvar=False), np.cov(target, rowvar=False)  # ddof=1
    cross = scipy.linalg.sqrtm(cov_p @ cov_t)
    return float(np.sum((mu_p - mu_t) ** 2) + np.trace(cov_p) + np.trace(cov_t) - 2 * np.trace(cross).real)


def _wasserstein_np(scores, labels, t=1.0) -> float:
    pred = scipy.special.softmax(np.asarray(scores) / t, axis=1)
    target = scipy.special.softmax(_label_matrix_np(np.asarray(labels)), axis=1)
    return _frechet_np(pred, target)


def _random_batch(b, g, seed=0, levels=4):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, b * g, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, levels, (b, g), generator=gen)
    return scores, labels


# ---------------------------------------------------------------- registry


def test_available_lists_the_builtin_losses():
    names = losses.available()
    assert {"wasserstein", "infonce", "listnet"} <= set(names)
    assert names == sorted(names)


def test_get_unknown_name_lists_known_names():
    with pytest.raises(ListrankError) as exc:
        losses.get("wasserstien")
    for name in ("wasserstein", "infonce", "listnet"):
        assert name in str(exc.value)


def test_get_passes_options_and_rejects_unknown_ones():
    loss = losses.get("infonce", positive_threshold=3)
    assert isinstance(loss, losses.InfoNCELoss) and loss.positive_threshold == 3
    assert losses.get("infonce").positive_threshold == 2
    scores, labels = _t(SCORES), torch.tensor(LABELS)
    # threshold 3 leaves query 1 (labels 0/2) without positives, so the value must change
    assert not torch.isclose(loss(scores, labels), losses.get("infonce")(scores, labels))
    with pytest.raises(ListrankError, match="positive_thresold"):
        losses.get("infonce", positive_thresold=3)
    with pytest.raises(ListrankError):
        losses.get("listnet", positive_threshold=3)


def test_register_adds_a_loss_and_refuses_a_taken_name():
    from listrank.losses import registry

    @losses.register("test-only-zero")
    class Zero:
        def __call__(self, scores, labels, temperature=1.0):
            return scores.sum() * 0

    try:
        assert "test-only-zero" in losses.available()
        assert isinstance(losses.get("test-only-zero"), Zero)
        with pytest.raises(ValueError, match="already registered"):
            losses.register("wasserstein")(Zero)
    finally:
        registry._LOSSES.pop("test-only-zero", None)
    assert "test-only-zero" not in losses.available()


# ---------------------------------------------------------------- docstrings


@pytest.mark.parametrize("name", SHIPPED)
def test_docstring_follows_the_template_and_its_example_runs(name):
    """Each loss documents what it is, its inputs, math, requirements, relations and a reference,
    and its example runs as written (a doctest), so it cannot rot."""
    import doctest

    cls = losses.loss_class(name)
    doc = cls.__doc__ or ""
    for section in ("Inputs:", "Math", "Requirements:", "Relations:", "References:", "Example:"):
        assert section in doc, f"{name}: no {section!r} section in {cls.__qualname__}'s docstring"
    tests = doctest.DocTestFinder(recurse=False).find(cls, cls.__qualname__, globs={})
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name}: the docstring has no >>> example"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} example lines failed"


# ---------------------------------------------------------------- shape checks


def test_shipped_losses_are_the_registered_ones():
    assert {"wasserstein", "infonce", "listnet"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize(
    "scores_shape, labels_shape, match",
    [
        ((8,), (2, 4), "2-D"),
        ((2, 4), (4,), "2-D"),
        ((2, 4), (3, 2), "rows"),
        ((2, 5), (2, 2), "multiple"),
        ((2, 4), (2, 3), "group size"),
    ],
)
def test_shape_errors(name, scores_shape, labels_shape, match):
    with pytest.raises(ValueError, match=match):
        losses.get(name)(torch.zeros(scores_shape), torch.zeros(labels_shape))


@pytest.mark.parametrize("name", SHIPPED)
def test_bad_temperature_and_integer_scores(name):
    with pytest.raises(ValueError, match="temperature"):
        losses.get(name)(_t(SCORES), torch.tensor(LABELS), temperature=0.0)
    with pytest.raises(ValueError, match="floating"):
        losses.get(name)(torch.zeros(2, 4, dtype=torch.long), torch.tensor(LABELS))


def test_wasserstein_needs_two_queries():
    with pytest.raises(ValueError, match="at least 2 queries"):
        losses.get("wasserstein")(torch.zeros(1, 3), torch.tensor([[3, 1, 0]]))


# ---------------------------------------------------------------- wasserstein


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_wasserstein_matches_scipy_sqrtm(t):
    got = losses.get("wasserstein")(_t(SCORES), torch.tensor(LABELS), temperature=t)
    assert got.item() == pytest.approx(_wasserstein_np(SCORES, LABELS, t), rel=1e-6, abs=1e-9)


def test_wasserstein_b2_closed_form():
    # For B = 2 the centred rows are ±d/2 (d = row0 - row1), so
    # W = |mu_p - mu_t|^2 + (|d_p|^2 + |d_t|^2) / 2 - |d_p . d_t|.
    pred = scipy.special.softmax(SCORES, axis=1)
    target = scipy.special.softmax(_label_matrix_np(LABELS), axis=1)
    dp, dt = pred[0] - pred[1], target[0] - target[1]
    mu = (pred.mean(0) - target.mean(0)) @ (pred.mean(0) - target.mean(0))
    expected = mu + (dp @ dp + dt @ dt) / 2 - abs(dp @ dt)
    got = losses.get("wasserstein")(_t(SCORES), torch.tensor(LABELS))
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_wasserstein_larger_batch_matches_scipy():
    scores, labels = _random_batch(4, 3, seed=1)
    got = losses.get("wasserstein")(scores, labels, temperature=0.7)
    assert got.item() == pytest.approx(_wasserstein_np(scores.numpy(), labels.numpy(), 0.7), rel=1e-6)


def test_wasserstein_zero_at_target_and_larger_when_reversed():
    labels = torch.tensor([[3, 2, 1, 0], [2, 3, 0, 1], [0, 1, 3, 2]])
    b, g = labels.shape
    loss = losses.get("wasserstein")
    perfect = torch.tensor(_label_matrix_np(labels.numpy()))
    reversed_ = torch.tensor(_label_matrix_np((3 - labels).numpy()))
    gen = torch.Generator().manual_seed(0)
    nearly = perfect + 0.3 * torch.randn(perfect.shape, generator=gen, dtype=torch.float64)

    at_target = loss(perfect, labels).item()
    assert abs(at_target) < 1e-12
    assert loss(nearly, labels).item() > 1e-6
    assert loss(reversed_, labels).item() > 10 * loss(nearly, labels).item()


def test_wasserstein_invariant_to_query_permutation():
    scores, labels = _random_batch(4, 3, seed=2)
    b, g = labels.shape
    perm = torch.tensor([2, 0, 3, 1])
    cols = (perm[:, None] * g + torch.arange(g)).reshape(-1)
    loss = losses.get("wasserstein")
    assert loss(scores[perm][:, cols], labels[perm]).item() == pytest.approx(loss(scores, labels).item(), rel=1e-10)
    # Permuting rows without their column groups is a different batch: the value must change.
    assert loss(scores[perm], labels[perm]).item() != pytest.approx(loss(scores, labels).item(), rel=1e-6)


def test_wasserstein_is_batch_level_not_per_query_mean():
    scores, labels = _random_batch(4, 2, seed=3)
    loss = losses.get("wasserstein")
    whole = loss(scores, labels).item()
    # The two halves as separate batches (their own columns only) do not add up to the whole.
    halves = [loss(scores[h][:, h.start * 2 : h.stop * 2], labels[h]).item() for h in (slice(0, 2), slice(2, 4))]
    assert whole != pytest.approx(sum(halves) / 2, rel=1e-3)


def test_wasserstein_returns_scores_dtype():
    out = losses.get("wasserstein")(_t(SCORES, torch.float32), torch.tensor(LABELS))
    assert out.dtype == torch.float32 and out.ndim == 0


def test_wasserstein_temperature_divides_scores_not_labels():
    # With scores = 2 * label matrix and T = 2, P == Q exactly: labels are not divided by T.
    labels = torch.tensor([[3, 0], [1, 2], [2, 2]])
    scores = 2 * torch.tensor(_label_matrix_np(labels.numpy()))
    assert abs(losses.get("wasserstein")(scores, labels, temperature=2.0).item()) < 1e-12
    assert losses.get("wasserstein")(scores, labels, temperature=1.0).item() > 1e-4


def test_wasserstein_gradcheck():
    scores, labels = _random_batch(3, 3, seed=4)
    loss = losses.get("wasserstein")
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, 0.5), (scores.requires_grad_(),))


@pytest.mark.parametrize(
    "case",
    ["identical_label_rows", "all_zero_labels", "at_target", "repeated_singular_values"],
)
def test_wasserstein_gradient_finite_in_degenerate_cases(case):
    loss = losses.get("wasserstein")
    if case == "identical_label_rows":
        labels = torch.tensor([[3, 2, 1]] * 3)
        scores, _ = _random_batch(3, 3, seed=5)
    elif case == "all_zero_labels":  # every target row is the same uniform distribution
        labels = torch.zeros(3, 3, dtype=torch.long)
        scores, _ = _random_batch(3, 3, seed=6)
    elif case == "at_target":  # P == Q, the minimum
        labels = torch.tensor([[3, 2, 1], [1, 3, 0], [0, 2, 3]])
        scores = torch.tensor(_label_matrix_np(labels.numpy()))
    else:  # symmetric batch: X_p X_t^T has a repeated non-zero singular value
        labels = torch.full((3, 1), 3)
        scores = 2.0 * torch.eye(3, dtype=torch.float64)
    scores = scores.clone().requires_grad_()
    loss(scores, labels).backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.autograd.gradcheck(lambda s: loss(s, labels), (scores.detach().clone().requires_grad_(),))


# ---------------------------------------------------------------- infonce


def test_infonce_hand_computed_multi_positive():
    # query 0: labels [3, 1] -> positive col 0; negatives cols 1, 2, 3
    # query 1: labels [0, 2] -> positive col 3; negatives cols 0, 1, 2
    # with threshold 1: query 0 has positives cols 0, 1 (each with negatives 2, 3);
    #                   query 1 positive col 3 (negatives 0, 1, 2)
    s = SCORES / 0.5

    def term(row, p, negs):
        return -s[row, p] + np.log(np.exp(s[row, p]) + np.exp(s[row, negs]).sum())

    expected_t2 = (term(0, 0, [1, 2, 3]) + term(1, 3, [0, 1, 2])) / 2
    expected_t1 = (term(0, 0, [2, 3]) + term(0, 1, [2, 3]) + term(1, 3, [0, 1, 2])) / 3
    scores, labels = _t(SCORES), torch.tensor(LABELS)
    assert losses.get("infonce")(scores, labels, 0.5).item() == pytest.approx(expected_t2, rel=1e-10)
    got_t1 = losses.get("infonce", positive_threshold=1)(scores, labels, 0.5).item()
    assert got_t1 == pytest.approx(expected_t1, rel=1e-10)


def test_infonce_single_positive_equals_cross_entropy():
    scores, _ = _random_batch(4, 3, seed=7)
    pos = torch.tensor([0, 2, 1, 0])
    labels = torch.zeros(4, 3, dtype=torch.long)
    labels[torch.arange(4), pos] = 3
    target = torch.arange(4) * 3 + pos
    expected = F.cross_entropy(scores / 0.1, target)
    assert losses.get("infonce")(scores, labels, 0.1).item() == pytest.approx(expected.item(), rel=1e-10)


def test_infonce_query_without_positive_adds_no_term_but_is_a_negative():
    scores, _ = _random_batch(2, 2, seed=8)
    labels = torch.tensor([[3, 0], [1, 0]])  # query 1 has no positive
    s = scores.numpy()
    expected = -s[0, 0] + scipy.special.logsumexp(s[0, [0, 1, 2, 3]])
    assert losses.get("infonce")(scores, labels).item() == pytest.approx(expected, rel=1e-10)


def test_infonce_no_positive_in_batch_is_an_error():
    with pytest.raises(ListrankError, match="no positive"):
        losses.get("infonce")(_t(SCORES), torch.tensor([[1, 0], [0, 1]]))


def test_infonce_single_query_all_positive_is_finite():
    scores = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = losses.get("infonce")(scores, torch.tensor([[3, 3]]))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(scores.grad).all()


def test_infonce_gradcheck():
    scores, labels = _random_batch(3, 3, seed=9)
    labels[0] = torch.tensor([3, 2, 0])  # at least one query with two positives
    loss = losses.get("infonce")
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, 0.5), (scores.requires_grad_(),))


# ---------------------------------------------------------------- listnet


def test_listnet_hand_computed():
    t = 0.5
    own = np.array([SCORES[0, 0:2], SCORES[1, 2:4]]) / t
    q = scipy.special.softmax(LABELS.astype(float), axis=1)
    p = scipy.special.softmax(own, axis=1)
    expected = np.mean(np.sum(q * (np.log(q) - np.log(p)), axis=1))
    got = losses.get("listnet")(_t(SCORES), torch.tensor(LABELS), temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_listnet_ignores_in_batch_negatives_and_is_zero_at_target():
    scores, labels = _random_batch(3, 2, seed=10)
    loss = losses.get("listnet")
    other = scores.clone()
    other[0, 2:] += 5.0  # query 0 against query 1's and 2's passages
    assert loss(other, labels).item() == pytest.approx(loss(scores, labels).item(), rel=1e-12)
    other[0, 0] += 5.0  # its own group does count
    assert loss(other, labels).item() != pytest.approx(loss(scores, labels).item(), rel=1e-6)
    perfect = torch.tensor(_label_matrix_np(labels.numpy()))
    assert abs(loss(perfect, labels).item()) < 1e-12


def test_listnet_gradcheck():
    scores, labels = _random_batch(3, 3, seed=11)
    loss = losses.get("listnet")
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, 0.5), (scores.requires_grad_(),))


@pytest.mark.parametrize("name", ["infonce", "listnet"])
def test_half_precision_scores_give_same_dtype_and_close_value(name):
    scores, labels = _random_batch(3, 2, seed=12)
    labels[:, 0] = 3
    loss = losses.get(name)
    out = loss(scores.to(torch.bfloat16), labels)
    assert out.dtype == torch.bfloat16
    assert out.float().item() == pytest.approx(loss(scores.to(torch.bfloat16).double(), labels).item(), rel=1e-2)


# ---------------------------------------------------------------- label temperature, in-batch targets


def test_label_temperature_default_is_the_paper_and_bad_values_are_refused():
    scores, labels = _random_batch(3, 3, seed=20)
    for name in ("wasserstein", "listnet"):
        assert losses.get(name).label_temperature == 1.0
        default = losses.get(name)(scores, labels).item()
        assert losses.get(name, label_temperature=1.0)(scores, labels).item() == default
        for bad in (0, -0.5, float("inf"), float("nan"), "0.1", True):
            with pytest.raises(ListrankError, match="label_temperature"):
                losses.get(name, label_temperature=bad)
    with pytest.raises(ListrankError, match="in_batch_targets"):
        losses.get("wasserstein", in_batch_targets="no")
    with pytest.raises(ListrankError, match="does not accept"):
        losses.get("infonce", label_temperature=0.5)  # InfoNCE has no label target


@pytest.mark.parametrize("tl", [0.25, 2.0])
def test_wasserstein_label_temperature_divides_labels_matches_scipy(tl):
    scores, labels = _random_batch(4, 3, seed=21)
    got = losses.get("wasserstein", label_temperature=tl)(scores, labels, temperature=0.7)
    pred = scipy.special.softmax(scores.numpy() / 0.7, axis=1)
    target = scipy.special.softmax(_label_matrix_np(labels.numpy()) / tl, axis=1)
    assert got.item() == pytest.approx(_frechet_np(pred, target), rel=1e-6)
    # Same as the paper's loss on labels divided by tau_L.
    paper = losses.get("wasserstein")(scores, labels.double() / tl, temperature=0.7)
    assert got.item() == pytest.approx(paper.item(), rel=1e-12)


def test_wasserstein_label_temperature_zero_at_its_target():
    labels = torch.tensor([[3, 2, 1, 0], [2, 3, 0, 1], [0, 1, 3, 2]])
    perfect = torch.tensor(_label_matrix_np(labels.numpy()))
    loss = losses.get("wasserstein", label_temperature=0.25)
    assert abs(loss(perfect, labels, temperature=0.25).item()) < 1e-12
    assert loss(perfect, labels, temperature=1.0).item() > 1e-4


def test_wasserstein_raw_labels_target_is_nearly_flat_and_label_temperature_sharpens_it():
    # The arithmetic, at B = 43, G = 8 (344 columns): one passage at each of 3/2/2/1 and four 0s.
    b, g = 43, 8
    labels = torch.tensor([[3, 2, 2, 1, 0, 0, 0, 0]] * b)
    for tl, lo, hi in [(1.0, 0.04, 0.07), (0.25, 0.9, 1.0)]:
        q = losses.get("wasserstein", label_temperature=tl).targets(labels, b, g)
        top = q[0, 0].item()  # query 0's level-3 passage
        assert lo < top < hi, (tl, top)
    own_mass = losses.get("wasserstein").targets(labels, b, g)[0, :g].sum().item()
    assert own_mass == pytest.approx((np.e**3 + 2 * np.e**2 + np.e + 4) / (np.e**3 + 2 * np.e**2 + np.e + 4 + (b - 1) * g))


def test_wasserstein_without_in_batch_targets():
    scores, labels = _random_batch(4, 3, seed=22)
    b, g = labels.shape
    loss = losses.get("wasserstein", in_batch_targets=False, label_temperature=0.5)
    q = loss.targets(labels, b, g)
    own = scipy.special.softmax(labels.numpy() / 0.5, axis=1)
    expected = np.zeros((b, b * g))
    for i in range(b):
        expected[i, i * g : (i + 1) * g] = own[i]
    np.testing.assert_allclose(q.numpy(), expected, rtol=1e-12, atol=0)
    pred = scipy.special.softmax(scores.numpy(), axis=1)
    assert loss(scores, labels).item() == pytest.approx(_frechet_np(pred, expected), rel=1e-6)
    # Still a batch-level distance over all columns: in-batch scores change the value.
    other = scores.clone()
    other[0, g:] += 3.0
    assert loss(other, labels).item() != pytest.approx(loss(scores, labels).item(), rel=1e-6)


@pytest.mark.parametrize("options", [{"label_temperature": 0.3}, {"in_batch_targets": False}])
def test_wasserstein_options_gradcheck(options):
    scores, labels = _random_batch(3, 3, seed=23)
    loss = losses.get("wasserstein", **options)
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, 0.5), (scores.requires_grad_(),))


def test_wasserstein_gradient_finite_at_sharp_label_target():
    # tau_L small: Q is (numerically) one-hot per row; identical rows and P == Q still give finite gradients.
    labels = torch.tensor([[3, 0, 0], [3, 0, 0], [0, 3, 0]])
    loss = losses.get("wasserstein", label_temperature=0.01)
    for scores in (torch.tensor(_label_matrix_np(labels.numpy())) / 0.01, _random_batch(3, 3, seed=24)[0]):
        s = scores.clone().requires_grad_()
        loss(s, labels).backward()
        assert torch.isfinite(s.grad).all()


def test_listnet_label_temperature_hand_computed_and_gradcheck():
    t, tl = 0.5, 0.3
    own = np.array([SCORES[0, 0:2], SCORES[1, 2:4]]) / t
    q = scipy.special.softmax(LABELS.astype(float) / tl, axis=1)
    p = scipy.special.softmax(own, axis=1)
    expected = np.mean(np.sum(q * (np.log(q) - np.log(p)), axis=1))
    loss = losses.get("listnet", label_temperature=tl)
    assert loss(_t(SCORES), torch.tensor(LABELS), temperature=t).item() == pytest.approx(expected, rel=1e-10)
    scores, labels = _random_batch(3, 3, seed=25)
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, 0.5), (scores.requires_grad_(),))
