"""One look for every long loop: a rich progress bar with counts, rate and ETA, on stderr."""

from __future__ import annotations

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


def progress_bar(*extra_columns: ProgressColumn, enabled: bool = True, transient: bool = False) -> Progress:
    """A `Progress` with description, bar, done/total, any extra columns, elapsed and ETA."""
    return Progress(
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
