"""A patient's files as found on disk (:class:`Case`), what a discovery found (:class:`Discovery`), and the
rules for patient ids and modality names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mslesion.errors import BadPatientIdError, MissingModalityError

__all__ = ["Case", "Discovery", "normalise_modality", "check_patient_id", "MAX_ID_LENGTH", "strip_nifti", "natural_key"]


_NIFTI_SUFFIXES = (".nii.gz", ".nii")


MAX_ID_LENGTH = 128


@dataclass
class Case:
    """One patient: modality -> image file, modality -> mask file.

    Attributes:
        patient_id: the id as the dataset spells it (``"7"``, ``"patient07"``).
        images: canonical modality name (``flair``, ``t1``...) -> file.
        masks: modality whose mask it is -> file (Ljubljana: the same file for all).
        layout: which layout found it.
        slice_files: for 2D-slice datasets (``lgg``), (image, mask or None) per
            slice in slice-number order.
        root: the dataset folder it was discovered under, against which per-case
            patterns given at load time (the brain mask's) are resolved; None if unknown.
    """

    patient_id: str
    images: dict[str, Path]
    masks: dict[str, Path]
    layout: str
    slice_files: list[tuple[Path, Path | None]] = field(default_factory=list)
    root: Path | None = None

    def image(self, modality: str) -> Path:
        modality = normalise_modality(modality)
        if modality not in self.images:
            raise MissingModalityError(
                self.folder, f"patient {self.patient_id} has no {modality} image (has: {sorted(self.images) or 'none'})"
            )
        return self.images[modality]

    def mask(self, modality: str) -> Path:
        modality = normalise_modality(modality)
        if modality not in self.masks:
            raise MissingModalityError(
                self.folder, f"patient {self.patient_id} has no {modality} lesion mask (has: {sorted(self.masks) or 'none'})"
            )
        return self.masks[modality]

    @property
    def folder(self) -> Path:
        files = list(self.images.values()) + list(self.masks.values()) + [p for p, _ in self.slice_files]
        return files[0].parent if files else Path(".")


@dataclass
class Discovery:
    """What :func:`discover_cases` found: the cases, plus files it could not place."""

    cases: list[Case]
    layout: str
    unmatched: list[Path] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # failure rows of cases whose id is unusable


def check_patient_id(patient_id: str, source: str | Path | None = None) -> str:
    """``patient_id`` if it can name a folder or file inside an output folder, else :class:`BadPatientIdError`.

    Ids come from folder and file names, so they are checked once here and every
    output path built from them stays inside its folder: no ``.``/``..``, no path
    separator or NUL or control character, no leading ``-`` or ``.``, at most
    :data:`MAX_ID_LENGTH` characters.
    """
    pid = str(patient_id)
    problem = None
    if not pid:
        problem = "is empty"
    elif pid in (".", ".."):
        problem = "is a relative folder name"
    elif any(c in pid for c in "/\\\0") or any(ord(c) < 32 for c in pid):
        problem = "contains a path separator or control character"
    elif pid[0] in "-.":
        problem = f"starts with {pid[0]!r}"
    elif len(pid) > MAX_ID_LENGTH:
        problem = f"is longer than {MAX_ID_LENGTH} characters"
    if problem:
        raise BadPatientIdError(source, f"patient id {pid!r} {problem}; rename it to letters, digits, '-' or '_'")
    return pid


def normalise_modality(name: str) -> str:
    """``"FLAIR"``, ``"Flair"``, ``"flair"`` -> ``"flair"``."""
    return name.strip().lower().replace("-", "").replace("_", "")


def strip_nifti(name: str) -> str | None:
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]
