"""Volumes -> a slice dataset on disk (``mslesion prep``).

Layout written (the whole folder is built beside the target and swapped in
only when complete, so an interrupted run leaves the old dataset untouched)::

    <out>/<patient>/image.npy   (N, S, S, C) float32, memory-mappable
    <out>/<patient>/mask.npy    (N, S, S, 1) uint8 {0, 1}
    <out>/<patient>/meta.json   slice indices, geometry, normalisation, sources
    <out>/manifest.csv          one row per slice
    <out>/prep_config.json      the full PrepConfig
    <out>/splits.json           patient-level splits
    <out>/summary.json          counts and failures (also failures.csv)
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mslesion import __version__
from mslesion.data.case import Case
from mslesion.data.cohort import discover_cases
from mslesion.data.loading import LoadedCase, SourceConfig, load_case
from mslesion.data.reader import read_manifest
from mslesion.data.slicing import CaseSlices, SliceConfig, slice_case
from mslesion.data.splits import SplitConfig, save_splits, split_patients
from mslesion.errors import FAILURE_COLUMNS, MslesionError, failure_row
from mslesion.fileio import atomic_dir, crash_point, save_csv, save_json, save_npy
from mslesion.outputs import MARKER, OutputError, check_inside, check_output, locked, output_dir, read_marker
from mslesion.paths import MANIFEST, PREP_CONFIG, SPLITS

__all__ = ["PrepConfig", "PrepSummary", "prepare_dataset", "prepare_case", "resplit_dataset", "MANIFEST_COLUMNS"]


MANIFEST_COLUMNS = [
    "patient", "row", "slice_index", "lesion_pixels", "lesion_pixels_native", "native_shape",
    "spacing_mm", "entropy_bits", "foreground_fraction", "image_file", "mask_file",
]  # fmt: skip


@dataclass
class PrepConfig(SplitConfig, SliceConfig, SourceConfig):  # fields in the order source, slicing, split
    """Everything that decides a slice dataset, by concern; saved (flat) as ``prep_config.json``.

    Which files are read (:class:`~mslesion.data.loading.SourceConfig`), how each case is sliced
    (:class:`~mslesion.data.slicing.SliceConfig`) and how patients are split
    (:class:`~mslesion.data.splits.SplitConfig`): the fields of all three, one level deep, so the CLI
    flags, notebooks and ``prep_config.json`` name them the same way.
    """

    def __post_init__(self) -> None:
        SourceConfig.__post_init__(self)
        SliceConfig.__post_init__(self)

    def source(self) -> SourceConfig:
        return _part(self, SourceConfig)

    def slicing(self) -> SliceConfig:
        return _part(self, SliceConfig)

    def splitting(self) -> SplitConfig:
        return _part(self, SplitConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PrepConfig:
        names = {f.name for f in fields(cls)}
        # records written before the option existed kept the normalised background
        return cls(**{"background": "keep", **{k: v for k, v in d.items() if k in names}})


def _part(config, cls):
    return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@dataclass
class PrepSummary:
    """What a :func:`prepare_dataset` run did."""

    out_dir: Path
    patients: int = 0
    slices: int = 0
    lesion_slices: int = 0
    failures: list[dict] = field(default_factory=list)
    unmatched_files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"dataset: {self.out_dir}",
            f"patients: {self.patients} prepared, {len(self.failures)} failed",
            f"slices: {self.slices} ({self.lesion_slices} with lesion)",
        ]
        lines += [f"  FAILED {f['patient']}: {f['error']}: {f['message']}" for f in self.failures]
        if not self.patients:
            lines.append(f"nothing written: no patient could be prepared ({self.out_dir} left as it was)")
        if self.unmatched_files:
            lines.append(f"files matching no naming rule (ignored): {len(self.unmatched_files)}")
        return "\n".join(lines)


def prepare_case(case: Case, config: PrepConfig, out_dir: Path) -> list[dict]:
    """Load, slice and write one patient into ``out_dir/<patient>``; return its manifest rows."""
    loaded = load_case(case, source=config.source())
    sliced = slice_case(loaded.stack, loaded.mask, loaded.modalities, loaded.spacing_zhw_mm, config.slicing())
    with atomic_dir(check_inside(out_dir, out_dir / case.patient_id)) as tmp:
        save_npy(tmp / "image.npy", sliced.images)
        save_npy(tmp / "mask.npy", sliced.masks)
        save_json(tmp / "meta.json", _case_meta(loaded, sliced))
    return _manifest_rows(loaded, sliced)


def _files(x: Path | list[Path]) -> str | list[str]:
    return [str(p) for p in x] if isinstance(x, list) else str(x)


def _case_meta(loaded: LoadedCase, sliced: CaseSlices) -> dict:
    return {
        "patient": loaded.patient_id,
        "modalities": loaded.modalities,
        "channels": sliced.channels,
        "slice_indices": sliced.slice_indices,
        "n_slices_total": sliced.n_slices_total,
        "stack_shape_zhw": list(loaded.stack.shape[:3]),
        "spacing_zhw_mm": loaded.spacing_zhw_mm,
        "geometry": sliced.geometry.to_dict(),
        "crop_box": list(sliced.crop_box) if sliced.crop_box else None,
        "resampling": sliced.resampling.to_dict() if sliced.resampling else None,
        "normalisation": [n.to_dict() for n in sliced.normalisations],
        "source": {
            "image_files": [str(p) for p in loaded.image_files],
            "mask_file": _files(loaded.mask_file),
            "affine": loaded.affine,
            "axcodes": loaded.axcodes,
            "shape": loaded.source_shape,
        },
        "lesion_voxels": int(np.count_nonzero(loaded.mask)),
        "warnings": loaded.warnings,
        "notes": loaded.notes,  # how it was loaded beyond reading (skull stripping)
    }


def _manifest_rows(loaded: LoadedCase, sliced: CaseSlices) -> list[dict]:
    # the grid the slices were cut from: the resampled one when the stack was resampled
    resampled = sliced.resampling
    h, w = resampled.target_zhw[1:] if resampled else loaded.stack.shape[1:3]
    voxel = resampled.target_spacing_mm if resampled else loaded.spacing_zhw_mm
    spacing = "x".join(f"{s:g}" for s in voxel) if voxel else ""
    rows = []
    for row, k in enumerate(sliced.slice_indices):
        mask_file = loaded.mask_file[k] if isinstance(loaded.mask_file, list) else loaded.mask_file
        image_file = loaded.image_files[k] if loaded.spacing_zhw_mm is None else loaded.image_files[0]
        rows.append({
            "patient": loaded.patient_id, "row": row, "slice_index": int(k),
            "lesion_pixels": int(sliced.lesion_pixels[row]),
            "lesion_pixels_native": int(sliced.lesion_pixels_native[row]),
            "native_shape": f"{h}x{w}", "spacing_mm": spacing,
            "entropy_bits": round(float(sliced.entropy_bits[row]), 4),
            "foreground_fraction": round(float(sliced.foreground_fraction[row]), 4),
            "image_file": str(image_file), "mask_file": str(mask_file),
        })  # fmt: skip
    return rows


def _run_one(case: Case, config: PrepConfig, out_dir: Path) -> tuple[str, list[dict] | None, dict | None]:
    """Worker: never raises, so one bad patient cannot stop the batch."""
    try:
        return case.patient_id, prepare_case(case, config, out_dir), None
    except MslesionError as exc:
        return case.patient_id, None, failure_row(case.patient_id, exc)
    except Exception as exc:  # noqa: BLE001 - report unexpected failures per patient too
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return case.patient_id, None, failure_row(case.patient_id, exc, f"{exc} ({tb})")


def prepare_dataset(
    source: str | Path,
    out_dir: str | Path,
    config: PrepConfig | None = None,
    jobs: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> PrepSummary:
    """Turn every patient under ``source`` into slices under ``out_dir``.

    Patients that fail (corrupt file, mismatch, missing modality...) are listed
    in the summary and in ``failures.csv``; the others are prepared. Splits are
    made over the prepared patients with ``config.seed``.

    Args:
        source: dataset root (any layout :func:`mslesion.data.cohort.discover_cases` reads).
        out_dir: dataset folder to write: new, empty, or (with ``overwrite``) a
            dataset this toolkit wrote; never the source or a folder around it
            (:func:`mslesion.outputs.output_dir`).
        jobs: worker processes (patients run in parallel).
        overwrite: replace an existing mslesion dataset at ``out_dir``.

    Raises:
        OutputError: ``out_dir`` may not be written (checked before any work).
    """
    config = config or PrepConfig()
    out_dir = Path(out_dir)
    check_output(out_dir, "dataset", overwrite=overwrite, inputs=[source])
    found = discover_cases(source, config.layout, config.image_patterns, config.mask_patterns)
    if found.layout == "lgg" and config.spacing and any(config.spacing):
        raise ValueError(f"{source}: TIFF slices carry no voxel size, so --spacing cannot resample them")
    summary = PrepSummary(out_dir=out_dir, unmatched_files=[str(p) for p in found.unmatched])
    summary.failures += found.rejected
    try:
        _write_dataset(source, out_dir, config, found, summary, jobs, progress, overwrite)
    except _NothingPrepared:
        pass  # every patient failed: nothing is written, the summary says why
    return summary


class _NothingPrepared(Exception):
    """Every patient failed: leave ``out_dir`` as it was."""


def _write_dataset(source, out_dir: Path, config: PrepConfig, found, summary: PrepSummary, jobs: int,
                   progress: bool, overwrite: bool) -> None:  # fmt: skip
    rows_by_patient: dict[str, list[dict]] = {}
    with output_dir(out_dir, "dataset", overwrite=overwrite, inputs=[source]) as tmp:
        results = _map_cases(found.cases, config, tmp, jobs, progress)
        crash_point("prep.after_cases")
        for pid, rows, failure in results:
            if failure:
                summary.failures.append(failure)
            else:
                rows_by_patient[pid] = rows
        order = [c.patient_id for c in found.cases if c.patient_id in rows_by_patient]
        if not order:
            raise _NothingPrepared
        rows = [r for pid in order for r in rows_by_patient[pid]]
        summary.patients = len(order)
        summary.slices = len(rows)
        summary.lesion_slices = sum(r["lesion_pixels_native"] > 0 for r in rows)
        save_csv(tmp / MANIFEST, rows, columns=MANIFEST_COLUMNS, float_format=None)
        save_csv(tmp / "failures.csv", summary.failures, columns=FAILURE_COLUMNS)
        save_json(tmp / PREP_CONFIG, {**config.to_dict(), "source": str(Path(source).resolve()),
                                             "layout_found": found.layout, "mslesion_version": __version__})  # fmt: skip
        if order:
            save_splits(tmp / SPLITS, split_patients(
                order, config.split, test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                k=min(config.folds, max(len(order), 2)), seed=config.seed,
            ))  # fmt: skip
        save_json(tmp / "summary.json", {
            "patients": summary.patients, "slices": summary.slices, "lesion_slices": summary.lesion_slices,
            "failures": summary.failures, "unmatched_files": summary.unmatched_files,
        })  # fmt: skip


def _map_cases(cases: list[Case], config: PrepConfig, out: Path, jobs: int, progress: bool) -> list:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cases), desc="prep", unit="patient", disable=not progress)
    results = []
    try:
        if jobs <= 1 or len(cases) <= 1:
            for case in cases:
                results.append(_run_one(case, config, out))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(cases), os.cpu_count() or 1)) as pool:
                futures = [pool.submit(_run_one, case, config, out) for case in cases]
                for fut in as_completed(futures):
                    results.append(fut.result())
                    bar.update()
    finally:
        bar.close()
    return results


def resplit_dataset(dataset_dir: str | Path, mode: str = "holdout", *, test_fraction: float = 0.1,
                    val_fraction: float = 0.1, folds: int = 5, seed: int = 0, overwrite: bool = False) -> dict:  # fmt: skip
    """Split the patients of a prepared dataset anew and replace its ``splits.json``; returns the splits.

    Runs trained on the old splits keep their own patient lists (``config.json``),
    but a dataset's splits are replaced only when asked (``overwrite``).

    Raises:
        OutputError: ``dataset_dir`` is not a dataset mslesion wrote, or has splits and ``overwrite`` is False.
    """
    folder = Path(dataset_dir)
    marker = read_marker(folder)
    if marker is None or marker["kind"] != "dataset":
        raise OutputError(f"{folder}: not a slice dataset written by mslesion prep (no {MARKER} marker)")
    if (folder / SPLITS).is_file() and not overwrite:
        raise OutputError(f"{folder / 'splits.json'}: exists; pass --overwrite to replace the dataset's splits")
    with locked(folder):
        patients = list(dict.fromkeys(read_manifest(folder)["patient"]))
        splits = split_patients(patients, mode, test_fraction=test_fraction, val_fraction=val_fraction, k=folds,
                                seed=seed)  # fmt: skip
        save_splits(folder / SPLITS, splits)
    return splits
