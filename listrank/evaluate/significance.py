"""Comparing runs: paired t-test and paired randomization (sign-flip) test per metric, Holm-corrected.

`compare(results)` -> `Comparison`: every run against the first (the baseline), on the queries
both evaluated. The Holm-Bonferroni family is every (non-baseline run x metric) comparison of one
`compare` call, corrected separately for each test.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

from listrank.errors import ListrankError
from listrank.evaluate.metrics import EvalResult

DEFAULT_PERMUTATIONS = 10_000
SIGNIFICANCE_MARK = "†"

# --- significance tests ---------------------------------------------------------------------


# Per-query differences this small relative to the values are float rounding, not a difference:
# e.g. a seed average (a + a + a) / 3 against a, which can be off by an ulp in every query, in the
# same direction, and would otherwise read as a "significant" constant difference.
ROUNDING_RTOL = 1e-12


def paired_differences(baseline: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`other - baseline`, with differences at float-rounding level (relative to the values) set to 0."""
    baseline, other = np.asarray(baseline, dtype=float), np.asarray(other, dtype=float)
    diffs = other - baseline
    rounding = np.abs(diffs) <= ROUNDING_RTOL * np.maximum(np.abs(baseline), np.abs(other))
    return np.where(rounding, 0.0, diffs)


def paired_ttest(baseline: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Two-sided paired t-test p-values, one per column (1-D input -> a 0-d array).

    No difference at all, or fewer than 2 queries -> p = 1; a constant non-zero difference -> p = 0
    (an infinite t).
    """
    from scipy import stats  # slow to import; only comparisons need it

    diffs = paired_differences(baseline, other)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        # ttest_rel(other, baseline) is the one-sample t-test of the differences against 0
        pvalues = np.asarray(stats.ttest_1samp(diffs, 0.0, axis=0).pvalue, dtype=float)
    if len(diffs) < 2:
        return np.ones_like(pvalues)  # one pair carries no evidence of a difference
    constant = np.ptp(diffs, axis=0) == 0
    pvalues = np.where(constant, np.where(np.all(diffs == 0, axis=0), 1.0, 0.0), pvalues)
    return np.where(np.isnan(pvalues), 1.0, pvalues)


def paired_randomization_test(
    baseline: np.ndarray, other: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> np.ndarray:
    """Two-sided paired randomization test (random sign flips of the per-query differences).

    p = (1 + #{flips with |mean| >= observed |mean|}) / (1 + permutations), so p > 0 always and
    identical inputs give p = 1. Columns of 2-D inputs are tested with the same flips.
    """
    if permutations < 1:
        raise ListrankError("the randomization test needs at least 1 permutation")
    diffs = paired_differences(baseline, other)
    one_column = diffs.ndim == 1
    diffs = diffs.reshape(len(diffs), -1)
    observed = np.abs(diffs.sum(axis=0))
    tolerance = 1e-9 * np.abs(diffs).sum(axis=0)  # sums of the same terms in another order
    rng = np.random.default_rng(seed)
    at_least_as_extreme = np.zeros(diffs.shape[1], dtype=np.int64)
    chunk = max(1, min(permutations, 2_000_000 // max(1, len(diffs))))  # bounds memory
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = _random_signs(rng, size, len(diffs))
        flipped = np.abs(signs @ diffs)
        at_least_as_extreme += (flipped >= observed - tolerance).sum(axis=0)
    pvalues = (at_least_as_extreme + 1) / (permutations + 1)
    return pvalues[0] if one_column else pvalues


def _random_signs(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """A (rows, columns) matrix of +-1.0; drawn as random bytes, 8 signs each, for speed."""
    random_bytes = rng.integers(0, 256, size=(rows, (columns + 7) // 8), dtype=np.uint8)
    bits = np.unpackbits(random_bytes, axis=1, count=columns)
    return bits.astype(float) * 2.0 - 1.0


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (same order as given): max over j <= i of min(1, (m - j + 1) p_(j))."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


# --- comparing runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One run against the baseline on one metric, over the queries both evaluated."""

    run: str
    metric: str
    n_queries: int
    baseline_mean: float
    mean: float
    delta: float
    p_ttest: float
    p_randomization: float
    p_ttest_holm: float
    p_randomization_holm: float
    significant: bool


@dataclass
class Comparison:
    baseline: str
    rows: list[MetricComparison]
    permutations: int
    seed: int
    alpha: float
    mark_by: str

    @property
    def family_size(self) -> int:
        return len(self.rows)

    def row(self, run: str, metric: str) -> MetricComparison | None:
        return next((r for r in self.rows if r.run == run and r.metric == metric), None)

    def describe(self) -> str:
        test = (
            f"paired randomization test ({self.permutations:,} sign flips, seed {self.seed})"
            if self.mark_by == "randomization"
            else "paired t-test"
        )
        return (
            f"{SIGNIFICANCE_MARK} p < {self.alpha} vs {self.baseline}, {test}, Holm-corrected over "
            f"{self.family_size} comparisons (runs x metrics)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "tests": ["paired t-test", "paired randomization (sign flip), two-sided"],
            "correction": "holm-bonferroni over all (run x metric) comparisons, per test",
            "family_size": self.family_size,
            "permutations": self.permutations,
            "seed": self.seed,
            "alpha": self.alpha,
            "mark_by": self.mark_by,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Comparison":
        return cls(
            baseline=obj["baseline"],
            rows=[MetricComparison(**r) for r in obj["rows"]],
            permutations=int(obj["permutations"]),
            seed=int(obj["seed"]),
            alpha=float(obj["alpha"]),
            mark_by=obj["mark_by"],
        )


def compare(
    results: Sequence[EvalResult],
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
    mark_by: Literal["randomization", "ttest"] = "randomization",
) -> Comparison:
    """Compare every run with the first (the baseline) on each of the baseline's metrics.

    Each pair is tested on the queries both runs evaluated. p-values are Holm-corrected over the
    family of all (run x metric) comparisons, separately for the t-test and the randomization test.
    """
    if len(results) < 2:
        raise ListrankError("comparing runs needs at least two results")
    if mark_by not in ("randomization", "ttest"):
        raise ListrankError(f"mark_by must be 'randomization' or 'ttest', not {mark_by!r}")
    _check_comparable(results)
    baseline = results[0]
    raw = []  # (run, metric, n, baseline mean, mean, p_ttest, p_randomization)
    for result in results[1:]:
        base_values, values = _common_queries(baseline, result)
        p_t = np.atleast_1d(paired_ttest(base_values, values))
        p_r = np.atleast_1d(paired_randomization_test(base_values, values, permutations=permutations, seed=seed))
        for j, metric in enumerate(baseline.metrics):
            b_mean, mean = float(base_values[:, j].mean()), float(values[:, j].mean())
            raw.append((result.name, metric, len(values), b_mean, mean, float(p_t[j]), float(p_r[j])))
    p_t_holm = holm_bonferroni([r[5] for r in raw])
    p_r_holm = holm_bonferroni([r[6] for r in raw])
    marked = p_r_holm if mark_by == "randomization" else p_t_holm
    rows = [
        MetricComparison(run, metric, n, b, m, m - b, pt, pr, float(p_t_holm[i]), float(p_r_holm[i]), bool(marked[i] < alpha))
        for i, (run, metric, n, b, m, pt, pr) in enumerate(raw)
    ]
    return Comparison(baseline.name, rows, permutations, seed, alpha, mark_by)


_COMPARED_SETTINGS = ("relevance_level", "ignore_identical_ids", "complete")


def _check_comparable(results: Sequence[EvalResult]) -> None:
    names = [r.name for r in results]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ListrankError(f"runs to compare need distinct names; repeated: {', '.join(duplicates)}")
    baseline = results[0]
    for result in results[1:]:
        lacking = [m for m in baseline.metrics if m not in result.per_query]
        if lacking:
            raise ListrankError(f"run {result.name!r} was not evaluated on {', '.join(lacking)}")
        for key in _COMPARED_SETTINGS:
            if result.settings.get(key) != baseline.settings.get(key):
                raise ListrankError(
                    f"runs {baseline.name!r} and {result.name!r} were evaluated with different {key} "
                    f"({baseline.settings.get(key)!r} vs {result.settings.get(key)!r})"
                )
        if result.qrels != baseline.qrels:
            raise ListrankError(
                f"runs {baseline.name!r} and {result.name!r} were evaluated on different qrels "
                f"({baseline.qrels!r} vs {result.qrels!r})"
            )


def _common_queries(baseline: EvalResult, other: EvalResult) -> tuple[np.ndarray, np.ndarray]:
    """(n_common, n_metrics) value matrices of both runs, rows in the baseline's query order."""
    metrics = baseline.metrics
    if baseline.query_ids == other.query_ids:
        rows_b = rows_o = slice(None)
    else:
        position = {qid: i for i, qid in enumerate(other.query_ids)}
        pairs = [(i, position[q]) for i, q in enumerate(baseline.query_ids) if q in position]
        if not pairs:
            raise ListrankError(f"runs {baseline.name!r} and {other.name!r} have no evaluated query in common")
        rows_b, rows_o = (list(ix) for ix in zip(*pairs))
    base = np.column_stack([baseline.per_query[m][rows_b] for m in metrics])
    values = np.column_stack([other.per_query[m][rows_o] for m in metrics])
    return base, values


