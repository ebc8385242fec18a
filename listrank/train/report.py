"""What a training run tells its user: data warnings, the summary table, the training curve PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from listrank.atomic import write_png
from listrank.train.data import TrainData

if TYPE_CHECKING:
    from listrank.train.trainer import TrainResult


def report_data(data: TrainData, loss: str, group_size: int, *, warn: Callable[[str], None],
                info: Callable[[str], None]) -> None:
    """Warn about what the data loader left out or changed (invalid lines, one-label and short lists)."""
    r = data.report
    for s in r.sources:
        if s.invalid_lines:
            warn(f"{s.name}: skipped {s.invalid_lines} invalid line(s), e.g. {s.invalid_examples[0]}")
        if s.missing_docs or s.missing_queries:
            warn(f"{s.name}: left out {s.missing_docs} judged document(s) missing from the corpus "
                 f"(e.g. a re-ranking pool) and {s.missing_queries} judged query(ies) missing from the queries")
    if r.skipped_one_label:
        warn(f"skipped {r.skipped_one_label} list(s) whose passages all share one label "
             f"(no signal for the list-wise {loss} loss), e.g. {', '.join(r.one_label_examples)}")
    if r.skipped_short:
        warn(f"skipped {r.skipped_short} list(s) shorter than the group size {group_size}")
    if r.padded:
        info(f"padded {r.padded} list(s) shorter than the group size {group_size} by repetition")


def plot_log(log: list[dict], path: Path, evals: list[dict] | None = None) -> Path | None:
    """Loss and learning rate against the step, as a PNG; with `evals`, the validation curve below."""
    if not log and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in log]
    if evals:
        fig, (ax1, ax3) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=100, sharex=True,
                                       gridspec_kw={"height_ratios": [3, 2]})
    else:
        fig, ax1 = plt.subplots(figsize=(7, 4), dpi=100)
    ax1.plot(steps, [float("nan") if r["loss"] is None else r["loss"] for r in log], color="tab:blue", label="loss")
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(steps, [r["lr"] for r in log], color="tab:orange", label="lr")
    ax2.set_ylabel("learning rate", color="tab:orange")
    ax1.set_title("listrank train")
    if evals:
        e_steps, scores = [r["step"] for r in evals], [r["score"] for r in evals]
        ax3.plot(e_steps, scores, marker="o", color="tab:green", label=f"validation {evals[0]['eval']}")
        ax3.axhline(scores[0], color="grey", linestyle="--", linewidth=1, label="start (step 0)")
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the earliest of equal scores
        ax3.plot([e_steps[best]], [scores[best]], marker="*", markersize=14, color="tab:red", linestyle="none",
                 label=f"best: step {e_steps[best]}")
        ax3.set_xlabel("optimizer step")
        ax3.set_ylabel(evals[0]["eval"])
        ax3.legend(loc="best", fontsize=8)
    fig.tight_layout()
    write_png(fig, path)
    plt.close(fig)
    return path


def summary_table(result: "TrainResult"):
    """The rich table `listrank train` prints at the end."""
    from rich.table import Table

    table = Table(title="listrank train", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    r = result.data
    rows = [
        ("data", f"{r.lists} lists, {r.used} used" + (f" ({r.padded} padded)" if r.padded else "")),
        ("skipped lists", f"{r.skipped_one_label} one-label, {r.skipped_short} short, {r.skipped_empty} empty"),
    ]
    for s in r.sources:
        extra = f", {s.mined} mined" if s.mined else ""
        rows.append((f"  {s.name}", f"{s.queries} queries, {s.passages} passages{extra}, labels {s.label_counts}"))
    rows += [
        ("steps", f"{result.steps}/{result.total_steps} ({result.epochs:.2f} epochs)"
                  + (f", resumed at {result.resumed_from}" if result.resumed_from is not None else "")),
        ("batch", f"{result.global_batch} queries ({result.global_batch // result.world_size} per rank "
                  f"x {result.world_size} rank(s))"),
        ("final loss", "-" if result.final_loss is None else f"{result.final_loss:.5f}"),
        *([("validation", f"{result.validation['metric']} {result.validation['best']['score']:.4f} at step "
                          f"{result.validation['best']['step']} (start {result.validation['baseline']['score']:.4f}); "
                          f"final model: {result.validation['final_model']}")] if result.validation else []),
        ("skipped steps", f"{result.skipped_steps}"),
        ("speed", f"{result.queries_per_second:.2f} queries/s"),
        ("wall time", f"{result.seconds:.1f} s"),
        ("model", str(result.output)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
