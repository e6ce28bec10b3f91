"""Evaluation metrics on binary arrays: NumPy in, float out, exact (no smoothing).

Every function takes ``(y_true, y_pred)`` of the same shape (a slice, a volume
or a batch), treats non-zero as lesion, and returns a Python float. Where a
ratio is undefined (its denominator is 0) the result is ``nan``, never a
made-up 0 or 1, so reports can count those cases instead of averaging them
away. The empty-mask cases:

=================  ===================  ===================
metric             truth and prediction  one of them empty
                   both empty
=================  ===================  ===================
dice, iou, fbeta   nan                   0.0
sensitivity        nan (no lesion)       0.0 if truth has lesion, else nan
ppv (precision)    nan                   0.0 if prediction has lesion, else nan
specificity, npv   defined while there are negatives
extra_fraction     0.0 (FP = 0)          FP / (TN + FN)
=================  ===================  ===================

These are the *exact* metrics for evaluation. The smoothed, differentiable
versions used for training live in :mod:`mslesion.train.losses` and
:mod:`mslesion.train.keras_metrics`; reports must say which one a number is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "Confusion",
    "confusion",
    "compute_dice",
    "compute_iou",
    "compute_accuracy",
    "compute_sensitivity",
    "compute_specificity",
    "compute_ppv",
    "compute_npv",
    "compute_extra_fraction",
    "compute_fbeta",
    "compute_all",
]


class Confusion(NamedTuple):
    """Pixel/voxel counts of a binary comparison."""

    tp: int
    fp: int
    fn: int
    tn: int


def _as_bool(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> Confusion:
    """TP, FP, FN, TN counts of two binary arrays of the same shape."""
    t, p = _as_bool(y_true), _as_bool(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    tp = int(np.count_nonzero(t & p))
    n_true, n_pred = int(np.count_nonzero(t)), int(np.count_nonzero(p))
    fp, fn = n_pred - tp, n_true - tp
    return Confusion(tp, fp, fn, t.size - tp - fp - fn)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def _counts(y_true, y_pred) -> Confusion:
    if isinstance(y_true, Confusion):
        return y_true
    return confusion(y_true, y_pred)


def compute_dice(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Dice = 2TP / (2TP + FP + FN); nan when both are empty.

    Args:
        y_true: bool/0-1 reference (any shape), or a :class:`Confusion`.
        y_pred: same shape as ``y_true`` (omitted when a Confusion is given).
    """
    c = _counts(y_true, y_pred)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def compute_iou(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """IoU (Jaccard) = TP / (TP + FP + FN); nan when both are empty."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fp + c.fn)


def compute_accuracy(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """(TP + TN) / all. Dominated by background on lesion data: report it, don't rank by it."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tp + c.tn, sum(c))


def compute_sensitivity(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Sensitivity (recall, TPR) = TP / (TP + FN); nan without reference lesion."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fn)


def compute_specificity(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Specificity (TNR) = TN / (TN + FP); nan when everything is lesion."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fp)


def compute_ppv(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Positive predictive value (precision) = TP / (TP + FP); nan without predicted lesion."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tp, c.tp + c.fp)


def compute_npv(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Negative predictive value = TN / (TN + FN); nan when nothing is predicted negative."""
    c = _counts(y_true, y_pred)
    return _ratio(c.tn, c.tn + c.fn)


def compute_extra_fraction(y_true: np.ndarray, y_pred: np.ndarray | None = None) -> float:
    """Extra fraction as printed in Rondinella et al.'s (2023) eq. 4: FP / (TN + FN).

    (Other papers divide by the reference volume, FP / (TP + FN); this follows the seed.)
    """
    c = _counts(y_true, y_pred)
    return _ratio(c.fp, c.tn + c.fn)


def compute_fbeta(y_true: np.ndarray, y_pred: np.ndarray | None = None, beta: float = 1.0) -> float:
    """F-beta = (1+b²)TP / ((1+b²)TP + FP + b²FN) (Røvang's (2021) eq. 4.5; it reports F3).

    beta > 1 weighs recall more; beta = 1 is Dice. nan when both are empty.
    """
    c = _counts(y_true, y_pred)
    b2 = beta * beta
    return _ratio((1 + b2) * c.tp, (1 + b2) * c.tp + c.fp + b2 * c.fn)


def compute_all(y_true: np.ndarray, y_pred: np.ndarray | None = None, beta: float = 3.0) -> dict[str, float]:
    """Every metric above in one pass, plus the counts; ``f{beta}`` is F-beta."""
    c = _counts(y_true, y_pred)
    return {
        "dice": compute_dice(c),
        "iou": compute_iou(c),
        "accuracy": compute_accuracy(c),
        "sensitivity": compute_sensitivity(c),
        "specificity": compute_specificity(c),
        "ppv": compute_ppv(c),
        "npv": compute_npv(c),
        "extra_fraction": compute_extra_fraction(c),
        f"f{beta:g}": compute_fbeta(c, beta=beta),
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "tn": c.tn,
    }
