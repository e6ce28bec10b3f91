"""What every figure shares: the resolution, the mask colours and overlays, grid layout, and :func:`save_figure`
(a PNG written atomically, with the data it came from in a text chunk)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from mslesion.fileio import atomic_path, jsonable

__all__ = ["OVERLAY_COLOURS", "SOURCES_KEY", "overlay_rgb", "save_figure", "MASK_CMAP", "TITLE_CHARS",
           "ROW_LABEL_CHARS", "wrap_text", "window_intensity", "show_mask", "panel_grid", "show_outline", "DPI"]  # fmt: skip


DPI = 100


SOURCES_KEY = "Source"  # PNG text chunk that holds the JSON ``sources`` of save_figure


OVERLAY_COLOURS = {  # RGB in [0, 1]
    "true positive": (0.0, 1.0, 0.0),
    "false positive": (1.0, 0.0, 0.0),
    "false negative": (0.0, 0.0, 1.0),
}


MASK_CMAP = ListedColormap(["red"])


# Characters per line of a panel title ("large", 12 pt) on a 4.5-inch panel: report model names run
# to ~55 characters, which overflowed into the neighbouring panel's title unwrapped.
TITLE_CHARS = 34


ROW_LABEL_CHARS = 24  # a rotated row label on a ~3-inch row: longer ones spilled into the next row


def wrap_text(text: str, width: int) -> str:
    """``text`` with each of its lines wrapped at ``width`` characters (at spaces where possible)."""
    return "\n".join(textwrap.fill(line, width) for line in str(text).split("\n"))


def window_intensity(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map intensities to [0, 1] between the ``low`` and ``high`` percentiles (robust to outliers)."""
    image = np.asarray(image, dtype=np.float64)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:  # flat image (or nearly): fall back to the full range
        lo, hi = finite.min(), finite.max()
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip(np.nan_to_num((image - lo) / (hi - lo)), 0.0, 1.0)


def overlay_rgb(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Colour a grey slice by agreement of two masks (Rondinella et al.'s (2023) figure 6).

    Args:
        image: (H, W) float slice, any range (windowed at its 1st-99th percentiles).
        truth: (H, W) bool reference mask; pred: (H, W) bool predicted mask.

    Returns:
        (H, W, 3) float RGB in [0, 1]: grey image where both masks are empty, and
        the pure :data:`OVERLAY_COLOURS` on true positives (green), false positives
        (red) and false negatives (blue).
    """
    image, truth, pred = np.asarray(image), np.asarray(truth, bool), np.asarray(pred, bool)
    if image.ndim != 2 or truth.shape != image.shape or pred.shape != image.shape:
        raise ValueError(f"need matching 2D arrays, got {image.shape}, {truth.shape}, {pred.shape}")
    rgb = np.repeat(window_intensity(image)[..., None], 3, axis=-1)
    for name, where in (
        ("true positive", truth & pred),
        ("false positive", ~truth & pred),
        ("false negative", truth & ~pred),
    ):
        rgb[where] = OVERLAY_COLOURS[name]
    return rgb


def show_mask(ax, mask: np.ndarray | None, **imshow_kwargs) -> None:
    """Draw ``mask`` as a translucent red fill with an opaque red outline (2D, bool).

    The outline is the mask's edge pixels, not ``ax.contour``: contour lines
    rendered differently on the first draw of a process, breaking byte-identical PNGs.
    """
    if mask is None or not np.any(mask):
        return
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    edge = mask & ~ndimage.binary_erosion(mask)
    ax.imshow(np.ma.masked_where(~mask, mask), cmap=MASK_CMAP, alpha=0.35, interpolation="nearest", **imshow_kwargs)
    ax.imshow(np.ma.masked_where(~edge, edge), cmap=MASK_CMAP, alpha=1.0, interpolation="nearest", **imshow_kwargs)


def panel_grid(n: int, ncols: int, panel_in: tuple[float, float]) -> tuple[Figure, list]:
    """A figure with ``n`` panels on a grid of at most ``ncols`` columns (unused cells removed)."""
    if n == 0:
        raise ValueError("nothing to plot")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_in[0] * ncols, panel_in[1] * nrows), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def save_figure(fig: Figure, path: str | Path, sources: dict | None = None) -> Path:
    """Write ``fig`` as a deterministic PNG, atomically, recording its sources.

    The PNG carries no ``Software`` entry and no date, so the same figure always gives
    the same bytes; ``sources`` is stored as key-sorted JSON in the :data:`SOURCES_KEY`
    text chunk (read it back with ``PIL.Image.open(path).text``).

    Args:
        fig: figure to save (tight bounding box, 100 dpi).
        path: output ``.png`` path; parent folders are created.
        sources: JSON-able description of the inputs (run folders, CSVs, parameters).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    metadata = {"Software": None}
    if sources is not None:
        metadata[SOURCES_KEY] = json.dumps(sources, sort_keys=True, default=jsonable)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata=metadata)
    return path


def show_outline(ax, mask: np.ndarray | None) -> None:
    """Draw only the edge pixels of ``mask`` in opaque red (no ``ax.contour``, see :func:`show_mask`)."""
    if mask is None or not np.any(mask):
        return
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    edge = mask & ~ndimage.binary_erosion(mask)
    ax.imshow(np.ma.masked_where(~edge, edge), cmap=MASK_CMAP, alpha=1.0, interpolation="nearest")
