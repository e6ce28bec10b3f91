"""What a table of per-patient numbers says: summary statistics, the trust summary, ``summary.json``."""

from __future__ import annotations

import math

import numpy as np

from mslesion import __version__

__all__ = ["SUMMARY_METRICS", "COLLAPSE_DICE", "summary_stats", "trust_summary", "describe_trust", "slice_level",
           "evaluation_summary"]  # fmt: skip

#: Per-patient columns summarised (mean, median, std, nan count) in summary.json and the report.
SUMMARY_METRICS = (
    "dice", "iou", "sensitivity", "specificity", "ppv", "npv", "extra_fraction", "abs_volume_diff_ml",
    "rel_volume_diff", "hd95_mm", "lesion_tpr", "lesion_fpr", "lesion_f1",
)  # fmt: skip

#: A patient whose whole-volume Dice is below this counts as a collapsed prediction.
COLLAPSE_DICE = 0.1


def summary_stats(values) -> dict:
    """Mean, median, SD, quartiles, min, max over the finite values; ``n`` and ``n_nan`` count both kinds."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    q = np.percentile(finite, [0, 25, 50, 75, 100]) if finite.size else [math.nan] * 5
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "median": float(q[2]), "std": float(finite.std()) if finite.size else math.nan,
        "q1": float(q[1]), "q3": float(q[3]), "min": float(q[0]), "max": float(q[4]),
        "n": int(finite.size), "n_nan": int(values.size - finite.size),
    }  # fmt: skip


def trust_summary(per_patient) -> dict:
    """What a reader needs before trusting a mean Dice: its spread, collapsed patients, volumes.

    Args:
        per_patient: a table with ``patient``, ``dice`` and ``volume_true_ml`` /
            ``volume_pred_ml`` (or ``volume_*_voxels`` when there is no voxel size).

    Returns:
        ``{"dice": stats, "collapsed": {...}, "lesion_volume": {...}}``; stats hold
        mean, median, std, quartiles, min, max and counts (nan patients counted, not averaged).
    """
    n = len(per_patient)
    dice = per_patient["dice"].to_numpy(float) if n else np.zeros(0)
    low = [str(p) for p, d in zip(per_patient["patient"], dice) if np.isfinite(d) and d < COLLAPSE_DICE] if n else []
    has_ml = n and "volume_true_ml" in per_patient and np.isfinite(per_patient["volume_true_ml"].to_numpy(float)).any()
    unit = "ml" if has_ml else "voxels"
    true = per_patient[f"volume_true_{unit}"].to_numpy(float) if n else np.zeros(0)
    pred = per_patient[f"volume_pred_{unit}"].to_numpy(float) if n else np.zeros(0)
    ratio = np.divide(pred, true, out=np.full_like(pred, np.nan), where=true > 0)
    return {
        "dice": summary_stats(dice),
        "collapsed": {"dice_below": COLLAPSE_DICE, "n": len(low), "fraction": len(low) / n if n else math.nan,
                      "patients": low},  # fmt: skip
        "lesion_volume": {"unit": unit, "true_mean": summary_stats(true)["mean"],
                          "pred_mean": summary_stats(pred)["mean"], "pred_over_true": summary_stats(ratio)},  # fmt: skip
    }


def describe_trust(trust: dict) -> str:
    """One line for the terminal: Dice spread, collapsed patients, predicted vs true lesion volume."""
    d, c, v = trust["dice"], trust["collapsed"], trust["lesion_volume"]
    if not d["n"]:
        return "no patient with a defined Dice"
    unit = "mL" if v["unit"] == "ml" else "voxels"
    return (f"Dice per patient {d['mean']:.3f} ± {d['std']:.3f} (median {d['median']:.3f}, IQR {d['q1']:.3f}-"
            f"{d['q3']:.3f}, n={d['n']}); {c['n']} of {d['n'] + d['n_nan']} patients below {c['dice_below']:g} "
            f"(collapsed); lesion volume predicted {v['pred_mean']:.3g} vs true {v['true_mean']:.3g} {unit} (mean), "
            f"median ratio {v['pred_over_true']['median']:.2f}")  # fmt: skip


def slice_level(slice_rows: list[dict]) -> dict:
    """Pooled and mean Dice/IoU over the axial slices with ground-truth lesion (the backbone report's test unit)."""
    inter = sum(r["overlap_pixels"] for r in slice_rows)
    truth = sum(r["lesion_pixels"] for r in slice_rows)
    predicted = sum(r["pred_pixels"] for r in slice_rows)
    return {
        "unit": "axial slices with ground-truth lesion, native grid (the backbone report's test unit)",
        "n_slices": len(slice_rows),
        "pooled_dice": 2 * inter / (truth + predicted) if truth + predicted else math.nan,
        "pooled_iou": inter / (truth + predicted - inter) if truth + predicted - inter else math.nan,
        "mean_dice": float(np.nanmean([r["dice"] for r in slice_rows])) if slice_rows else math.nan,
    }


def evaluation_summary(origin: dict, settings: dict, label: str, per_patient, slice_rows: list[dict],
                       failures: list[dict]) -> dict:  # fmt: skip
    """``summary.json`` of an evaluation.

    Args:
        origin: what was scored (``run``, ``checkpoint``, ``model`` of a run; or the prediction folder).
        settings: the evaluation's options (threshold, connectivity and detection_fraction are repeated at the top).
        label: which patients, in words.
    """
    return {
        **origin,
        "evaluated_on": label,
        "patients": per_patient["patient"].tolist() if len(per_patient) else [],
        "failures": failures,
        "settings": settings,
        "connectivity": settings["connectivity"],
        "detection_fraction": settings["detection_fraction"],
        "threshold": settings["threshold"],
        "per_patient": {key: summary_stats(per_patient[key] if key in per_patient else []) for key in SUMMARY_METRICS},
        "trust": trust_summary(per_patient),
        "slice_level": slice_level(slice_rows),
        "mslesion_version": __version__,
    }
