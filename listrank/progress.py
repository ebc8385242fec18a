"""One look for every long loop: a rich progress bar with counts, rate and ETA, on stderr.

Off a terminal (a log file, CI, `nohup`) rich draws nothing until the loop ends, so there a plain
line per task is printed every `$LISTRANK_PROGRESS_INTERVAL` seconds (default 30; 0 = never):
`gen: 120/500 (24%), 62 s elapsed, ETA 196 s, rejected=3`.
"""

from __future__ import annotations

import os
import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)

DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("LISTRANK_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _seconds(value) -> str:
    return "?" if value is None else f"{value:.0f} s"


class LineProgress(Progress):
    """A rich `Progress` that, when its console is not a terminal, also prints a status line per
    task every `interval` seconds from a background thread (so a stalled batch still reports)."""

    def __init__(self, *columns, interval: float | None = None, **kwargs):
        super().__init__(*columns, **kwargs)
        self.interval = _interval() if interval is None else interval
        self._stop_lines = threading.Event()
        self._line_thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        if not self.disable and not self.console.is_terminal and self.interval > 0 and self._line_thread is None:
            self._stop_lines.clear()
            self._line_thread = threading.Thread(target=self._lines, name="progress-lines", daemon=True)
            self._line_thread.start()

    def stop(self) -> None:
        if self._line_thread is not None:
            self._stop_lines.set()
            self._line_thread.join()
            self._line_thread = None
        super().stop()

    def _lines(self) -> None:
        while not self._stop_lines.wait(self.interval):
            for line in self.status_lines():
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def status_lines(self) -> list[str]:
        lines = []
        with self._lock:
            tasks = [t for t in self.tasks if t.visible and not t.finished]
        for t in tasks:
            done = f"{t.completed:,.0f}" + (f"/{t.total:,.0f} ({100 * t.completed / t.total:.0f}%)" if t.total else "")
            extra = "".join(f", {k}={v:.1f}" if isinstance(v, float) else f", {k}={v}"
                            for k, v in t.fields.items() if isinstance(v, (int, float, str)))
            lines.append(f"{t.description}: {done}, {_seconds(t.elapsed)} elapsed, "
                         f"ETA {_seconds(t.time_remaining)}{extra}")
        return lines


def progress_bar(*extra_columns: ProgressColumn, enabled: bool = True, transient: bool = False) -> Progress:
    """A `Progress` with description, bar, done/total, any extra columns, elapsed and ETA."""
    return LineProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr_console,
        disable=not enabled,
        transient=transient,
    )
