"""What ``mslesion predict`` reads: a cohort folder, a folder of NIfTI files or single files, as patients; and how
to recognise a folder mslesion wrote (so its own outputs are never read back as inputs)."""

from __future__ import annotations

from pathlib import Path

from mslesion.data.case import Case, Discovery, check_patient_id, normalise_modality
from mslesion.data.cohort import discover_cases
from mslesion.errors import BadPatientIdError, DataError, MissingModalityError, NoCasesFoundError, failure_row
from mslesion.outputs import read_marker

__all__ = ["find_inputs", "is_mslesion_output", "MASK_NAMES"]


_NIFTI = (".nii", ".nii.gz")


MASK_NAMES = ("_lesion_mask.nii", "_lesion_mask.nii.gz")


# marked mslesion folders that hold source images; every other marked folder holds outputs
_IMAGE_KINDS = ("cohort",)


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem


def is_mslesion_output(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (a file under ``root``) is something mslesion wrote rather than a source image.

    True for ``*_lesion_mask.nii[.gz]`` and for files inside a folder, from
    ``root`` down, that carries the mslesion marker of an output kind.
    """
    path, root = Path(path), Path(root)
    if path.name.endswith(MASK_NAMES):
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
        cases.append(Case(pid, {modality: f}, {}, "file", root=f.parent))
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
        if path.name.endswith(MASK_NAMES):
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
