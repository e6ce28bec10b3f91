"""Score a folder of predicted masks against a folder of reference masks, no model needed (``mslesion score``).

As nnU-Net's ``compute_metrics_on_folder``: any tool's predictions are scored exactly as mslesion
scores its own, by the same per-patient loop (:mod:`mslesion.evaluate.loop`). Both folders hold
NIfTI masks (``.nii`` / ``.nii.gz``). A reference ``<name>.nii.gz`` is paired with the prediction
of the same file name, or with ``<name>_pred.nii.gz`` (what ``mslesion predict`` and
``mslesion evaluate --write-masks`` write). A prediction may be binary (0/1, 0/255) or a
probability map in [0, 1], cut at ``threshold``. Each pair must share its grid (shape, and affine
within 0.1 mm); metrics use the reference's voxel size. A pair that cannot be read or does not
match, and a reference without a prediction, become rows of ``failures.csv``; the other patients
are still scored. Output: per_patient.csv, lesions.csv, slices.csv, failures.csv, summary.json.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from mslesion.data.volumes import (
    axial_spacing_mm,
    binarise_mask,
    check_same_grid,
    load_mask,
    load_nifti,
    to_axial_stack,
)
from mslesion.errors import MissingMaskError, MslesionError, NoCasesFoundError
from mslesion.evaluate.loop import Scoring, Subject, score_subjects
from mslesion.evaluate.summary import describe_trust, evaluation_summary
from mslesion.fileio import save_json
from mslesion.outputs import output_dir

__all__ = ["NIFTI_SUFFIXES", "pair_masks", "score_folder"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _stem(path: Path) -> str | None:
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _masks(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise NoCasesFoundError(folder, "no such folder (expected a folder of NIfTI masks)")
    return {stem: p for p in sorted(folder.iterdir()) if p.is_file() and (stem := _stem(p)) is not None}


def pair_masks(predictions: str | Path, references: str | Path) -> tuple[list[tuple[str, Path, Path | None]],
                                                                         list[str]]:  # fmt: skip
    """``([(patient, reference, prediction or None)], unmatched prediction file names)``, sorted by patient."""
    refs, preds = _masks(Path(references)), _masks(Path(predictions))
    if not refs:
        raise NoCasesFoundError(references, "holds no NIfTI mask (.nii or .nii.gz) to score against")
    pairs, used = [], set()
    for patient, ref in refs.items():
        pred = next((preds[k] for k in (patient, f"{patient}_pred") if k in preds), None)
        if pred is not None:
            used.add(pred.name)
        pairs.append((patient, ref, pred))
    return pairs, sorted(p.name for p in preds.values() if p.name not in used)


def _subject(patient: str, ref_path: Path, pred_path: Path | None) -> Subject:
    if pred_path is None:
        raise MissingMaskError(ref_path, f"no prediction {patient}.nii.gz or {patient}_pred.nii.gz for this reference")
    ref = load_mask(ref_path, allow_empty=True)
    pred = load_nifti(pred_path)
    check_same_grid(ref, pred, "prediction")
    prob = pred.data.astype(np.float32)
    if prob.size and (prob.min() < 0 or prob.max() > 1):  # 0/255 masks; anything else is refused there
        prob = binarise_mask(prob, pred.path, allow_empty=True).astype(np.float32)
    return Subject(patient, to_axial_stack(ref.data, ref.affine), axial_spacing_mm(ref.affine),
                   data=to_axial_stack(prob, ref.affine))  # fmt: skip


def score_folder(predictions: str | Path, references: str | Path, out_dir: str | Path, *, threshold: float = 0.5,
                 connectivity: int = 26, detection_fraction: float = 0.0, overwrite: bool = False,
                 verbose: bool = True) -> Path:  # fmt: skip
    """Score every reference mask in ``references`` against its prediction in ``predictions``; returns ``out_dir``.

    The output folder is written whole (:func:`mslesion.outputs.output_dir`): an earlier one is replaced only
    with ``overwrite``, and it may not overlap either input folder.
    """
    predictions, references = Path(predictions), Path(references)
    pairs, unmatched = pair_masks(predictions, references)
    scoring = Scoring(threshold=threshold, connectivity=connectivity, detection_fraction=detection_fraction)
    subjects = [(patient, lambda a=(patient, ref, pred): _subject(*a)) for patient, ref, pred in pairs]
    with output_dir(out_dir, "evaluation", overwrite=overwrite, inputs=[predictions, references]) as tmp:
        per_patient, slices, failures = score_subjects(
            subjects, lambda s: s.data, tmp, scoring, errors=(MslesionError,), examples=False, verbose=verbose)
        origin = {"predictions": str(predictions.resolve()), "references": str(references.resolve()),
                  "unmatched_predictions": unmatched}  # fmt: skip
        label = f"reference masks in {references.resolve()}"
        summary = evaluation_summary(origin, asdict(scoring), label, per_patient, slices, failures)
        save_json(tmp / "summary.json", summary)
    if verbose:
        print(f"  {describe_trust(summary['trust'])}")
        if unmatched:
            print(f"  {len(unmatched)} prediction(s) without a reference, not scored: {', '.join(unmatched[:3])}"
                  + (" ..." if len(unmatched) > 3 else ""))  # fmt: skip
    return Path(out_dir)


