"""The one per-patient evaluation loop: subjects in, tables out, whatever predicts them.

A :class:`Subject` is a patient's ground truth on the grid its prediction lives on; a predictor is any
function ``Subject -> (Z, H, W) probabilities``: slice-wise 2D inference, a 3D sliding window, or a
mask file read from disk (:mod:`mslesion.evaluate.folder`). Output tables::

    per_patient.csv   voxel metrics, volumes (mL), HD95 (mm), lesion-wise counts, slice-level Dice
    lesions.csv       one row per patient and lesion-size bracket (Røvang 2021)
    slices.csv        Dice/IoU of each axial slice with ground-truth lesion
    failures.csv      patients that could not be evaluated, and why
    lesion_uncertainty.csv  with an uncertainty measure: each predicted lesion's uncertainty, true or false
    examples.npz      good/average/bad slices by slice-Dice tertile (when the subjects carry images)
    masks/            the thresholded predictions (``write_masks``)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mslesion.errors import FAILURE_COLUMNS, failure_row
from mslesion.evaluate.lesion_uncertainty import LESION_UNCERTAINTY_COLUMNS, lesion_uncertainty_rows
from mslesion.evaluate.lesions import bracket_rows, compute_lesion_metrics
from mslesion.evaluate.metrics import compute_dice, compute_iou, confusion
from mslesion.evaluate.volume_metrics import compute_patient_metrics
from mslesion.fileio import atomic_path, save_csv
from mslesion.outputs import check_inside

__all__ = ["Subject", "Scoring", "score_subjects", "evaluate_volume", "slice_rows", "write_tables", "save_examples"]


@dataclass
class Subject:
    """One patient to score: the ground truth, on the grid the prediction is compared on."""

    patient_id: str
    truth: np.ndarray  # (Z, H, W), axial slices first
    spacing_zhw_mm: tuple[float, float, float] | None  # None: no physical units (TIFF slices)
    data: Any = None  # what the predictor reads: a loaded case, a prepared 3D volume, a mask file...
    image: np.ndarray | None = None  # (Z, H, W) first channel, for the example slices; None: no examples
    write_mask: Callable[[np.ndarray, Path], object] | None = None  # writes a thresholded prediction
    mask_name: str = ""  # its file (or folder) name under masks/


@dataclass
class Scoring:
    """How predictions become numbers (the evaluation options the loop needs)."""

    threshold: float = 0.5
    connectivity: int = 26
    detection_fraction: float = 0.0
    write_masks: bool = False
    examples_per_tertile: int = 1
    # the run's post-processing (mslesion.infer.postprocess.PostProcess); when set, it makes the masks, not threshold
    post: object | None = None
    # std or entropy: the predictor returns (probability, uncertainty), scored per predicted lesion
    uncertainty: str = "none"


def evaluate_volume(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    spacing_zhw_mm: tuple[float, float, float] | None,
    connectivity: int = 26,
    detection_fraction: float = 0.0,
) -> tuple[dict, dict]:
    """All per-patient numbers for one ``(Z, H, W)`` pair: (flat metrics row, lesion-wise result)."""
    spacing = spacing_zhw_mm or (1.0, 1.0, 1.0)
    row = compute_patient_metrics(y_true, y_pred, spacing)
    row["volume_true_voxels"] = int(np.count_nonzero(y_true))
    row["volume_pred_voxels"] = int(np.count_nonzero(y_pred))
    if spacing_zhw_mm is None:  # no physical units: keep the voxel figures, blank the mm/mL ones
        row["hd95_voxels"] = row["hd95_mm"]
        for key in ("volume_true_ml", "volume_pred_ml", "abs_volume_diff_ml", "hd95_mm"):
            row[key] = math.nan
    lesions = compute_lesion_metrics(y_true, y_pred, connectivity, detection_fraction)
    row.update({k: v for k, v in lesions.items() if k != "brackets"})
    return row, lesions


def slice_rows(patient_id: str, truth: np.ndarray, pred: np.ndarray) -> list[dict]:
    """Slice-level Dice/IoU on the axial slices that hold ground-truth lesion."""
    rows = []
    for k in np.flatnonzero(truth.any(axis=(1, 2))):
        c = confusion(truth[k], pred[k])
        rows.append({"patient": patient_id, "slice_index": int(k), "lesion_pixels": c.tp + c.fn,
                     "pred_pixels": c.tp + c.fp, "overlap_pixels": c.tp, "dice": compute_dice(c), "iou": compute_iou(c)})  # fmt: skip
    return rows


def score_subjects(subjects: Iterable[tuple[str, Callable[[], Subject]]], predict: Callable[[Subject], np.ndarray],
                   out: Path, scoring: Scoring, *, errors: tuple[type[BaseException], ...] = (),
                   failures: list[dict] | None = None, examples: bool = True, verbose: bool = True):  # fmt: skip
    """Score every subject and write the tables into ``out``; returns ``(per_patient, slice_rows, failures)``.

    Args:
        subjects: ``(patient, load)`` pairs; ``load()`` reads the subject. One that raises one of ``errors``
            becomes a row of ``failures.csv`` and the others are still scored.
        predict: a subject's lesion probabilities, ``(Z, H, W)`` on the grid of its truth; with
            ``scoring.uncertainty`` a pair ``(probabilities, uncertainty)``, and ``lesion_uncertainty.csv`` is
            written (:mod:`mslesion.evaluate.lesion_uncertainty`).
        failures: rows already known (patients rejected before loading), kept first.
        examples: write ``examples.npz`` (from the subjects that carry an image).
    """
    rows, brackets, slices, candidates, uncertain = [], [], [], [], []
    failures = list(failures or [])
    for patient, load in subjects:
        try:
            subject = load()
        except errors as exc:
            failures.append(failure_row(patient, exc))
            if verbose:
                print(f"  FAILED {patient}: {exc}")
            continue
        prob, unc = predict(subject) if scoring.uncertainty != "none" else (predict(subject), None)
        pred = scoring.post.apply(prob, subject.spacing_zhw_mm) if scoring.post is not None else prob > scoring.threshold
        truth = subject.truth
        row, lesions = evaluate_volume(truth, pred, subject.spacing_zhw_mm, scoring.connectivity,
                                       scoring.detection_fraction)  # fmt: skip
        per_slice = slice_rows(patient, truth, pred)
        lesion_slices = [r["slice_index"] for r in per_slice]
        rows.append({"patient": patient, "n_slices": int(truth.shape[0]),
                     "spacing_zhw_mm": "x".join(f"{s:g}" for s in subject.spacing_zhw_mm or ()), **row,
                     "slice_level_dice": compute_dice(confusion(truth[lesion_slices], pred[lesion_slices]))})  # fmt: skip
        if unc is not None:
            found = lesion_uncertainty_rows(patient, truth, pred, unc, subject.spacing_zhw_mm, scoring.connectivity)
            rows[-1]["mean_lesion_uncertainty"] = float(unc[pred].mean()) if pred.any() else math.nan
            uncertain += found
        brackets += bracket_rows(lesions, patient=patient)
        slices += per_slice
        if examples and subject.image is not None:
            # only the lesion slices are kept for the example figure (image as float16: it is only drawn)
            candidates += [(r["dice"], patient, k, subject.image[k].astype(np.float16), truth[k], pred[k])
                           for r, k in zip(per_slice, lesion_slices)]  # fmt: skip
        if scoring.write_masks and subject.write_mask is not None:
            subject.write_mask(pred, check_inside(out, out / "masks" / subject.mask_name))
        if verbose:
            print(f"  {patient}: Dice {row['dice']:.3f}, lesions {row['tp_lesions']}/{row['n_true_lesions']} found, "
                  f"{row['fp_lesions']} false")  # fmt: skip
    per_patient = write_tables(out, rows, brackets, slices, failures)
    if scoring.uncertainty != "none":
        save_csv(out / "lesion_uncertainty.csv", uncertain, columns=LESION_UNCERTAINTY_COLUMNS)
    if examples:
        save_examples(out / "examples.npz", candidates, scoring.examples_per_tertile)
    return per_patient, slices, failures


def write_tables(out: Path, rows: list[dict], bracket_table: list[dict], slice_table: list[dict],
                 failures: list[dict]):  # fmt: skip
    """Write per_patient.csv, lesions.csv, slices.csv and failures.csv; returns per_patient as a DataFrame."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    per_patient = pd.DataFrame(rows)
    save_csv(out / "per_patient.csv", per_patient)
    save_csv(out / "lesions.csv", bracket_table)
    save_csv(out / "slices.csv", slice_table)
    save_csv(out / "failures.csv", failures, columns=FAILURE_COLUMNS)
    return per_patient


def save_examples(path: Path, candidates: list, per_tertile: int) -> None:
    """Good / average / bad slices: the median slices of each Dice tertile, with image, truth and prediction."""
    arrays: dict[str, np.ndarray] = {}
    if candidates:
        order = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))
        thirds = np.array_split(np.arange(len(order)), 3)
        for name, idx in zip(("good", "average", "bad"), thirds):
            if not len(idx):
                continue
            mid = len(idx) // 2
            lo = max(0, mid - per_tertile // 2)
            for j, i in enumerate(idx[lo : lo + per_tertile]):
                dice, patient, k, image, truth, pred = order[i]
                key = f"{name}_{j}"
                arrays[f"{key}/image"] = image.astype(np.float32)
                arrays[f"{key}/truth"] = truth
                arrays[f"{key}/pred"] = pred
                arrays[f"{key}/info"] = np.array([patient, str(k), f"{dice:.6f}", name])
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
