"""Headless matplotlib figures: made on the Agg canvas directly (pyplot's global state is never touched)."""
import io
import os
from typing import List, Tuple

from iopath.common.file_io import g_pathmgr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure"]


def new_figure(rows: int, cols: int, size: Tuple[float, float], **adjust) -> Tuple[Figure, List]:
    """A figure with a ``rows`` x ``cols`` grid of axes on an Agg canvas; the axes as a flat list.

    Margins are fixed (``adjust`` goes to ``subplots_adjust``) rather than computed by a layout
    engine, which would take most of the drawing time.
    """
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**{"left": 0.08, "right": 0.97, "bottom": 0.14, "top": 0.9, "wspace": 0.3, "hspace": 0.45,
                           **adjust})
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, path: str, dpi: int = 80, compress_level: int = 1) -> None:
    """Write ``fig`` as a PNG to ``path`` (iopath), all at once, so a reader never sees half a file.

    zlib level 1: the files are a little larger, and encoding, a large part of the plots' time, is faster."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": compress_level})
    folder = os.path.dirname(path)
    if folder:
        g_pathmgr.mkdirs(folder)
    with g_pathmgr.open(path, "wb") as f:
        f.write(buf.getvalue())
