"""Figures of numbers over epochs, trials and lesion sizes: training curves, accuracy/loss, the learning-rate
search, lesion-size brackets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mslesion.report.plotting import DPI, TITLE_CHARS, panel_grid, wrap_text

__all__ = ["plot_metric_curves", "plot_accuracy_loss", "plot_lr_search", "plot_lesion_brackets"]


_METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "accuracy": "pixel accuracy (fraction)", "loss": "loss"}


_ACCURACY_STEP = 0.05  # accuracy axes start at the lowest accuracy rounded down to a multiple of this


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
    fig, axes = panel_grid(len(histories), 3, (4.5, 3.2))
    for ax, (label, history) in zip(axes, histories.items()):
        _plot_train_val(ax, history, metric, ylabel or _METRIC_LABELS.get(metric, metric.replace("_", " ")),
                        wrap_text(label, TITLE_CHARS))  # fmt: skip
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
        name = wrap_text(label, TITLE_CHARS)
        floor = _accuracy_floor(history)  # None: no accuracy to draw, so no floor to state
        floor = floor if accuracy_floor is None or floor is None else float(accuracy_floor)
        where = "" if floor is None else f", axis from {floor:g}"
        _plot_train_val(acc_ax, history, "accuracy", _METRIC_LABELS["accuracy"], f"{name}\naccuracy{where}")
        if floor is not None:  # a little headroom, so points at exactly 1.0 are not cut in half
            acc_ax.set_ylim(floor, 1.0 + 0.03 * (1.0 - floor))
        _plot_train_val(loss_ax, history, "loss", "loss", f"{name}\nloss")
    fig.suptitle("accuracy and loss per epoch")
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
