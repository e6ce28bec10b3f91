"""Figures of images: slice grids, prediction examples, orthogonal views, attention maps.

As every figure module of the report (:mod:`~mslesion.report.curves`, :mod:`~mslesion.report.plotting`):
DataFrames and arrays in, ``matplotlib.figure.Figure`` out.

Every function is pure: it reads no run folder and touches no pyplot state (figures
are built with ``Figure(...)`` directly, so nothing leaks into a notebook's list of
open figures; Jupyter still displays the returned object). :func:`save_figure`
writes a deterministic PNG that records where its numbers came from.

Images follow the canonical layout of :mod:`mslesion.data.volumes`: slices ``(H, W)``,
volumes ``(Z, H, W)`` with Z inferior -> superior, rows anterior -> posterior and
columns patient left -> right.
"""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mslesion.report.plotting import (
    DPI,
    OVERLAY_COLOURS,
    ROW_LABEL_CHARS,
    overlay_rgb,
    panel_grid,
    show_mask,
    show_outline,
    window_intensity,
    wrap_text,
)

__all__ = ["plot_image_grid", "plot_prediction_examples", "plot_orthogonal_views", "plot_attention_maps"]


def plot_image_grid(
    images: list[np.ndarray], masks: list[np.ndarray | None] | None, titles: list[str], ncols: int = 4
) -> Figure:
    """Grey slices with their masks outlined in red (the backbone report's figures 4.4 and 6.7).

    Args:
        images: (H, W) float slices, any range (each windowed at its 1st-99th percentiles).
        masks: (H, W) bool masks matching ``images`` (entries may be None), or None.
        titles: one panel title per image.
        ncols: panels per row.

    Returns:
        Figure with ``len(images)`` axes.
    """
    masks = [None] * len(images) if masks is None else masks
    if not len(images) == len(masks) == len(titles):
        raise ValueError(f"got {len(images)} images, {len(masks)} masks, {len(titles)} titles")
    fig, axes = panel_grid(len(images), ncols, (3.0, 3.2))
    for ax, image, mask, title in zip(axes, images, masks, titles):
        ax.imshow(window_intensity(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        show_mask(ax, mask)
        ax.set_title(title)
        ax.set_axis_off()
    return fig


def plot_prediction_examples(examples: dict[str, list[dict]]) -> Figure:
    """Predictions coloured by error type, one row per model (the backbone report's appendix II, Rondinella et al.'s (2023) figure 6).

    Args:
        examples: model label -> list of dicts with ``image`` ((H, W) float), ``truth`` and
            ``pred`` ((H, W) bool), ``dice`` (float, nan if undefined), ``label`` (e.g.
            ``good``) and ``title`` (e.g. ``patient 3 slice 12``).

    Returns:
        Figure with one axis per example; panels titled with label and Dice, each row
        labelled with its model (wrapped to stay within the row), a legend names the
        colours of :data:`OVERLAY_COLOURS`.
    """
    ncols = max((len(row) for row in examples.values()), default=0)
    if ncols == 0:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(3.0 * ncols, 3.3 * len(examples) + 0.5), dpi=DPI, layout="constrained")
    grid = fig.subplots(len(examples), ncols, squeeze=False)
    for row, (model, shown) in zip(grid, examples.items()):
        for ax, example in zip(row, shown):
            ax.imshow(overlay_rgb(example["image"], example["truth"], example["pred"]), interpolation="nearest")
            dice = example["dice"]
            ax.set_title(f"{example['label']}: Dice {'undefined' if np.isnan(dice) else f'{dice:.2f}'}")
            ax.set_xlabel(example["title"])
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(wrap_text(model, ROW_LABEL_CHARS), fontsize="large")  # wrapped: stays within its row
        for ax in row[len(shown) :]:
            ax.remove()
    handles = [Patch(color=colour, label=name) for name, colour in OVERLAY_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return fig


def plot_orthogonal_views(
    volume: np.ndarray,
    mask: np.ndarray | None,
    spacing_zhw_mm: tuple[float, float, float] | None = None,
    index: tuple[int, int, int] | None = None,
    title: str = "",
) -> Figure:
    """Axial, coronal and sagittal slices through one voxel (replaces the backbone report's Mayavi figure 4.1).

    Args:
        volume: (Z, H, W) canonical axial stack (Z inferior -> superior, rows anterior ->
            posterior, columns patient left -> right); windowed at its 1st-99th percentiles.
        mask: (Z, H, W) bool mask drawn in red, or None.
        spacing_zhw_mm: voxel size in mm; None treats voxels as 1 mm cubes.
        index: (z, h, w) voxel the three planes pass through; default the mask voxel
            nearest the mask's centre of mass (so every view cuts a lesion), else the
            volume centre.
        title: figure title.

    Returns:
        Figure with 3 axes in mm, superior at the top of the coronal and sagittal views.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or (mask is not None and np.shape(mask) != volume.shape):
        raise ValueError(f"need a (Z, H, W) volume and matching mask, got {volume.shape}, {np.shape(mask)}")
    sz, sh, sw = spacing_zhw_mm or (1.0, 1.0, 1.0)
    Z, H, W = volume.shape
    if index is None and mask is not None and np.any(mask):
        voxels = np.argwhere(mask)
        index = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    z, h, w = (int(i) for i in (index if index is not None else (Z // 2, H // 2, W // 2)))
    grey = window_intensity(volume)
    mask = np.zeros(volume.shape, bool) if mask is None else np.asarray(mask, bool)
    views = [  # (plane, image, mask, extent, origin, xlabel, ylabel, crosshair x, crosshair y)
        (f"axial (z={z})", grey[z], mask[z], (0, W * sw, H * sh, 0), "upper",
         "patient left → right (mm)", "anterior → posterior (mm)", (w + 0.5) * sw, (h + 0.5) * sh),
        (f"coronal (row={h})", grey[:, h], mask[:, h], (0, W * sw, 0, Z * sz), "lower",
         "patient left → right (mm)", "inferior → superior (mm)", (w + 0.5) * sw, (z + 0.5) * sz),
        (f"sagittal (column={w})", grey[:, :, w], mask[:, :, w], (0, H * sh, 0, Z * sz), "lower",
         "anterior → posterior (mm)", "inferior → superior (mm)", (h + 0.5) * sh, (z + 0.5) * sz),
    ]  # fmt: skip
    widths = [W * sw, W * sw, H * sh]
    fig = Figure(figsize=(13, 4.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=widths)
    for ax, (plane, image, plane_mask, extent, origin, xlabel, ylabel, cx, cy) in zip(axes, views):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, extent=extent, origin=origin, aspect="equal",
                  interpolation="nearest")  # antialiased resampling was not byte-reproducible
        show_mask(ax, plane_mask, extent=extent, origin=origin)
        ax.axvline(cx, color="yellow", lw=0.6, ls=":", alpha=0.6)
        ax.axhline(cy, color="yellow", lw=0.6, ls=":", alpha=0.6)
        ax.set(title=plane, xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(title or f"orthogonal views through voxel (z, row, column) = ({z}, {h}, {w})")
    return fig


def _upsample_nearest(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2D array to ``shape`` (pixel ``i`` takes source ``i * h // H``)."""
    rows = np.arange(shape[0]) * values.shape[0] // shape[0]
    cols = np.arange(shape[1]) * values.shape[1] // shape[1]
    return values[np.ix_(rows, cols)]


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    """Minimum and maximum of the finite values (0, 0 when there are none)."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def _range_text(low: float, high: float) -> str:
    """``"range 0.981-0.999"`` with as few decimals (2 to 6) as tell the ends apart; ``"constant 1.00"``."""
    if high <= low:
        return f"constant {low:.2f}"
    digits = next((d for d in range(2, 7) if f"{low:.{d}f}" != f"{high:.{d}f}"), 6)
    return f"range {low:.{digits}f}-{high:.{digits}f}"


def plot_attention_maps(
    image: np.ndarray, maps: dict[str, np.ndarray], truth: np.ndarray | None = None, title: str = ""
) -> Figure:
    """An input slice and the attention coefficients of each gate (Røvang's (2021) figure 8.5).

    Args:
        image: (H, W) float slice, any range (windowed at its 1st-99th percentiles), or
            (H, W, C), of which the middle channel ``C // 2`` is shown (the centre of
            adjacent slices).
        maps: gate name -> coefficients in [0, 1] of one image, (h, w), (h, w, 1) or
            (1, h, w, 1) with h, w dividing H, W, e.g. one item of
            :func:`mslesion.models.pyramid_att_unet.attention_maps` (deepest first);
            each is shown upsampled (nearest neighbour) to the image size.
        truth: (H, W) bool reference mask, outlined in red on every panel, or None.
        title: figure title.

    Returns:
        Figure with ``len(maps) + 2`` axes: the image, one per map, and one shared
        colourbar. Each map is coloured from its own minimum to its own maximum (titled
        with that range): a gate's coefficients can sit in a narrow band of their own (the
        deep gates' near 1), which one 0-1 scale showed as a uniform panel.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., image.shape[-1] // 2]
    if image.ndim != 2:
        raise ValueError(f"need an (H, W) or (H, W, C) image, got shape {image.shape}")
    if not maps:
        raise ValueError("nothing to plot: no attention maps")
    if truth is not None and np.shape(truth) != image.shape:
        raise ValueError(f"truth shape {np.shape(truth)} does not match image shape {image.shape}")
    shown = {}
    for name, values in maps.items():
        values = np.asarray(values, dtype=np.float64)
        values = values.reshape(values.shape[-3:-1]) if values.ndim >= 3 else values
        if values.ndim != 2 or any(s % v for s, v in zip(image.shape, values.shape)):
            raise ValueError(f"map {name!r} of shape {np.shape(maps[name])} does not tile image {image.shape}")
        shown[name] = (values.shape, _upsample_nearest(values, image.shape))
    n = 1 + len(shown)
    fig = Figure(figsize=(3.0 * n + 0.8, 3.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False).ravel()
    axes[0].imshow(window_intensity(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    show_outline(axes[0], truth)
    axes[0].set_title("image, truth outlined" if truth is not None else "image")
    for ax, (name, (size, values)) in zip(axes[1:], shown.items()):
        low, high = _finite_range(values)
        ax.imshow(values, cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-12, interpolation="nearest")
        show_outline(ax, truth)
        ax.set_title(f"{name} ({size[0]}x{size[1]})\n{_range_text(low, high)}")
    for ax in axes:
        ax.set_axis_off()
    scale = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="viridis"), ax=list(axes[1:]), shrink=0.85,
                         label="attention coefficient\n(each panel: its own range)")  # fmt: skip
    scale.set_ticks([0, 1], labels=["panel min", "panel max"])
    fig.suptitle(title or "attention coefficients per gate")
    # Constrained layout sizes the colourbar's tick labels only once they have been drawn; one
    # unseen draw here lets savefig's single layout pass converge (else titles hit the suptitle).
    fig.draw_without_rendering()
    return fig
