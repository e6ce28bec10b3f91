"""Report figures: DataFrames and arrays in, ``matplotlib.figure.Figure`` out.

Every function is pure: it reads no run folder and touches no pyplot state (figures
are built with ``Figure(...)`` directly, so nothing leaks into a notebook's list of
open figures; Jupyter still displays the returned object). :func:`save_figure`
writes a deterministic PNG that records where its numbers came from.

Images follow the canonical layout of :mod:`mslesion.data.volumes`: slices ``(H, W)``,
volumes ``(Z, H, W)`` with Z inferior -> superior, rows anterior -> posterior and
columns patient left -> right.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mslesion.fileio import atomic_path, jsonable

__all__ = [
    "OVERLAY_COLOURS",
    "SOURCES_KEY",
    "overlay_rgb",
    "plot_metric_curves",
    "plot_accuracy_loss",
    "plot_image_grid",
    "plot_prediction_examples",
    "plot_orthogonal_views",
    "plot_lr_search",
    "plot_lesion_brackets",
    "save_figure",
    "plot_attention_maps",
]

DPI = 100
SOURCES_KEY = "Source"  # PNG text chunk that holds the JSON ``sources`` of save_figure
OVERLAY_COLOURS = {  # RGB in [0, 1]
    "true positive": (0.0, 1.0, 0.0),
    "false positive": (1.0, 0.0, 0.0),
    "false negative": (0.0, 0.0, 1.0),
}
_MASK_CMAP = ListedColormap(["red"])
_METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "accuracy": "pixel accuracy (fraction)", "loss": "loss"}
# Characters per line of a panel title ("large", 12 pt) on a 4.5-inch panel: report model names run
# to ~55 characters, which overflowed into the neighbouring panel's title unwrapped.
_TITLE_CHARS = 34
_ROW_LABEL_CHARS = 24  # a rotated row label on a ~3-inch row: longer ones spilled into the next row
_ACCURACY_STEP = 0.05  # accuracy axes start at the lowest accuracy rounded down to a multiple of this


def _wrap(text: str, width: int) -> str:
    """``text`` with each of its lines wrapped at ``width`` characters (at spaces where possible)."""
    return "\n".join(textwrap.fill(line, width) for line in str(text).split("\n"))


def _window(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
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
    rgb = np.repeat(_window(image)[..., None], 3, axis=-1)
    for name, where in (
        ("true positive", truth & pred),
        ("false positive", ~truth & pred),
        ("false negative", truth & ~pred),
    ):
        rgb[where] = OVERLAY_COLOURS[name]
    return rgb


def _show_mask(ax, mask: np.ndarray | None, **imshow_kwargs) -> None:
    """Draw ``mask`` as a translucent red fill with an opaque red outline (2D, bool).

    The outline is the mask's edge pixels, not ``ax.contour``: contour lines
    rendered differently on the first draw of a process, breaking byte-identical PNGs.
    """
    if mask is None or not np.any(mask):
        return
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    edge = mask & ~ndimage.binary_erosion(mask)
    ax.imshow(np.ma.masked_where(~mask, mask), cmap=_MASK_CMAP, alpha=0.35, interpolation="nearest", **imshow_kwargs)
    ax.imshow(np.ma.masked_where(~edge, edge), cmap=_MASK_CMAP, alpha=1.0, interpolation="nearest", **imshow_kwargs)


def _grid(n: int, ncols: int, panel_in: tuple[float, float]) -> tuple[Figure, list]:
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


def _epochs(history: pd.DataFrame) -> np.ndarray:
    """1-based epoch numbers (CSVLogger writes a 0-based ``epoch`` column)."""
    if "epoch" in history:
        return history["epoch"].to_numpy() + 1
    return np.arange(1, len(history) + 1)


def _plot_train_val(ax, history: pd.DataFrame, metric: str, ylabel: str, title: str) -> None:
    """Train and validation curves of one metric; absent columns are skipped; ``title`` is used as given."""
    epochs = _epochs(history)
    for column, label, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
        if column in history:
            ax.plot(epochs, history[column].to_numpy(), style, marker=".", label=label)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def plot_metric_curves(
    histories: dict[str, pd.DataFrame], metric: str = "dice", ylabel: str | None = None, sharey: bool = True
) -> Figure:
    """Train/validation curves of one metric, one panel per model (the backbone report's figures 6.1-6.6).

    Args:
        histories: model label -> Keras CSVLogger history (``epoch`` 0-based, ``<metric>``,
            ``val_<metric>`` columns; missing ones are skipped).
        metric: column to plot, e.g. ``dice``, ``iou``, ``loss``.
        ylabel: y-axis label; default a readable metric name (``Dice``, ``IoU``, ...).
        sharey: one y range for every panel (default True), so that a model that stayed
            near 0 does not look like one that learned, as each panel autoscaled it would.

    Returns:
        Figure with ``len(histories)`` axes on a grid of at most 3 columns, each titled
        with its model label (wrapped so that neighbouring titles never overlap).
    """
    fig, axes = _grid(len(histories), 3, (4.5, 3.2))
    for ax, (label, history) in zip(axes, histories.items()):
        _plot_train_val(ax, history, metric, ylabel or _METRIC_LABELS.get(metric, metric.replace("_", " ")),
                        _wrap(label, _TITLE_CHARS))  # fmt: skip
        if sharey and ax is not axes[0]:
            ax.sharey(axes[0])  # Axes.sharey keeps every panel's tick labels (subplots(sharey=True) hides them)
    fig.suptitle(f"training and validation {_METRIC_LABELS.get(metric, metric).split(' (')[0]} per epoch")
    return fig


def _accuracy_floor(history: pd.DataFrame) -> float | None:
    """Lowest train/validation accuracy rounded down to :data:`_ACCURACY_STEP` (None without any)."""
    values = np.concatenate([history[c].to_numpy(float) for c in ("accuracy", "val_accuracy") if c in history] or [[]])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    steps = math.floor(round(float(values.min()) / _ACCURACY_STEP, 6))  # round first: 0.95 / 0.05 is 18.999...
    return round(min(max(steps * _ACCURACY_STEP, 0.0), 1.0 - _ACCURACY_STEP), 6)


def plot_accuracy_loss(histories: dict[str, pd.DataFrame], accuracy_floor: float | None = None) -> Figure:
    """Accuracy and loss curves, one row per model (the backbone report's appendix I).

    Pixel accuracy on lesion data is ~0.99 from the first epoch (background dominates), so
    each accuracy axis runs from a floor to 1 and its title states the floor: by default
    the panel's lowest accuracy rounded down to a multiple of 0.05 ("accuracy, axis from 0.95").

    Args:
        histories: model label -> history with ``epoch``, ``accuracy``, ``val_accuracy``,
            ``loss``, ``val_loss`` columns (missing ones are skipped).
        accuracy_floor: one floor for every accuracy axis that has values (e.g. 0.9, to compare rows).

    Returns:
        Figure with ``2 * len(histories)`` axes: accuracy left, loss right, each titled
        with the model label (wrapped so that neighbouring titles never overlap).
    """
    if not histories:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(9, 3.3 * len(histories)), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(histories), 2, squeeze=False)
    for (acc_ax, loss_ax), (label, history) in zip(axes, histories.items()):
        name = _wrap(label, _TITLE_CHARS)
        floor = _accuracy_floor(history)  # None: no accuracy to draw, so no floor to state
        floor = floor if accuracy_floor is None or floor is None else float(accuracy_floor)
        where = "" if floor is None else f", axis from {floor:g}"
        _plot_train_val(acc_ax, history, "accuracy", _METRIC_LABELS["accuracy"], f"{name}\naccuracy{where}")
        if floor is not None:  # a little headroom, so points at exactly 1.0 are not cut in half
            acc_ax.set_ylim(floor, 1.0 + 0.03 * (1.0 - floor))
        _plot_train_val(loss_ax, history, "loss", "loss", f"{name}\nloss")
    fig.suptitle("accuracy and loss per epoch")
    return fig


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
    fig, axes = _grid(len(images), ncols, (3.0, 3.2))
    for ax, image, mask, title in zip(axes, images, masks, titles):
        ax.imshow(_window(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _show_mask(ax, mask)
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
        row[0].set_ylabel(_wrap(model, _ROW_LABEL_CHARS), fontsize="large")  # wrapped: stays within its row
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
    grey = _window(volume)
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
        _show_mask(ax, plane_mask, extent=extent, origin=origin)
        ax.axvline(cx, color="yellow", lw=0.6, ls=":", alpha=0.6)
        ax.axhline(cy, color="yellow", lw=0.6, ls=":", alpha=0.6)
        ax.set(title=plane, xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(title or f"orthogonal views through voxel (z, row, column) = ({z}, {h}, {w})")
    return fig


def plot_lr_search(table: pd.DataFrame, curves: dict[str, list[float]] | None = None) -> Figure:
    """Learning-rate search: best validation Dice per rate, and per-epoch curves.

    Args:
        table: one row per trial with ``trial``, ``learning_rate``, ``best_val_dice``,
            ``best_epoch`` (1-based; blank/nan if unknown) and ``epochs`` columns, as
            :mod:`mslesion.train.tuning` writes ``tuning.csv``.
        curves: trial label -> validation Dice per epoch; adds a right-hand panel.

    Returns:
        Figure with 1 axis, or 2 when ``curves`` is given.
    """
    fig = Figure(figsize=(11 if curves else 6, 4.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2 if curves else 1, squeeze=False).ravel()
    ax = axes[0]
    ax.plot(table["learning_rate"], table["best_val_dice"], "o")
    epoch, epochs = (pd.to_numeric(table[c], errors="coerce").to_numpy(float) for c in ("best_epoch", "epochs"))
    for row, best, total in zip(table.itertuples(), epoch, epochs):
        if np.isfinite(row.best_val_dice):
            where = f" (epoch {best:g}/{total:g})" if np.isfinite(best) and np.isfinite(total) else ""
            ax.annotate(f"{row.trial}{where}", (row.learning_rate, row.best_val_dice), textcoords="offset points",
                        xytext=(4, 4), fontsize="small")  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.2)
    ax.set(xlabel="learning rate (log scale)", ylabel="best validation Dice", title="best validation Dice per trial")
    ax.grid(alpha=0.3, which="both")
    if curves:
        for label, values in curves.items():
            axes[1].plot(np.arange(1, len(values) + 1), values, marker=".", label=label)
        axes[1].set(xlabel="epoch", ylabel="validation Dice", title="validation Dice per epoch")
        axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize="small")
    return fig


def plot_lesion_brackets(rows: pd.DataFrame) -> Figure:
    """Lesion-wise recall and precision per lesion-size bracket, bars grouped by bracket, one per model.

    Like Røvang's (2021) figures 8.22-8.27, but one figure compares all models.

    Args:
        rows: one row per model and bracket with ``model``, ``bracket`` (plotted in the
            order they first appear), ``lesion_recall``, ``lesion_precision`` (fractions, nan if undefined)
            and ``n_true_lesions``.

    Returns:
        Figure with 2 axes: recall left, precision right. A bar of height 0 is marked
        with a stub on the baseline and a "0" in its colour, an undefined one with "n/a",
        so neither looks like a missing bar; the model legend sits above the axes.
    """
    brackets, models = list(pd.unique(rows["bracket"])), list(pd.unique(rows["model"]))
    if not brackets:
        raise ValueError("nothing to plot")
    if rows.duplicated(["model", "bracket"]).any():
        raise ValueError("need one row per (model, bracket); aggregate per-patient rows first")
    ticks = []
    for bracket in brackets:  # the same test set gives every model the same count; say so when not
        low, high = rows.loc[rows["bracket"] == bracket, "n_true_lesions"].agg(["min", "max"]).astype(float)
        ticks.append(f"{bracket}\nn={low:g}" if low == high else f"{bracket}\nn={low:g}-{high:g}")
    table = rows.set_index(["model", "bracket"])
    width = 0.8 / len(models)
    width_in = max(8.0, 1.4 * len(brackets) * 2)
    # the legend sits above the axes (inside, it covered the bars): as many columns as the longest
    # name allows (~5.5 pt a character at "small", plus the colour patch), the figure taller by its rows
    per_row = max(1, min(len(models), int(width_in * 72 // (5.5 * max(len(str(m)) for m in models) + 45))))
    fig = Figure(figsize=(width_in, 4.2 + 0.25 * (math.ceil(len(models) / per_row) + 1)), dpi=DPI,
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(1, 2, sharey=True)
    for ax, column, name in zip(axes, ("lesion_recall", "lesion_precision"), ("recall", "precision")):
        for i, model in enumerate(models):
            x = np.arange(len(brackets)) + (i - (len(models) - 1) / 2) * width
            heights = np.array([table[column].get((model, b), np.nan) for b in brackets], float)
            ax.bar(x, heights, width, label=model, color=f"C{i}")
            for xi in x[np.isnan(heights)]:  # undefined (no lesion to score), not zero
                ax.text(xi, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize="x-small", color=f"C{i}")
            for xi in x[heights == 0]:  # a zero bar has no area: without a mark it reads as "missing"
                ax.plot([xi - 0.4 * width, xi + 0.4 * width], [0, 0], color=f"C{i}", lw=3, clip_on=False,
                        solid_capstyle="butt")  # fmt: skip
                ax.text(xi, 0.01, "0", ha="center", va="bottom", fontsize="small", fontweight="bold", color=f"C{i}")
        ax.set_xticks(np.arange(len(brackets)), ticks)
        ax.set(xlabel="lesion size bracket (voxels; n = true lesions)", ylabel=f"lesion {name} (fraction)",
               title=f"lesion-wise {name}", ylim=(0, 1.05))  # fmt: skip
        ax.grid(alpha=0.3, axis="y")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=per_row, title="model",
               fontsize="small")  # fmt: skip
    return fig


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


def _show_outline(ax, mask: np.ndarray | None) -> None:
    """Draw only the edge pixels of ``mask`` in opaque red (no ``ax.contour``, see :func:`_show_mask`)."""
    if mask is None or not np.any(mask):
        return
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    edge = mask & ~ndimage.binary_erosion(mask)
    ax.imshow(np.ma.masked_where(~edge, edge), cmap=_MASK_CMAP, alpha=1.0, interpolation="nearest")


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
    axes[0].imshow(_window(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _show_outline(axes[0], truth)
    axes[0].set_title("image, truth outlined" if truth is not None else "image")
    for ax, (name, (size, values)) in zip(axes[1:], shown.items()):
        low, high = _finite_range(values)
        ax.imshow(values, cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-12, interpolation="nearest")
        _show_outline(ax, truth)
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
