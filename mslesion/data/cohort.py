"""Find each patient's image and mask files in a dataset folder.

Three layouts are understood:

* ``muslim``: the Muslim et al. (2022) MS dataset (the backbone report) and our synthetic
  cohort: ``Patient-<id>/<id>-Flair.nii[.gz]``, ``<id>-T1``, ``<id>-T2`` and
  per-modality masks ``<id>-LesionSeg-Flair`` etc.
* ``ljubljana``: the Ljubljana MS database: a folder per patient holding
  ``FLAIR_*.nii.gz``, ``T1_*``, ``T1POST_*``, ``T2_*`` and one consensus mask
  ``GOLD_STANDARD_*`` shared by all modalities.
* ``lgg``: the LGG FLAIR dataset (the LGG encoder comparison): a folder per patient of 2D
  ``<case>_<n>.tif`` slices with ``<case>_<n>_mask.tif`` masks.
* ``pattern``: any layout, given as path patterns relative to the root with a
  ``{patient}`` placeholder, e.g. ``sub-{patient}/anat/sub-{patient}_FLAIR.nii.gz``.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

from mslesion.errors import BadPatientIdError, MissingModalityError, NoCasesFoundError, failure_row

__all__ = ["Case", "Discovery", "discover_cases", "LAYOUTS", "normalise_modality", "check_patient_id", "MAX_ID_LENGTH"]

LAYOUTS = ("auto", "muslim", "ljubljana", "lgg", "pattern")

# Canonical modality names -> spelling in each layout's file names.
_MUSLIM_NAMES = {"flair": "Flair", "t1": "T1", "t2": "T2"}
_LJUBLJANA_NAMES = {"flair": "FLAIR", "t1": "T1", "t1post": "T1POST", "t2": "T2"}
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
    """

    patient_id: str
    images: dict[str, Path]
    masks: dict[str, Path]
    layout: str
    slice_files: list[tuple[Path, Path | None]] = field(default_factory=list)

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


def _screen(found: Discovery) -> Discovery:
    """Move cases with an unusable or duplicated id from ``cases`` to ``rejected`` (the batch goes on)."""
    keep, counts = [], {}
    for case in found.cases:
        counts[case.patient_id] = counts.get(case.patient_id, 0) + 1
    for case in found.cases:
        try:
            check_patient_id(case.patient_id, case.folder)
            if counts[case.patient_id] > 1:
                raise BadPatientIdError(case.folder, f"patient id {case.patient_id!r} is found "
                                                     f"{counts[case.patient_id]} times; ids must be unique")  # fmt: skip
        except BadPatientIdError as exc:
            found.rejected.append(failure_row(case.patient_id, exc))
            continue
        keep.append(case)
    found.cases = keep
    return found


def normalise_modality(name: str) -> str:
    """``"FLAIR"``, ``"Flair"``, ``"flair"`` -> ``"flair"``."""
    return name.strip().lower().replace("-", "").replace("_", "")


def _strip_nifti(name: str) -> str | None:
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _is_ljubljana_folder(folder: Path) -> bool:
    return any(folder.glob("GOLD_STANDARD*.nii*")) and any(folder.glob("FLAIR_*.nii*"))


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its file names."""
    if any(root.glob("Patient-*/*-LesionSeg-*.nii*")) or any(root.glob("*-LesionSeg-*.nii*")):
        return "muslim"
    if any(root.glob("*_mask.tif")) or any(root.glob("*/*_mask.tif")):
        return "lgg"
    if _is_ljubljana_folder(root) or any(_is_ljubljana_folder(d) for d in root.iterdir() if d.is_dir()):
        return "ljubljana"
    raise NoCasesFoundError(
        root,
        "no known layout found (expected Patient-<id>/<id>-Flair.nii.gz + <id>-LesionSeg-Flair.nii.gz, "
        "or FLAIR_*.nii.gz + GOLD_STANDARD_*.nii.gz); pass image/mask patterns with a {patient} placeholder",
    )


def _discover_muslim(root: Path) -> Discovery:
    folders = sorted((d for d in root.glob("Patient-*") if d.is_dir()), key=lambda d: _natural_key(d.name))
    if not folders and any(root.glob("*-LesionSeg-*.nii*")):
        folders = [root]  # root is one patient's folder
    file_re = re.compile(r"^(?P<pid>[^-]+)-(?P<seg>LesionSeg-)?(?P<mod>[A-Za-z0-9]+)$")
    known = {v.lower(): k for k, v in _MUSLIM_NAMES.items()}
    cases, unmatched = [], []
    for folder in folders:
        pid = folder.name.removeprefix("Patient-") if folder is not root else None
        images: dict[str, Path] = {}
        masks: dict[str, Path] = {}
        for f in sorted(folder.iterdir()):
            stem = _strip_nifti(f.name)
            m = file_re.match(stem) if stem else None
            if not m or m["mod"].lower() not in known or (pid is not None and m["pid"] != pid):
                if f.is_file() and not f.name.startswith("."):
                    unmatched.append(f)
                continue
            pid = pid or m["pid"]
            (masks if m["seg"] else images)[known[m["mod"].lower()]] = f
        if images or masks:
            cases.append(Case(str(pid), images, masks, "muslim"))
    return Discovery(cases, "muslim", unmatched)


def _discover_ljubljana(root: Path) -> Discovery:
    folders = [root] if _is_ljubljana_folder(root) else sorted(
        (d for d in root.iterdir() if d.is_dir() and _is_ljubljana_folder(d)), key=lambda d: _natural_key(d.name)
    )
    cases, unmatched = [], []
    for folder in folders:
        m = re.search(r"patient[_-]?(\d+)", folder.name, re.IGNORECASE)
        pid = f"patient{m[1]}" if m else folder.name
        images, masks = {}, {}
        for f in sorted(folder.iterdir()):
            stem = _strip_nifti(f.name)
            prefix = stem.split("_", 1)[0] if stem else ""
            if stem and prefix == "GOLD":
                masks["*"] = f
            elif stem and prefix.lower() in _LJUBLJANA_NAMES:
                images[prefix.lower()] = f
            elif f.is_file() and stem:
                unmatched.append(f)
        if "*" in masks:
            gold = masks.pop("*")
            masks = {mod: gold for mod in (images or {"flair": None})}
        cases.append(Case(pid, images, masks, "ljubljana"))
    return Discovery(cases, "ljubljana", unmatched)


def _discover_lgg(root: Path) -> Discovery:
    folders = [root] if any(root.glob("*_mask.tif")) else sorted(
        (d for d in root.iterdir() if d.is_dir() and any(d.glob("*.tif"))), key=lambda d: _natural_key(d.name)
    )
    slice_re = re.compile(r"^(?P<case>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)
    cases, unmatched = [], []
    for folder in folders:
        images: dict[int, Path] = {}
        masks: dict[int, Path] = {}
        for f in sorted(folder.iterdir()):
            m = slice_re.match(f.name)
            if not m:
                if f.is_file() and not f.name.startswith("."):
                    unmatched.append(f)
                continue
            (masks if m["mask"] else images)[int(m["n"])] = f
        unmatched.extend(masks[n] for n in sorted(set(masks) - set(images)))
        slices = [(images[n], masks.get(n)) for n in sorted(images)]
        if slices:
            cases.append(Case(folder.name, {}, {}, "lgg", slices))
    return Discovery(cases, "lgg", unmatched)


def _pattern_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{patient\})", pattern)
    seen = False
    out = []
    for part in parts:
        if part == "{patient}":
            out.append(r"(?P=patient)" if seen else r"(?P<patient>[^/]+?)")
            seen = True
        else:
            out.append(re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]"))
    if not seen:
        raise ValueError(f"pattern {pattern!r} has no {{patient}} placeholder")
    return re.compile("^" + "".join(out) + "$")


def _discover_patterns(root: Path, images: dict[str, str], masks: dict[str, str]) -> Discovery:
    found: dict[str, Case] = {}
    for kind, patterns in (("image", images), ("mask", masks)):
        for modality, pattern in patterns.items():
            rx = _pattern_regex(pattern)
            for path in sorted(glob.glob(str(root / pattern.replace("{patient}", "*")), recursive=True)):
                rel = Path(path).relative_to(root).as_posix()
                m = rx.match(rel)
                if not m:
                    continue
                case = found.setdefault(m["patient"], Case(m["patient"], {}, {}, "pattern"))
                (case.images if kind == "image" else case.masks)[modality] = Path(path)
    cases = sorted(found.values(), key=lambda c: _natural_key(c.patient_id))
    return Discovery(cases, "pattern", [])


def discover_cases(
    root: str | Path,
    layout: str = "auto",
    image_patterns: dict[str, str] | None = None,
    mask_patterns: dict[str, str] | None = None,
) -> Discovery:
    """List the patients under ``root``.

    Args:
        root: dataset folder (or one patient's folder).
        layout: one of :data:`LAYOUTS`; ``auto`` picks ``pattern`` when patterns are
            given, else detects ``muslim`` or ``ljubljana`` from the file names.
        image_patterns: modality -> pattern with ``{patient}`` (``*`` allowed), for
            the ``pattern`` layout, e.g. ``{"flair": "{patient}/flair.nii.gz"}``.
        mask_patterns: modality -> pattern for lesion masks.

    Returns:
        The cases, naturally sorted by id, files that matched no naming rule, and
        cases refused for their id (:func:`check_patient_id`, duplicates) as
        failure rows in ``rejected``.
        Missing modalities are not errors here; asking a :class:`Case` for one is.

    Raises:
        NoCasesFoundError: ``root`` is missing or nothing in it matches.
    """
    root = Path(root)
    if not root.is_dir():
        raise NoCasesFoundError(root, "dataset folder does not exist")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {LAYOUTS}")
    if image_patterns or mask_patterns:
        if layout not in ("auto", "pattern"):
            raise ValueError("image/mask patterns only apply to layout='pattern'")
        layout = "pattern"
    elif layout == "pattern":
        raise ValueError("layout='pattern' needs image_patterns and mask_patterns")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "muslim":
        found = _discover_muslim(root)
    elif layout == "ljubljana":
        found = _discover_ljubljana(root)
    elif layout == "lgg":
        found = _discover_lgg(root)
    else:
        found = _discover_patterns(
            root,
            {normalise_modality(k): v for k, v in (image_patterns or {}).items()},
            {normalise_modality(k): v for k, v in (mask_patterns or {}).items()},
        )
    if not found.cases:
        raise NoCasesFoundError(root, f"no patient matched the {layout} layout")
    return _screen(found)
