"""The dataset layouts :func:`mslesion.data.cohort.discover_cases` reads: Muslim et al. (2022), Ljubljana, LGG
and path patterns; each turns a folder into a :class:`~mslesion.data.case.Discovery`."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from mslesion.data.case import Case, Discovery, natural_key, strip_nifti
from mslesion.errors import NoCasesFoundError

__all__ = ["discover_muslim", "discover_ljubljana", "discover_lgg", "discover_patterns", "detect_layout"]


# Canonical modality names -> spelling in each layout's file names.
_MUSLIM_NAMES = {"flair": "Flair", "t1": "T1", "t2": "T2"}


_LJUBLJANA_NAMES = {"flair": "FLAIR", "t1": "T1", "t1post": "T1POST", "t2": "T2"}


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


def discover_muslim(root: Path) -> Discovery:
    folders = sorted((d for d in root.glob("Patient-*") if d.is_dir()), key=lambda d: natural_key(d.name))
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
            stem = strip_nifti(f.name)
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


def discover_ljubljana(root: Path) -> Discovery:
    folders = [root] if _is_ljubljana_folder(root) else sorted(
        (d for d in root.iterdir() if d.is_dir() and _is_ljubljana_folder(d)), key=lambda d: natural_key(d.name)
    )
    cases, unmatched = [], []
    for folder in folders:
        m = re.search(r"patient[_-]?(\d+)", folder.name, re.IGNORECASE)
        pid = f"patient{m[1]}" if m else folder.name
        images, masks = {}, {}
        for f in sorted(folder.iterdir()):
            stem = strip_nifti(f.name)
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


def discover_lgg(root: Path) -> Discovery:
    folders = [root] if any(root.glob("*_mask.tif")) else sorted(
        (d for d in root.iterdir() if d.is_dir() and any(d.glob("*.tif"))), key=lambda d: natural_key(d.name)
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


def discover_patterns(root: Path, images: dict[str, str], masks: dict[str, str]) -> Discovery:
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
    cases = sorted(found.values(), key=lambda c: natural_key(c.patient_id))
    return Discovery(cases, "pattern", [])
