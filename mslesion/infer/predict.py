"""A trained run + new patients' images -> lesion mask files and a summary CSV (``mslesion predict``).

What a collaborator without the notebooks uses. Inputs may be one NIfTI FLAIR
file, a folder of NIfTI files (one patient each, single-modality runs), any
dataset folder :func:`mslesion.data.cohort.discover_cases` reads (masks not needed),
or a folder matched by ``{patient}`` patterns. Output folder (a new folder,
never inside or around the inputs or the run; replaced only with
``overwrite``, see :func:`mslesion.outputs.output_dir`)::

    <patient>_lesion_mask.nii.gz   uint8 {0,1}, the source image's affine and header
    <patient>/*_pred_mask.tif      for TIFF-slice datasets (LGG), one per slice
    lesions.csv                    per patient: lesion volume (mL), voxels, lesion count, largest lesion
    predict_config.json            run, checkpoint, threshold, connectivity, inputs, warnings per patient
    failures.csv                   patients that could not be read, and why

Outputs are never read back as inputs: ``*_lesion_mask.nii*`` files and
folders carrying an mslesion marker (other than a synthetic cohort's) are
skipped. When no patient can be predicted nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mslesion.data.cohort import Case, Discovery, check_patient_id, discover_cases, normalise_modality
from mslesion.data.loading import load_case
from mslesion.data.prep import PrepConfig
from mslesion.errors import (
    FAILURE_COLUMNS,
    BadPatientIdError,
    DataError,
    MissingModalityError,
    MslesionError,
    NoCasesFoundError,
    failure_row,
)
from mslesion.evaluate.lesions import label_lesions
from mslesion.fileio import save_csv, save_json
from mslesion.infer.inference import check_run, open_runs, predict_volume, write_mask
from mslesion.infer.tta import transforms
from mslesion.outputs import check_inside, check_output, output_dir, read_marker

__all__ = ["KIND", "PredictResult", "find_inputs", "is_mslesion_output", "predict"]

#: The output kind of a predictions folder (its :data:`mslesion.outputs.MARKER`).
KIND = "predictions"

_NIFTI = (".nii", ".nii.gz")
_MASK_NAMES = ("_lesion_mask.nii", "_lesion_mask.nii.gz")
# marked mslesion folders that hold source images; every other marked folder holds outputs
_IMAGE_KINDS = ("cohort",)
_COLUMNS = ["patient", "image", "lesion_voxels", "lesion_volume_ml", "lesions", "largest_lesion_voxels",
            "largest_lesion_ml", "mask"]  # fmt: skip


@dataclass
class PredictResult(os.PathLike):
    """What :func:`predict` did.

    ``os.fspath(result)`` (and ``str``) is ``out_dir/lesions.csv``, the path
    :func:`predict` returned before, so ``pd.read_csv(predict(...))`` still works.

    Attributes:
        out_dir: the output folder (not written when nothing was predicted).
        predicted: ids of the patients predicted, in input order.
        failures: ``{"patient", "error", "message"}`` per patient that failed.
        warnings: patient -> what was accepted but worth knowing (oblique affine).
    """

    out_dir: Path
    predicted: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def lesions_csv(self) -> Path:
        return self.out_dir / "lesions.csv"

    def __fspath__(self) -> str:
        return str(self.lesions_csv)

    def __str__(self) -> str:
        return str(self.lesions_csv)

    def summary(self) -> str:
        """``"predicted 3 patients, 1 failed"``."""
        n = len(self.predicted)
        return f"predicted {n} patient{'' if n == 1 else 's'}, {len(self.failures)} failed"


class _NothingPredicted(Exception):
    """Every patient failed: leave the output folder as it was."""


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem


def is_mslesion_output(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (a file under ``root``) is something mslesion wrote rather than a source image.

    True for ``*_lesion_mask.nii[.gz]`` and for files inside a folder, from
    ``root`` down, that carries the mslesion marker of an output kind.
    """
    path, root = Path(path), Path(root)
    if path.name.endswith(_MASK_NAMES):
        return True
    folder = path.parent
    while True:
        marker = read_marker(folder)
        if marker is not None and marker["kind"] not in _IMAGE_KINDS:
            return True
        if folder == root or folder == folder.parent or root not in folder.parents:
            return False
        folder = folder.parent


def _output_folder_around(folder: Path) -> tuple[Path, str] | None:
    """The nearest folder from ``folder`` up that mslesion marked as an output, with its kind; else None."""
    for f in (folder, *folder.resolve().parents):
        marker = read_marker(f)
        if marker is not None and marker["kind"] not in _IMAGE_KINDS:
            return f, marker["kind"]
    return None


def _case_files(case: Case) -> list[Path]:
    return list(case.images.values()) + [p for p, _ in case.slice_files]


def _single_modality(modalities: tuple[str, ...], path: Path) -> None:
    if len(modalities) > 1:
        raise MissingModalityError(
            path, f"the run takes {len(modalities)} modalities {list(modalities)} but plain NIfTI files give one "
            "image per patient; give a dataset folder, or one --image-pattern per modality "
            f"(e.g. --image-pattern {modalities[0]}='{{patient}}/{modalities[0].upper()}.nii.gz' "
            f"--image-pattern {modalities[1]}='{{patient}}/{modalities[1].upper()}.nii.gz')",
        )  # fmt: skip


def _file_cases(files: list[Path], modality: str) -> Discovery:
    """One case per NIfTI file, id from the file name; unusable or repeated ids become failure rows."""
    counts: dict[str, int] = {}
    for f in files:
        counts[_stem(f)] = counts.get(_stem(f), 0) + 1
    cases, rejected = [], []
    for f in files:
        pid = _stem(f)
        try:
            check_patient_id(pid, f)
            if counts[pid] > 1:
                raise BadPatientIdError(f, f"patient id {pid!r} comes from {counts[pid]} files; "
                                           "rename them so each patient has one")  # fmt: skip
        except BadPatientIdError as exc:
            rejected.append(failure_row(pid, exc))
            continue
        cases.append(Case(pid, {modality: f}, {}, "file"))
    return Discovery(cases, "file", [], rejected)


def find_inputs(
    path: str | Path,
    modalities: tuple[str, ...] = ("flair",),
    image_patterns: dict[str, str] | None = None,
    layout: str = "auto",
) -> Discovery:
    """The patients to predict under ``path`` (see module doc for what is accepted).

    Returns:
        The cases, and in ``rejected`` failure rows of patients whose id cannot
        name an output file (the others are still predicted).

    Raises:
        NoCasesFoundError: nothing usable at ``path`` (or only mslesion outputs).
        MissingModalityError: plain NIfTI files given to a multi-modality run.
    """
    path = Path(path)
    first = normalise_modality(modalities[0])
    if not path.exists():
        raise NoCasesFoundError(path, "no such file or folder; give a FLAIR .nii.gz, a folder of them or a "
                                      "dataset folder")  # fmt: skip
    if path.is_file():
        if not path.name.endswith(_NIFTI):
            raise NoCasesFoundError(path, "not a NIfTI file (.nii or .nii.gz); give a FLAIR image, a folder of "
                                          "them or a dataset folder")  # fmt: skip
        if path.name.endswith(_MASK_NAMES):
            raise NoCasesFoundError(path, "is a lesion mask mslesion wrote, not an image; give the patient's FLAIR")
    around = _output_folder_around(path.parent if path.is_file() else path)
    if around is not None:
        where = "is" if around[0].resolve() == path.resolve() else f"lies in {around[0]},"
        raise NoCasesFoundError(path, f"{where} an mslesion {around[1]} folder (outputs, not images); "
                                      "give the folder of the patients' images")  # fmt: skip
    if path.is_file():
        _single_modality(modalities, path)
        return _file_cases([path], first)
    for modality, pattern in (image_patterns or {}).items():
        if "{patient}" not in pattern:
            raise DataError(None, f"--image-pattern {modality}={pattern}: has no {{patient}} placeholder; write "
                                  f"where the patient id goes, e.g. {modality}='{{patient}}/FLAIR.nii.gz'")  # fmt: skip
    try:
        if image_patterns:
            found = discover_cases(path, "pattern", image_patterns, None)
        else:
            found = discover_cases(path, layout)
    except NoCasesFoundError:
        if image_patterns or layout != "auto":
            raise
        found = None
    if found is not None:
        cases = [c for c in found.cases if not any(is_mslesion_output(f, path) for f in _case_files(c))]
        if not cases and not found.rejected:
            raise NoCasesFoundError(path, "holds only files mslesion wrote (predicted masks, outputs); "
                                          "give the folder of the patients' images")  # fmt: skip
        found.cases = cases
        return found
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_NIFTI) and not p.name.startswith("."))
    images = [p for p in files if not is_mslesion_output(p, path)]
    if not images:
        skipped = f" ({len(files)} lesion masks mslesion wrote were skipped)" if files else ""
        raise NoCasesFoundError(path, f"no NIfTI images and no known dataset layout{skipped}; give a dataset folder, "
                                      "or patterns such as --image-pattern flair='{patient}/FLAIR.nii.gz'")  # fmt: skip
    _single_modality(modalities, path)
    return _file_cases(images, first)


def predict(
    run_dir: str | Path,
    inputs: str | Path,
    out_dir: str | Path,
    checkpoint: str = "model",
    threshold: float = 0.5,
    connectivity: int = 26,
    image_patterns: dict[str, str] | None = None,
    layout: str = "auto",
    batch_size: int = 16,
    verbose: bool = True,
    overwrite: bool = False,
    tta: str = "none",
) -> PredictResult:
    """Segment every patient under ``inputs`` with a trained run into the new folder ``out_dir``.

    The run, the inputs and ``out_dir`` are checked before the model is loaded
    or anything is written. A patient that cannot be read is a failure row and
    the others are still predicted; when none can be, nothing is written.

    Args:
        run_dir: a run folder, or several: one ensemble (their probabilities averaged).
        overwrite: replace a predictions folder mslesion wrote at ``out_dir`` before.
        tta: test-time augmentation (:data:`mslesion.infer.tta.TTA_MODES`).

    Returns:
        A :class:`PredictResult`; ``os.fspath`` of it is ``out_dir/lesions.csv``.

    Raises:
        RunNotFoundError, DamagedCheckpointError: the run cannot be used.
        NoCasesFoundError, MissingModalityError: nothing to predict at ``inputs``.
        OutputError: ``out_dir`` overlaps the inputs or the run, or holds something else.
    """
    run_dirs = [Path(run_dir)] if isinstance(run_dir, (str, os.PathLike)) else [Path(r) for r in run_dir]
    run_dir, inputs, out_dir = run_dirs[0], Path(inputs), Path(out_dir)
    # cheap checks first: a bad input or output must not cost a model load, and nothing is written yet
    transforms(tta)
    _, record, _ = check_run(run_dir, checkpoint)
    modalities = tuple(PrepConfig.from_dict(record).modalities)
    found = find_inputs(inputs, modalities, image_patterns, layout)
    check_output(out_dir, KIND, overwrite=overwrite, inputs=[inputs, *run_dirs])
    members = open_runs(run_dirs, checkpoint)
    run = members[0]
    result = PredictResult(out_dir, failures=list(found.rejected))
    if verbose:
        for row in found.rejected:
            print(f"  FAILED {row['patient']}: {row['message']}")
    try:
        with output_dir(out_dir, KIND, overwrite=overwrite, inputs=[inputs, *run_dirs]) as tmp:
            rows = []
            for case in found.cases:
                row = _predict_case(members, case, tmp, out_dir, threshold, connectivity, batch_size, result,
                                    verbose, tta)  # fmt: skip
                if row is not None:
                    rows.append(row)
            if not rows:
                raise _NothingPredicted
            _write_tables(tmp, rows, result, run, run_dir, inputs, checkpoint, threshold, connectivity,
                          {"members": [str(r.resolve()) for r in run_dirs], "tta": tta})  # fmt: skip
    except _NothingPredicted:
        pass  # every patient failed: out_dir is left as it was, the result says why
    return result


def _predict_case(members: list, case: Case, tmp: Path, out_dir: Path, threshold: float, connectivity: int,
                  batch_size: int, result: PredictResult, verbose: bool, tta: str) -> dict | None:  # fmt: skip
    """Predict one patient into ``tmp``; its lesions.csv row, or None after recording a failure."""
    run = members[0]
    try:
        loaded = load_case(case, run.prep.modalities, with_mask=False)
        name = f"{loaded.patient_id}_lesion_mask.nii.gz" if loaded.affine is not None else loaded.patient_id
        target = check_inside(tmp, tmp / name)
    except MslesionError as exc:
        result.failures.append(failure_row(case.patient_id, exc))
        if verbose:
            print(f"  FAILED {case.patient_id}: {exc}")
        return None
    mask = predict_volume(members, loaded, batch_size, tta) > threshold
    written = write_mask(mask, loaded, target)
    labels, n = label_lesions(mask, connectivity)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, np.int64)
    voxel_ml = float(np.prod(loaded.spacing_zhw_mm)) / 1000 if loaded.spacing_zhw_mm else float("nan")
    # paths as they will be once the folder is swapped in, not the temporary ones
    final = out_dir / Path(os.path.relpath(written[0] if len(written) == 1 else target, tmp))
    result.predicted.append(loaded.patient_id)
    if loaded.warnings:
        result.warnings[loaded.patient_id] = list(loaded.warnings)
    row = {
        "patient": loaded.patient_id, "image": str(loaded.image_files[0]),
        "lesion_voxels": int(mask.sum()), "lesion_volume_ml": float(mask.sum()) * voxel_ml,
        "lesions": int(n), "largest_lesion_voxels": int(sizes.max()) if n else 0,
        "largest_lesion_ml": float(sizes.max()) * voxel_ml if n else 0.0, "mask": str(final),
    }  # fmt: skip
    if verbose:
        print(f"  {loaded.patient_id}: {n} lesions, {row['lesion_volume_ml']:.2f} mL -> {row['mask']}")
    return row


def _write_tables(tmp: Path, rows: list[dict], result: PredictResult, run, run_dir: Path, inputs: Path,
                  checkpoint: str, threshold: float, connectivity: int, extra: dict) -> None:  # fmt: skip
    import pandas as pd

    table = pd.DataFrame(rows, columns=_COLUMNS)
    save_csv(tmp / "lesions.csv", table)
    save_csv(tmp / "failures.csv", result.failures, columns=FAILURE_COLUMNS)
    save_json(tmp / "predict_config.json", {
        "run": str(run_dir.resolve()), "checkpoint": checkpoint, "threshold": threshold,
        "connectivity": connectivity, "inputs": str(inputs.resolve()), "patients": result.predicted,
        "modalities": list(run.prep.modalities), "warnings": result.warnings, **extra,
    })  # fmt: skip
