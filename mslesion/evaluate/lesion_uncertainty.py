"""Does the uncertainty tell false lesions from true ones? (``mslesion evaluate --uncertainty std|entropy``)

Rondinella et al. (2023, section IV) show uncertainty maps beside the prediction so that a reader can doubt
the uncertain lesions. With ground truth at hand this can be measured: every predicted lesion gets its mean
and largest uncertainty and whether it touches a true lesion (a true positive) or not (a false one); the
summary gives the mean of each group and the AUROC of the mean uncertainty for telling the false lesions
(``sklearn.metrics.roc_auc_score``; 0.5: no better than chance, 1: every false lesion is more uncertain than
every true one).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from mslesion.evaluate.lesions import label_lesions
from mslesion.infer.uncertainty import lesion_uncertainty

__all__ = ["LESION_UNCERTAINTY_COLUMNS", "lesion_uncertainty_rows", "uncertainty_summary"]

LESION_UNCERTAINTY_COLUMNS = ["patient", "lesion", "voxels", "volume_ml", "mean_uncertainty", "max_uncertainty",
                              "true_positive"]  # fmt: skip


def lesion_uncertainty_rows(patient: str, truth: np.ndarray, pred: np.ndarray, uncertainty: np.ndarray,
                            spacing_zhw_mm: tuple[float, float, float] | None = None,
                            connectivity: int = 26) -> list[dict]:  # fmt: skip
    """One row per predicted lesion of ``pred`` (:data:`LESION_UNCERTAINTY_COLUMNS`).

    ``true_positive``: the lesion shares a voxel with ``truth``. ``volume_ml`` is nan without a voxel size.

    Raises:
        ValueError: the three arrays differ in shape.
    """
    if not (np.shape(truth) == np.shape(pred) == np.shape(uncertainty)):
        raise ValueError(f"truth {np.shape(truth)}, prediction {np.shape(pred)} and uncertainty "
                         f"{np.shape(uncertainty)} must have one shape")  # fmt: skip
    labels, n = label_lesions(pred, connectivity)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    means = lesion_uncertainty(labels, n, np.asarray(uncertainty, np.float32))
    maxima = ndimage.maximum(uncertainty, labels, index=index)
    hits = ndimage.maximum(np.asarray(truth) != 0, labels, index=index)
    voxel_ml = float(np.prod(spacing_zhw_mm)) / 1000 if spacing_zhw_mm else math.nan
    return [{"patient": patient, "lesion": k + 1, "voxels": int(sizes[k]), "volume_ml": float(sizes[k]) * voxel_ml,
             "mean_uncertainty": float(means[k]), "max_uncertainty": float(maxima[k]),
             "true_positive": bool(hits[k])} for k in range(n)]  # fmt: skip


def uncertainty_summary(rows: list[dict], measure: str) -> dict:
    """Counts and mean uncertainty of the true and false predicted lesions, and the AUROC for telling them apart
    (nan unless both kinds occur)."""
    from sklearn.metrics import roc_auc_score

    values = np.array([r["mean_uncertainty"] for r in rows], np.float64)
    false = np.array([not r["true_positive"] for r in rows], bool)

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if len(x) else math.nan

    both = 0 < false.sum() < len(false)
    return {"measure": measure, "true_lesions": int((~false).sum()), "false_lesions": int(false.sum()),
            "mean_uncertainty_true": mean(values[~false]), "mean_uncertainty_false": mean(values[false]),
            "auroc_false_lesions": float(roc_auc_score(false, values)) if both else math.nan}  # fmt: skip
