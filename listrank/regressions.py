"""Re-measure published scores from a YAML of expectations and say OK or FAIL for each row.

The model is pyserini's two-click reproductions: the expected numbers live in data
(`listrank/resources/regressions.yaml`), not in code, and one command checks them all.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from listrank.datasets import resolve
from listrank.errors import ListrankError
from listrank.evaluate import evaluate
from listrank.formats import read_run
from listrank.pipeline import DenseSettings, retrieve
from listrank.retrieval import index_class

DEFAULT_FILE = "regressions.yaml"


@dataclass
class Regression:
    name: str
    dataset: str
    split: str
    retriever: dict[str, Any]
    metric: str
    expected: float
    tolerance: float
    source: str = ""
    relevance_level: int = 1


@dataclass
class Outcome:
    regression: Regression
    measured: float | None = None
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.measured is not None and \
            abs(self.measured - self.regression.expected) <= self.regression.tolerance


def load(path: str | os.PathLike | None = None) -> list[Regression]:
    if path is None:
        text = resources.files("listrank.resources").joinpath(DEFAULT_FILE).read_text()
        where = DEFAULT_FILE
    else:
        text, where = Path(path).read_text(), str(path)
    try:
        rows = yaml.safe_load(text)
        return [Regression(**row) for row in rows]
    except (yaml.YAMLError, TypeError) as e:
        raise ListrankError(f"{where}: not a list of regressions ({str(e).splitlines()[0]})") from None


def select(regressions: list[Regression], patterns: list[str] | None) -> list[Regression]:
    """Rows whose name contains any of `patterns` (all rows when none are given)."""
    if not patterns:
        return regressions
    chosen = [r for r in regressions if any(p in r.name for p in patterns)]
    if not chosen:
        names = ", ".join(r.name for r in regressions)
        raise ListrankError(f"no regression matches {', '.join(patterns)}; known: {names}")
    return chosen


def run_one(reg: Regression, data_dir: str | os.PathLike | None = None, show_progress: bool = True) -> Outcome:
    start = time.perf_counter()
    try:
        dataset = resolve(reg.dataset, data_dir)
        qrels = dataset.qrels(reg.split)
        kind = reg.retriever.get("kind")
        if kind == "run":
            data_root = data_dir or os.environ.get("LISTRANK_DATA", "")
            run = read_run(reg.retriever["path"].format(data=data_root))
        else:
            # Any index kind (listrank.retrieval; "dense" is flat): `params` its build parameters,
            # `search_params` its search ones.
            try:
                index_class(kind)
            except ListrankError:
                raise ListrankError(f"regression {reg.name}: unknown retriever kind {kind!r}") from None
            model = reg.retriever.get("model")
            dense = DenseSettings(model=None if model in (None, "default") else model,
                                  max_length=int(reg.retriever.get("max_length", 256)),
                                  kind=kind if kind != "bm25" else "flat", params=reg.retriever.get("params"))
            run = retrieve(dataset, reg.split, kind=kind, dense=dense, k=1000, show_progress=show_progress,
                           search_params=reg.retriever.get("search_params"))
        result = evaluate(run, qrels, [reg.metric], relevance_level=reg.relevance_level, name=reg.name)
        return Outcome(reg, measured=result.aggregate[result.metrics[0]], seconds=time.perf_counter() - start,
                       notes=result.warnings)
    except ListrankError as e:
        return Outcome(reg, error=str(e), seconds=time.perf_counter() - start)


TABLE_COLUMNS = ("name", "dataset", "metric", "expected", "measured", "delta", "tolerance", "time", "status")


def results_table(rows: list[Regression], data_dir: str | os.PathLike | None = None, list_only: bool = False):
    """Run each row (unless `list_only`) and return the rich table of expected vs measured
    scores and the number of rows that failed."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="listrank regressions")
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="right" if col in ("expected", "measured", "delta", "tolerance", "time") else "left")
    failed = 0
    for row in rows:
        if list_only:
            table.add_row(row.name, f"{row.dataset}/{row.split}", row.metric, f"{row.expected:.4f}", "", "",
                          f"±{row.tolerance}", "", row.source)
            continue
        out = run_one(row, data_dir)
        failed += not out.ok
        measured = "" if out.measured is None else f"{out.measured:.4f}"
        delta = "" if out.measured is None else f"{out.measured - row.expected:+.4f}"
        status = "[green]OK[/]" if out.ok else f"[red]FAIL[/] {escape(out.error or '')}"
        table.add_row(row.name, f"{row.dataset}/{row.split}", row.metric, f"{row.expected:.4f}", measured, delta,
                      f"±{row.tolerance}", f"{out.seconds:.0f}s", status)
    return table, failed
