"""Output of the level audit: the terminal tables, the JSON file and the per-level PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from listrank.atomic import atomic_write
from listrank.formats import (
    PathLike,
)
from listrank.plots import new_figure, write_png

if TYPE_CHECKING:
    from rich.console import Group


from listrank.audit.stats import AuditResult


# --- output ---------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{x:.1%}"


def audit_tables(result: AuditResult) -> "Group":
    """Summary, per-pair and per-level tables for the terminal."""
    from rich.console import Group
    from rich.table import Table

    model = result.encoder["name"]
    summary = Table(title=f"level audit: {result.name} ({result.n_queries} queries, encoder {model})")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_column("queries", justify="right")
    summary.add_row("nDCG@10 of the lists", f"{result.ndcg10:.4f}", str(result.n_ranked))
    tb = result.top_bottom
    if tb:
        summary.add_row(f"level {tb.high} > level {tb.low} (mean scores)", _pct(tb.query_share), str(tb.queries))
    summary.add_row("concordance (pairs of different levels)", f"{result.concordance:.4f} (τ {result.kendall_tau:+.3f})",
                    str(result.n_ranked))
    summary.add_row("queries missing a level", str(result.queries_missing_a_level), str(result.n_queries))

    pairs = Table(title="level pairs")
    for col in ("pair", "queries", "share of queries (mean > mean)", "passage pairs", "pair accuracy"):
        pairs.add_column(col, justify="left" if col == "pair" else "right")
    for p in result.pairs:
        pairs.add_row(p.label, str(p.queries), _pct(p.query_share), f"{p.pairs:,}", _pct(p.pair_accuracy))

    levels = Table(title="score by level")
    for col in ("level", "passages", "queries", "mean", "std", "mean - query mean"):
        levels.add_column(col, justify="right")
    for s in result.level_stats:
        levels.add_row(str(s.level), f"{s.passages:,}", str(s.queries), f"{s.mean:.4f}", f"{s.std:.4f}",
                       f"{s.mean_centered:+.4f}")
    return Group(summary, pairs, levels)


def write_audit_json(path: PathLike, result: AuditResult, options: dict[str, Any] | None = None) -> Path:
    """The audit as JSON, with the command's `options` (`listrank eval --level-audit`'s flags) when given."""
    path = Path(path)
    obj = result.to_json() if options is None else {**result.to_json(), "options": options}
    with atomic_write(path) as fh:
        json.dump(_plain(obj), fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")
    return path


def _plain(obj: Any) -> Any:
    """JSON-safe: NaN (a pair no query has) -> null, numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def plot_levels(result: AuditResult, path: PathLike) -> Path:
    """A PNG (written atomically): box plots of score per level, raw and minus the query's mean; means marked."""
    levels = sorted(result.levels)  # worst first: a rising staircase is what a good encoder shows
    figure = new_figure((11.0, 4.8))
    panels = [(result.scores, "score (query · passage)"), (result.centered, "score - query's mean score")]
    for i, (data, ylabel) in enumerate(panels):
        axes = figure.add_subplot(1, 2, i + 1)
        values = [data[lv] for lv in levels]
        axes.boxplot(values, showmeans=True, widths=0.6,
                     meanprops={"marker": "D", "markerfacecolor": "tab:red", "markeredgecolor": "tab:red"})
        axes.set_xticks(range(1, len(levels) + 1), [f"{lv}\n(n={data[lv].size})" for lv in levels])
        means = [float(v.mean()) for v in values]
        axes.plot(range(1, len(levels) + 1), means, color="tab:red", linewidth=1, alpha=0.7, label="mean (◆)")
        axes.set_xlabel("level (3 perfectly relevant ... 0 irrelevant)")
        axes.set_ylabel(ylabel)
        axes.grid(axis="y", alpha=0.3)
        if i == 0:
            axes.legend(loc="best")
    tb = result.top_bottom
    share = f"{tb.high}>{tb.low} in {_pct(tb.query_share)} of queries" if tb else ""
    figure.suptitle(
        f"{result.name} · {result.encoder['name']}\n"
        f"nDCG@10 {result.ndcg10:.3f} · {share} · concordance {result.concordance:.3f} "
        f"({result.n_queries} queries)",
        fontsize=11,
    )
    figure.tight_layout()
    return write_png(figure, path)


