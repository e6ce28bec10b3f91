"""Find each patient's image and mask files in a dataset folder.

Four layouts are understood (each in :mod:`mslesion.data.layouts`):

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

from pathlib import Path

from mslesion.data.case import Discovery, check_patient_id, normalise_modality
from mslesion.data.layouts import detect_layout, discover_lgg, discover_ljubljana, discover_muslim, discover_patterns
from mslesion.errors import BadPatientIdError, NoCasesFoundError, failure_row

__all__ = ["discover_cases", "LAYOUTS"]


LAYOUTS = ("auto", "muslim", "ljubljana", "lgg", "pattern")


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
        found = discover_muslim(root)
    elif layout == "ljubljana":
        found = discover_ljubljana(root)
    elif layout == "lgg":
        found = discover_lgg(root)
    else:
        found = discover_patterns(
            root,
            {normalise_modality(k): v for k, v in (image_patterns or {}).items()},
            {normalise_modality(k): v for k, v in (mask_patterns or {}).items()},
        )
    if not found.cases:
        raise NoCasesFoundError(root, f"no patient matched the {layout} layout")
    for case in found.cases:
        case.root = root  # load-time patterns (brain masks) resolve against it, whatever the layout
    return _screen(found)
