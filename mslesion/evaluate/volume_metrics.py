"""Whole-volume, per-patient metrics in physical units: lesion volume (mL) and HD95 (mm).

Every function takes ``(y_true, y_pred)`` masks of the same shape (a ``(D, H, W)``
volume or a 2D slice; non-zero = lesion) and the voxel size ``spacing_mm``, one
entry per axis in the same order as the array axes. Undefined results are
``nan``, never a made-up number, so reports can count them. The empty-mask cases:

===================  ===================  =============================
metric               truth and prediction  one of them empty
                     both empty
===================  ===================  =============================
volume_*_ml          0.0                   0.0 for the empty one
abs_volume_diff_ml   0.0                   volume of the non-empty one
rel_volume_diff      nan                   nan if truth empty, else -1.0
hd95_mm              nan                   nan (no surface to measure to)
===================  ===================  =============================

(MONAI returns inf/nan with a warning when one mask is empty; here it is always
nan, silently.) The voxel-confusion metrics in :func:`compute_patient_metrics`
follow :mod:`mslesion.evaluate.metrics` and its own table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mslesion.evaluate.metrics import compute_all

__all__ = [
    "compute_volume_ml",
    "compute_volume_difference",
    "compute_hd95_mm",
    "compute_patient_metrics",
]

NAN = float("nan")


def _as_bool(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def _check_spacing(mask: np.ndarray, spacing_mm: Sequence[float]) -> tuple[float, ...]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing_mm {spacing} has {len(spacing)} entries but the mask has {mask.ndim} axes "
                         f"(shape {mask.shape})")  # fmt: skip
    if any(not s > 0 for s in spacing):
        raise ValueError(f"spacing_mm must be positive, got {spacing}")
    return spacing


def _check_pair(y_true, y_pred, spacing_mm) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    t, p = _as_bool(y_true), _as_bool(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    return t, p, _check_spacing(t, spacing_mm)


def compute_volume_ml(mask: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Lesion volume in millilitres.

    Args:
        mask: bool/0-1 array (any ndim); non-zero = lesion.
        spacing_mm: voxel size per axis in mm, ``len == mask.ndim``.

    Returns:
        voxel count x prod(spacing_mm) / 1000 (1 mL = 1000 mm³); 0.0 for an empty mask.
    """
    m = _as_bool(mask)
    spacing = _check_spacing(m, spacing_mm)
    return float(np.count_nonzero(m) * np.prod(spacing) / 1000.0)


def compute_volume_difference(y_true: np.ndarray, y_pred: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Predicted vs reference lesion volume.

    Args:
        y_true: bool/0-1 reference mask; y_pred: same shape.
        spacing_mm: voxel size per axis in mm.

    Returns:
        ``volume_true_ml``, ``volume_pred_ml``, ``abs_volume_diff_ml`` = |pred - true| and
        ``rel_volume_diff`` = (pred - true) / true, signed (> 0: over-segmentation);
        nan when the truth is empty.
    """
    t, p, spacing = _check_pair(y_true, y_pred, spacing_mm)
    vt, vp = compute_volume_ml(t, spacing), compute_volume_ml(p, spacing)
    return {
        "volume_true_ml": vt,
        "volume_pred_ml": vp,
        "abs_volume_diff_ml": abs(vp - vt),
        "rel_volume_diff": (vp - vt) / vt if vt > 0 else NAN,
    }


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the smallest box holding every True voxel, grown by ``margin`` (clipped)."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, mask.shape[axis])))
    return tuple(box)


SURFACES = ("full", "face")


def _surface(mask: np.ndarray, surface: str = "full") -> np.ndarray:
    """Mask voxels with a background neighbour: any of the 26 (``full``) or of the 6 face neighbours (``face``,
    MONAI's); outside the array counts as background."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}, not {surface!r}")
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim if surface == "full" else 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def compute_hd95_mm(
    y_true: np.ndarray, y_pred: np.ndarray, spacing_mm: Sequence[float], percentile: float = 95.0,
    surface: str = "full",
) -> float:
    """Symmetric robust Hausdorff distance between the two mask surfaces, in mm.

    As MONAI ``compute_hausdorff_distance(percentile=95, directed=False)``: the
    ``percentile``-th percentile of the distances from each surface voxel of one mask to
    the nearest surface voxel of the other, taken in both directions; the larger of
    the two. The one convention that differs is the surface: here (``full``) the mask
    minus its erosion by the 3x3x3 (3x3) element, i.e. every voxel with a background
    voxel among its 26 neighbours, the neighbourhood lesions are counted with;
    MONAI erodes by the 6-neighbour cross (``surface="face"`` gives exactly MONAI's
    number, checked in tests/test_monai_crosscheck.py). The full surface is thicker
    on oblique boundaries; on random lesion masks the two differ by well under one
    voxel (see that test).

    Both masks are cropped to their union bounding box (+1 voxel) first. This is exact:
    every surface voxel lies inside that box, so the nearest surface voxel of the other
    mask is inside it too, and the erosion sees the same neighbours (the box edge is
    background in the full array as well). It keeps the EDT cheap on 182x218x182.

    Args:
        y_true: bool/0-1 reference mask (2D or 3D); y_pred: same shape.
        spacing_mm: voxel size per axis in mm (anisotropy is honoured).
        percentile: in [0, 100]; 100 gives the classic Hausdorff distance.
        surface: ``full`` (default) or ``face`` (MONAI's), see above.

    Returns:
        Distance in mm; nan when either mask is empty.
    """
    t, p, spacing = _check_pair(y_true, y_pred, spacing_mm)
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if not (t.any() and p.any()):
        return NAN
    box = _bounding_box(t | p, margin=1)
    surf_t, surf_p = _surface(t[box], surface), _surface(p[box], surface)
    to_true = ndimage.distance_transform_edt(~surf_t, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~surf_p, sampling=spacing)
    return float(max(np.percentile(to_true[surf_p], percentile), np.percentile(to_pred[surf_t], percentile)))


def compute_patient_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, spacing_mm: Sequence[float], beta: float = 3.0
) -> dict[str, float]:
    """Everything for one patient, as one flat row for ``cases.csv``.

    Args:
        y_true: bool/0-1 reference volume ``(D, H, W)`` (2D works too); y_pred: same shape.
        spacing_mm: voxel size per axis in mm, ``len == y_true.ndim``.
        beta: F-beta weight, reported as ``f{beta:g}`` (Røvang (2021) reports F3).

    Returns:
        :func:`mslesion.evaluate.metrics.compute_all` keys (dice, iou, ..., tp, fp, fn, tn), the
        :func:`compute_volume_difference` keys and ``hd95_mm``.

    Raises:
        ValueError: shapes differ, or ``spacing_mm`` does not have one entry per axis.
    """
    t, p, spacing = _check_pair(y_true, y_pred, spacing_mm)
    return {
        **compute_all(t, p, beta=beta),
        **compute_volume_difference(t, p, spacing),
        "hd95_mm": compute_hd95_mm(t, p, spacing),
    }
