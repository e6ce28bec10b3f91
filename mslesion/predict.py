"""A trained run + new patients' images -> lesion mask files and a summary CSV (``mslesion predict``).

What a collaborator without the notebooks uses. Inputs may be one NIfTI FLAIR
file, a folder of NIfTI files (one patient each, single-modality runs), any
dataset folder :func:`mslesion.cohort.discover_cases` reads (masks not needed),
or a folder matched by ``{patient}`` patterns. Output folder::

    <patient>_lesion_mask.nii.gz   uint8 {0,1}, the source image's affine and header
    <patient>/*_pred_mask.tif      for TIFF-slice datasets (LGG), one per slice
    lesions.csv                    per patient: lesion volume (mL), voxels, lesion count, largest lesion
    predict_config.json            run, checkpoint, threshold, connectivity, inputs
    failures.csv                   patients that could not be read, and why
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cohort import Case, discover_cases, normalise_modality
from .errors import MslesionError, NoCasesFoundError
from .fileio import save_json, save_text
from .inference import open_run, predict_volume, write_mask
from .lesions import label_lesions
from .loading import load_case

__all__ = ["find_inputs", "predict"]

_NIFTI = (".nii", ".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem


def find_inputs(
    path: str | Path,
    modalities: tuple[str, ...] = ("flair",),
    image_patterns: dict[str, str] | None = None,
    layout: str = "auto",
) -> list[Case]:
    """The patients to predict under ``path`` (see module doc for what is accepted).

    Raises:
        NoCasesFoundError: nothing usable at ``path``.
        ValueError: plain NIfTI files given to a multi-modality run.
    """
    path = Path(path)
    first = normalise_modality(modalities[0])
    if path.is_file():
        if not path.name.endswith(_NIFTI):
            raise NoCasesFoundError(path, "not a NIfTI file (.nii or .nii.gz)")
        _single_modality(modalities, path)
        return [Case(_stem(path), {first: path}, {}, "file")]
    if image_patterns:
        return discover_cases(path, "pattern", image_patterns, None).cases
    try:
        return discover_cases(path, layout).cases
    except NoCasesFoundError:
        if layout != "auto" or not path.is_dir():
            raise
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_NIFTI))
    if not files:
        raise NoCasesFoundError(path, "no NIfTI files and no known dataset layout; pass patterns with {patient}")
    _single_modality(modalities, path)
    return [Case(_stem(p), {first: p}, {}, "file") for p in files]


def _single_modality(modalities: tuple[str, ...], path: Path) -> None:
    if len(modalities) > 1:
        raise ValueError(
            f"{path}: the run takes {list(modalities)} as input; give a dataset folder or patterns "
            "(--pattern flair=... --pattern t1=...) so every modality of a patient is found"
        )


def predict(
    run_dir: str | Path,
    inputs: str | Path,
    out_dir: str | Path,
    checkpoint: str = "best",
    threshold: float = 0.5,
    connectivity: int = 26,
    image_patterns: dict[str, str] | None = None,
    layout: str = "auto",
    batch_size: int = 16,
    verbose: bool = True,
) -> Path:
    """Segment every patient under ``inputs`` with a trained run; returns ``out_dir/lesions.csv``."""
    import pandas as pd

    run = open_run(run_dir, checkpoint)
    cases = find_inputs(inputs, run.prep.modalities, image_patterns, layout)
    out_dir = Path(out_dir)
    rows, failures = [], []
    for case in cases:
        try:
            loaded = load_case(case, run.prep.modalities, with_mask=False)
        except MslesionError as exc:
            failures.append({"patient": case.patient_id, "error": type(exc).__name__, "message": str(exc)})
            if verbose:
                print(f"  FAILED {case.patient_id}: {exc}")
            continue
        mask = predict_volume(run, loaded, batch_size) > threshold
        target = out_dir / (f"{loaded.patient_id}_lesion_mask.nii.gz" if loaded.affine is not None else loaded.patient_id)
        written = write_mask(mask, loaded, target)
        labels, n = label_lesions(mask, connectivity)
        sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, np.int64)
        voxel_ml = float(np.prod(loaded.spacing_zhw_mm)) / 1000 if loaded.spacing_zhw_mm else float("nan")
        rows.append({
            "patient": loaded.patient_id, "image": str(loaded.image_files[0]),
            "lesion_voxels": int(mask.sum()), "lesion_volume_ml": float(mask.sum()) * voxel_ml,
            "lesions": int(n), "largest_lesion_voxels": int(sizes.max()) if n else 0,
            "largest_lesion_ml": float(sizes.max()) * voxel_ml if n else 0.0,
            "mask": str(written[0] if len(written) == 1 else target),
        })  # fmt: skip
        if verbose:
            print(f"  {loaded.patient_id}: {n} lesions, {rows[-1]['lesion_volume_ml']:.2f} mL -> {rows[-1]['mask']}")
    table = pd.DataFrame(rows, columns=["patient", "image", "lesion_voxels", "lesion_volume_ml", "lesions",
                                        "largest_lesion_voxels", "largest_lesion_ml", "mask"])  # fmt: skip
    save_text(out_dir / "lesions.csv", table.to_csv(index=False, lineterminator="\n", float_format="%.6g"))
    save_text(out_dir / "failures.csv", pd.DataFrame(failures, columns=["patient", "error", "message"])
              .to_csv(index=False, lineterminator="\n"))  # fmt: skip
    save_json(out_dir / "predict_config.json", {
        "run": str(Path(run_dir).resolve()), "checkpoint": checkpoint, "threshold": threshold,
        "connectivity": connectivity, "inputs": str(Path(inputs).resolve()), "patients": [r["patient"] for r in rows],
        "modalities": list(run.prep.modalities),
    })  # fmt: skip
    return out_dir / "lesions.csv"
