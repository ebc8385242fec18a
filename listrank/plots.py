"""The one way listrank makes a plot: a matplotlib `Figure` on the Agg canvas, written atomically.

`new_figure` never touches pyplot's global state (no backend switch, no figure registry), so
plotting is safe in library code, threads and tests; `write_png` renames the finished file into
place, so a reader never sees half a PNG.
"""

from __future__ import annotations

from listrank.atomic import write_png  # noqa: F401 (re-exported: the one PNG writer)


def new_figure(figsize: tuple[float, float], dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure
