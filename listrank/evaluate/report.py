"""Evaluation output: the rich table, the JSON file (written and read back) and the per-query delta PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from listrank.atomic import atomic_write
from listrank.errors import ListrankError
from listrank.evaluate.metrics import EvalResult, parse_metric
from listrank.evaluate.significance import SIGNIFICANCE_MARK, Comparison, _common_queries
from listrank.formats import PathLike
from listrank.plots import new_figure, write_png

if TYPE_CHECKING:
    from rich.table import Table

# --- output ---------------------------------------------------------------------------------


def results_table(
    results: Sequence[EvalResult] | EvalResult,
    comparison: Comparison | None = None,
    *,
    digits: int = 4,
    title: str | None = None,
) -> "Table":
    """One row per run, one column per metric; with a comparison, deltas vs the baseline and marks."""
    from rich.table import Table

    results = [results] if isinstance(results, EvalResult) else list(results)
    metrics = results[0].metrics
    table = Table(title=title, caption=comparison.describe() if comparison else None)
    table.add_column("run", style="bold")
    for metric in metrics:
        table.add_column(metric, justify="right")
    table.add_column("queries", justify="right")
    for result in results:
        cells = [_cell(result, metric, comparison, digits) for metric in metrics]
        table.add_row(result.name, *cells, str(result.n_queries))
    return table


def _cell(result: EvalResult, metric: str, comparison: Comparison | None, digits: int) -> str:
    value = f"{result.aggregate[metric]:.{digits}f}" if metric in result.per_query else "-"
    row = comparison.row(result.name, metric) if comparison else None
    if row is None:
        return value
    mark = SIGNIFICANCE_MARK if row.significant else ""
    delta = f"({row.delta:+.{digits}f}{mark})"
    if row.significant:
        delta = f"[{'green' if row.delta > 0 else 'red'}]{delta}[/]"
    return f"{value} {delta}"


def results_json(results: Sequence[EvalResult] | EvalResult, comparison: Comparison | None = None) -> dict[str, Any]:
    """One result -> its object; several -> {"baseline", "runs": [...], "comparison"}."""
    if isinstance(results, EvalResult):
        results = [results]
    if len(results) == 1 and comparison is None:
        return results[0].to_json()
    return {
        "baseline": results[0].name,
        "runs": [r.to_json() for r in results],
        "comparison": comparison.to_json() if comparison else None,
    }


def write_results_json(
    path: PathLike, results: Sequence[EvalResult] | EvalResult, comparison: Comparison | None = None,
    options: dict[str, Any] | None = None,
) -> Path:
    """Write `results_json(...)` atomically (no NaN: every value is a finite number), with the
    command's `options` (`listrank eval`'s flags) under "options" when given."""
    path = Path(path)
    obj = results_json(results, comparison)
    if options is not None:
        obj = {**obj, "options": options}
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    return path


def read_results_json(path: PathLike) -> tuple[list[EvalResult], Comparison | None]:
    """Read back what `write_results_json` wrote."""
    with open(path, encoding="utf-8") as fh:
        obj = json.load(fh)
    if "runs" in obj:
        comparison = Comparison.from_json(obj["comparison"]) if obj.get("comparison") else None
        return [EvalResult.from_json(r) for r in obj["runs"]], comparison
    return [EvalResult.from_json(obj)], None


def plot_per_query_delta(
    baseline: EvalResult, other: EvalResult, metric: str, path: PathLike, *, title: str | None = None
) -> Path:
    """A PNG bar chart of per-query `metric` differences (other - baseline), sorted, written atomically."""
    name = parse_metric(metric).name
    for result in (baseline, other):
        if name not in result.per_query:
            raise ListrankError(f"run {result.name!r} was not evaluated on {name}")
    base_values, values = (
        m[:, 0] for m in _common_queries(_only(baseline, name), _only(other, name))
    )
    deltas = np.sort(values - base_values)[::-1]
    figure = new_figure((min(16.0, 4.0 + 0.06 * len(deltas)), 4.0))
    axes = figure.add_subplot()
    colors = np.where(deltas > 0, "tab:green", np.where(deltas < 0, "tab:red", "tab:gray"))
    axes.bar(np.arange(len(deltas)), deltas, width=1.0 if len(deltas) > 200 else 0.8, color=colors)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel(f"queries, sorted by difference (n = {len(deltas)})")
    axes.set_ylabel(f"Δ {name}")  # short: long run names would be clipped; they go in the title
    axes.set_xticks([])
    wins, losses = int((deltas > 0).sum()), int((deltas < 0).sum())
    axes.set_title(title or f"{name} per query, {other.name} − {baseline.name}: mean {deltas.mean():+.4f}, "
                            f"{wins} better, {losses} worse, {len(deltas) - wins - losses} tied")
    figure.tight_layout()
    return write_png(figure, path)


def _only(result: EvalResult, metric: str) -> EvalResult:
    """A view of `result` restricted to one metric (arrays shared, not copied)."""
    return EvalResult(result.name, result.qrels, [metric], result.query_ids, {metric: result.per_query[metric]})


