"""Synthetic patients and cohorts written as NIfTI in the Muslim et al. (2022) layout, with ``cohort.json``."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from mslesion.data.synthetic.anatomy import LABEL_NAMES
from mslesion.data.synthetic.images import MODALITIES, SyntheticPatient, as_shape, as_spacing, generate_patient
from mslesion.fileio import atomic_path, save_json
from mslesion.outputs import output_dir

__all__ = ["write_patient", "generate_cohort", "GENERATOR", "GENERATOR_VERSION"]


GENERATOR = "mslesion.synthetic"


#: Bump whenever the same seed would give different arrays.
GENERATOR_VERSION = "1.0"


def _nifti(data: np.ndarray, affine: np.ndarray, spacing, descrip: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # scanner
    img.set_sform(affine, code=1)
    hdr = img.header
    hdr.set_data_dtype(data.dtype)
    hdr.set_xyzt_units(xyz="mm")
    hdr.set_zooms(tuple(float(s) for s in spacing))
    hdr["descrip"] = descrip.encode()[:79]
    return img


def write_patient(patient: SyntheticPatient, out_dir: Path, patient_id: str) -> Path:
    """Write one patient as ``out_dir/Patient-<id>/<id>-<Mod>.nii.gz`` + ``<id>-LesionSeg-<Mod>.nii.gz``.

    Every file is written to a temporary sibling and renamed into place, so a
    file exists whole or not at all. Existing files of the same names are replaced.

    Args:
        patient: from :func:`generate_patient`.
        out_dir: the cohort folder.
        patient_id: the id used in the folder and file names (``"7"``).

    Returns:
        The ``Patient-<id>`` folder.
    """
    folder = Path(out_dir) / f"Patient-{patient_id}"
    folder.mkdir(parents=True, exist_ok=True)
    for mod in MODALITIES:
        for name, data, what in (
            (f"{patient_id}-{mod}.nii.gz", patient.images[mod].astype(np.int16, copy=False), "image"),
            (f"{patient_id}-LesionSeg-{mod}.nii.gz", patient.masks[mod].astype(np.uint8, copy=False), "lesion mask"),
        ):
            img = _nifti(data, patient.affine, patient.spacing_mm, f"{GENERATOR} {GENERATOR_VERSION} {mod} {what}")
            with atomic_path(folder / name) as tmp:
                nib.save(img, tmp)
    return folder


def generate_cohort(
    out_dir: str | Path,
    n_patients: int = 10,
    seed: int = 0,
    shape: tuple[int, int, int] = (256, 256, 24),
    spacing_mm: tuple[float, float, float] = (0.9, 0.9, 5.0),
    start_id: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """Generate and write a cohort of synthetic patients, plus ``cohort.json``.

    Patient ids run ``start_id .. start_id + n_patients - 1``; patient ``<id>`` is
    ``generate_patient([seed, id], shape, spacing_mm)``, so it is the same whatever
    ``n_patients`` is. ``cohort.json`` describes the patients written by this call.

    Args:
        out_dir: cohort folder: new, empty, or (with ``overwrite``) a cohort this
            toolkit wrote, replaced whole once complete (:func:`mslesion.outputs.output_dir`).
        n_patients: how many patients.
        seed: cohort seed.
        shape: voxels along (x, y, z).
        spacing_mm: voxel size in mm.
        start_id: id of the first patient.
        overwrite: replace an existing synthetic cohort at ``out_dir``.

    Returns:
        The ``Patient-<id>`` folders, in id order.

    Raises:
        OutputError: ``out_dir`` holds files mslesion did not write, or a cohort
            and ``overwrite`` is False (checked before anything is written).
        ValueError: negative ``n_patients`` or ``start_id``, bad shape/spacing.
    """
    if n_patients < 0 or start_id < 0:
        raise ValueError(f"n_patients and start_id must be >= 0, got {n_patients} and {start_id}")
    out_dir = Path(out_dir)
    shape = as_shape(shape)
    spacing = as_spacing(spacing_mm)
    ids = [start_id + k for k in range(n_patients)]
    with output_dir(out_dir, "cohort", overwrite=overwrite) as tmp:
        summary = [_write_one(tmp, int(seed), pid, shape, spacing) for pid in ids]
        save_json(tmp / "cohort.json", {
            "generator": GENERATOR, "version": GENERATOR_VERSION, "n_patients": n_patients, "seed": int(seed),
            "start_id": start_id, "seeding": "numpy SeedSequence([seed, patient_id])", "shape": list(shape),
            "spacing_mm": list(spacing), "modalities": list(MODALITIES),
            "labels": {str(k): v for k, v in LABEL_NAMES.items()}, "patients": summary,
        })  # fmt: skip
    return [out_dir / f"Patient-{pid}" for pid in ids]


def _write_one(out_dir: Path, seed: int, pid: int, shape, spacing) -> dict:
    """Generate and write patient ``pid``; its ``cohort.json`` entry."""
    patient = generate_patient([seed, pid], shape, spacing)
    write_patient(patient, out_dir, str(pid))
    counts = {mod: int(patient.masks[mod].sum()) for mod in MODALITIES}
    return {
        "id": str(pid), "folder": f"Patient-{pid}", "n_lesions": len(patient.lesions),
        "n_black_holes": sum(les["black_hole"] for les in patient.lesions), "lesion_voxels": counts["Flair"],
        "lesion_volume_mm3": round(counts["Flair"] * float(np.prod(spacing)), 3), "mask_voxels": counts,
    }  # fmt: skip
