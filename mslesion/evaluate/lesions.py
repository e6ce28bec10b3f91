"""Lesion-wise metrics on connected components (Røvang 2021, Tables 5.3 and 8.5-8.17).

Lesions are the connected components of each mask (:func:`label_lesions`). A
ground-truth lesion is *detected* (TP, else FN) when the prediction covers

* more than 0 of its voxels, if ``detection_fraction == 0`` (the default: any overlap), or
* at least ``detection_fraction`` of its voxels otherwise (Røvang (2021) used 0.6).

A predicted lesion is a *false positive* when it overlaps no ground-truth voxel at
all, whatever ``detection_fraction`` is; so with a fraction > 0 a prediction can
touch a lesion that still counts as missed without itself being a FP. TP and FN
lesions are bracketed by the ground-truth lesion's size, FP lesions by their own.
Sizes are voxel counts; brackets are half-open ``[lo, hi)``.

Undefined ratios are ``nan`` (no division by zero, no warnings):

=================  =========================  ==============================
metric             no true and no predicted   exactly one side empty
                   lesion
=================  =========================  ==============================
lesion_tpr         nan                        nan if no true lesion, else 0.0
lesion_fpr         nan                        nan if no predicted lesion, else 1.0
lesion_precision   nan (1 - fpr)              nan if no predicted lesion, else 0.0
lesion_f1          nan                        0.0 (also 0.0 when P + R == 0)
=================  =========================  ==============================

Per bracket: ``lesion_recall`` and the ``mean_*`` values are nan without a true
lesion in the bracket, ``lesion_precision`` is nan without a predicted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "BRACKETS",
    "bracket_label",
    "label_lesions",
    "lesion_table",
    "compute_lesion_metrics",
    "bracket_rows",
]

BRACKETS: tuple[tuple[float, float], ...] = ((0, 10), (10, 400), (400, 1000), (1000, math.inf))
NAN = float("nan")


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else str(int(x)) if float(x).is_integer() else f"{x:g}"


def bracket_label(lo: float, hi: float) -> str:
    """``"[0, 10)"``-style label of a size bracket; ``"[1000, inf)"`` for an open end."""
    return f"[{_fmt(lo)}, {_fmt(hi)})"


def _structure(ndim: int, connectivity: int | None) -> tuple[np.ndarray, int]:
    """Structuring element and neighbour count; None = full connectivity (26 in 3D, 8 in 2D)."""
    rank = {int(ndimage.generate_binary_structure(ndim, r).sum()) - 1: r for r in range(1, ndim + 1)}
    if connectivity is None:
        connectivity = max(rank)
    if connectivity not in rank:
        raise ValueError(f"connectivity {connectivity!r} is not valid in {ndim}D; allowed: {sorted(rank)}")
    return ndimage.generate_binary_structure(ndim, rank[connectivity]), connectivity


def label_lesions(mask: np.ndarray, connectivity: int | None = None) -> tuple[np.ndarray, int]:
    """Connected components of a binary mask.

    Args:
        mask: bool/0-1 array, 2D or 3D; non-zero = lesion.
        connectivity: neighbours that join voxels: 6, 18 or 26 in 3D; 4 or 8 in 2D.
            None (default) = full connectivity (26 in 3D, 8 in 2D).

    Returns:
        ``(labels, n)``: int array of ``mask.shape``, 0 = background, lesions 1..n.
    """
    m = np.asarray(mask) != 0
    structure, _ = _structure(m.ndim, connectivity)
    labels, n = ndimage.label(m, structure=structure)
    return labels, int(n)


def _check_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true) != 0, np.asarray(y_pred) != 0
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    return t, p


def _components(mask, other, structure) -> dict[str, np.ndarray]:
    """Per-lesion arrays (index i = label i + 1): voxels, depth along axis 0, overlap with ``other``."""
    labels, n = ndimage.label(mask, structure=structure)
    voxels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    overlap = np.bincount(labels[other], minlength=n + 1)[1:]
    depth = np.array([s[0].stop - s[0].start for s in ndimage.find_objects(labels)], dtype=np.int64)
    return {"voxels": voxels, "depth": depth, "overlap": overlap, "recall": overlap / np.maximum(voxels, 1)}


def _analyse(y_true, y_pred, connectivity, detection_fraction):
    if not 0 <= detection_fraction <= 1:
        raise ValueError(f"detection_fraction must be in [0, 1], got {detection_fraction}")
    t, p = _check_pair(y_true, y_pred)
    structure, connectivity = _structure(t.ndim, connectivity)
    true, pred = _components(t, p, structure), _components(p, t, structure)
    if detection_fraction == 0:
        true["detected"] = true["overlap"] > 0
    else:
        true["detected"] = true["recall"] >= detection_fraction
    pred["detected"] = pred["overlap"] > 0  # a TP prediction; FP = overlaps no truth at all
    return true, pred, connectivity


def _in_bracket(voxels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (voxels >= lo) & (voxels < hi)


def lesion_table(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    connectivity: int | None = None,
    detection_fraction: float = 0.0,
    brackets: Sequence[tuple[float, float]] = BRACKETS,
) -> list[dict]:
    """One row per lesion: every ground-truth lesion (``kind="true"``), then every predicted one.

    Args:
        y_true: bool/0-1 reference mask, 2D or 3D; y_pred: same shape.
        connectivity: see :func:`label_lesions`.
        detection_fraction: detection rule, see the module docstring.
        brackets: ``(lo, hi)`` voxel-count brackets, half-open.

    Returns:
        Rows with ``kind``, ``label`` (1..n per kind), ``voxels``, ``depth_slices`` (extent
        along axis 0), ``overlap_voxels`` (with the other mask), ``recall`` (overlap / voxels:
        for a predicted lesion, the fraction of it inside truth), ``detected`` (true lesion:
        found; predicted lesion: overlaps truth, i.e. not a FP), ``bracket`` (label from
        ``brackets``, None if outside all) and ``detection_fraction``.
    """
    true, pred, _ = _analyse(y_true, y_pred, connectivity, detection_fraction)
    rows = []
    for kind, les in (("true", true), ("pred", pred)):
        for i in range(len(les["voxels"])):
            voxels = int(les["voxels"][i])
            bracket = next((bracket_label(lo, hi) for lo, hi in brackets if lo <= voxels < hi), None)
            rows.append({
                "kind": kind, "label": i + 1, "voxels": voxels, "depth_slices": int(les["depth"][i]),
                "overlap_voxels": int(les["overlap"][i]), "recall": float(les["recall"][i]),
                "detected": bool(les["detected"][i]), "bracket": bracket,
                "detection_fraction": float(detection_fraction),
            })  # fmt: skip
    return rows


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else NAN


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else NAN


def _f1(precision: float, recall: float, n_true: int, n_pred: int) -> float:
    if n_true == 0 and n_pred == 0:
        return NAN
    if n_true == 0 or n_pred == 0 or precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def compute_lesion_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    connectivity: int | None = None,
    detection_fraction: float = 0.0,
    brackets: Sequence[tuple[float, float]] = BRACKETS,
) -> dict:
    """Lesion detection counts and rates, overall and per lesion-size bracket.

    Args:
        y_true: bool/0-1 reference mask, 2D or 3D; y_pred: same shape.
        connectivity: see :func:`label_lesions`; the resolved value is returned.
        detection_fraction: detection rule, see the module docstring.
        brackets: ``(lo, hi)`` voxel-count brackets, half-open.

    Returns:
        Flat overall keys ``connectivity``, ``detection_fraction``, ``n_true_lesions``,
        ``n_pred_lesions``, ``tp_lesions``, ``fn_lesions``, ``fp_lesions``, ``lesion_tpr``
        (tp / n_true), ``lesion_fpr`` (fp / n_pred), ``lesion_precision`` (1 - fpr),
        ``lesion_f1``; and ``brackets``: one dict per bracket with ``bracket``,
        ``n_true_lesions``, ``n_pred_lesions`` (by own size), ``tp_lesions``, ``fn_lesions``,
        ``fp_lesions``, ``lesion_recall`` (tp / n_true), ``lesion_precision`` (non-FP
        predictions / predictions in the bracket), and over the bracket's *true* lesions
        ``mean_voxels``, ``mean_depth_slices``, ``mean_recall`` (per-lesion voxel recall).
    """
    true, pred, connectivity = _analyse(y_true, y_pred, connectivity, detection_fraction)
    n_true, n_pred = len(true["voxels"]), len(pred["voxels"])
    tp, fp = int(true["detected"].sum()), int(n_pred - pred["detected"].sum())
    tpr, fpr = _ratio(tp, n_true), _ratio(fp, n_pred)
    precision = _ratio(n_pred - fp, n_pred)  # = 1 - fpr, without its rounding
    rows = []
    for lo, hi in brackets:
        t_in, p_in = _in_bracket(true["voxels"], lo, hi), _in_bracket(pred["voxels"], lo, hi)
        b_true, b_tp, b_pred = int(t_in.sum()), int(true["detected"][t_in].sum()), int(p_in.sum())
        b_fp = b_pred - int(pred["detected"][p_in].sum())
        rows.append({
            "bracket": bracket_label(lo, hi), "n_true_lesions": b_true, "n_pred_lesions": b_pred,
            "tp_lesions": b_tp, "fn_lesions": b_true - b_tp, "fp_lesions": b_fp,
            "lesion_recall": _ratio(b_tp, b_true), "lesion_precision": _ratio(b_pred - b_fp, b_pred),
            "mean_voxels": _mean(true["voxels"][t_in]), "mean_depth_slices": _mean(true["depth"][t_in]),
            "mean_recall": _mean(true["recall"][t_in]),
        })  # fmt: skip
    return {
        "connectivity": connectivity,
        "detection_fraction": float(detection_fraction),
        "n_true_lesions": n_true,
        "n_pred_lesions": n_pred,
        "tp_lesions": tp,
        "fn_lesions": n_true - tp,
        "fp_lesions": fp,
        "lesion_tpr": tpr,
        "lesion_fpr": fpr,
        "lesion_precision": precision,
        "lesion_f1": _f1(precision, tpr, n_true, n_pred),
        "brackets": rows,
    }


def bracket_rows(result: dict, **extra) -> list[dict]:
    """Per-bracket rows of a :func:`compute_lesion_metrics` result, ready for a CSV.

    Args:
        result: output of :func:`compute_lesion_metrics`.
        **extra: leading columns for every row (e.g. ``patient="case_014"``).

    Returns:
        One dict per bracket: ``extra``, then ``connectivity``, ``detection_fraction``,
        then the bracket's own keys.
    """
    head = {**extra, "connectivity": result["connectivity"], "detection_fraction": result["detection_fraction"]}
    return [{**head, **row} for row in result["brackets"]]
