"""Whole normalised volumes for 3D training (the 3DR2AUNet paper, 2024): :func:`prepare_volumes` and their reader.

:func:`prepare_volumes` writes one z-scored ``(Z, H, W, C)`` volume per patient
(the whole folder is built beside the target and swapped in when complete)::

    <out>/<patient>/volume.npy   (Z, H, W, C) float32, each channel z-scored over its foreground
    <out>/<patient>/mask.npy     (Z, H, W) uint8 {0, 1}
    <out>/<patient>/meta.json    spacing, source files, affine, axcodes, normalisation
    <out>/{splits.json, prep3d_config.json, failures.csv}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mslesion import __version__
from mslesion.data.cohort import discover_cases
from mslesion.data.intensity import fit_normalisation, foreground_mask
from mslesion.data.loading import SourceConfig, load_case
from mslesion.data.splits import save_splits, split_patients
from mslesion.errors import FAILURE_COLUMNS, MslesionError, failure_row
from mslesion.fileio import load_json, load_npy, save_csv, save_json, save_npy
from mslesion.outputs import check_inside, check_output, output_dir
from mslesion.paths import PREP3D_CONFIG, SPLITS

__all__ = ["PreparedVolume", "prepare_volumes", "open_volume"]


@dataclass
class PreparedVolume:
    """One prepared patient: ``volume`` (Z, H, W, C) float32, ``mask`` (Z, H, W) uint8, ``meta``."""

    patient: str
    volume: np.ndarray
    mask: np.ndarray
    meta: dict


def prepare_volumes(
    source: str | Path, out_dir: str | Path, modalities: Sequence[str] = ("flair",), normalisation: str = "zscore",
    split: str = "train_val_test", test_fraction: float = 0.2, val_fraction: float = 0.2, folds: int = 5,
    seed: int = 0, layout: str = "auto", image_patterns: dict | None = None, mask_patterns: dict | None = None,
    mask_modality: str | None = None, allow_empty_masks: bool = False, foreground: str = "auto",
    overwrite: bool = False, register: str = "none", skull_strip: str = "none", brain_mask_pattern: str | None = None,
) -> dict:  # fmt: skip
    """Write every patient of ``source`` as a normalised whole volume (layout in the module doc).

    Each modality is normalised on its own foreground (:func:`mslesion.data.intensity.fit_normalisation`).
    Patients that fail to load are listed in ``failures.csv`` and skipped; splits
    (:func:`mslesion.data.splits.split_patients`) are over the prepared patients.

    ``out_dir`` follows :func:`mslesion.outputs.output_dir`: new, empty, or (with
    ``overwrite``) volumes this toolkit wrote; never the source or around it.
    When every patient fails nothing is written.

    ``register``, ``skull_strip`` and ``brain_mask_pattern`` are those of
    :class:`~mslesion.data.loading.SourceConfig`, applied as ``mslesion prep`` applies them.

    Returns:
        ``{"out_dir", "patients", "failures", "unmatched_files"}``.
    """
    out_dir = Path(out_dir)
    # checked (unknown choices, a mask pattern without {patient}) before anything is read
    SourceConfig(modalities=tuple(modalities), register=register, skull_strip=skull_strip,
                 brain_mask_pattern=brain_mask_pattern)  # fmt: skip
    check_output(out_dir, "volumes3d", overwrite=overwrite, inputs=[source])
    found = discover_cases(source, layout, image_patterns, mask_patterns)
    config = {"kind": "volumes3d", "source": str(Path(source).resolve()), "layout": layout,
              "layout_found": found.layout, "image_patterns": image_patterns, "mask_patterns": mask_patterns,
              "modalities": list(modalities),
              "mask_modality": mask_modality, "allow_empty_masks": allow_empty_masks, "register": register,
              "skull_strip": skull_strip, "brain_mask_pattern": brain_mask_pattern, "foreground": foreground,
              "normalisation": normalisation, "split": split, "test_fraction": test_fraction,
              "val_fraction": val_fraction, "folds": folds, "seed": seed, "mslesion_version": __version__}  # fmt: skip
    prepared, failures = [], list(found.rejected)
    try:
        _write_volumes(source, out_dir, found, config, prepared, failures, overwrite)
    except _NothingPrepared:
        pass
    return {"out_dir": out_dir, "patients": prepared, "failures": failures,
            "unmatched_files": [str(p) for p in found.unmatched]}  # fmt: skip


class _NothingPrepared(Exception):
    """Every patient failed: leave ``out_dir`` as it was."""


def _write_volumes(source, out_dir: Path, found, config: dict, prepared: list, failures: list,
                   overwrite: bool) -> None:  # fmt: skip
    modalities, mask_modality, allow_empty_masks = config["modalities"], config["mask_modality"], \
        config["allow_empty_masks"]  # fmt: skip
    foreground, normalisation = config["foreground"], config["normalisation"]
    split, seed, folds = config["split"], config["seed"], config["folds"]
    test_fraction, val_fraction = config["test_fraction"], config["val_fraction"]
    loading = SourceConfig(modalities=tuple(modalities), mask_modality=mask_modality,
                           allow_empty_masks=allow_empty_masks, register=config.get("register", "none"),
                           skull_strip=config.get("skull_strip", "none"),
                           brain_mask_pattern=config.get("brain_mask_pattern"))  # fmt: skip
    with output_dir(out_dir, "volumes3d", overwrite=overwrite, inputs=[source]) as tmp:
        for case in found.cases:
            try:
                loaded = load_case(case, source=loading)
            except MslesionError as exc:
                failures.append(failure_row(case.patient_id, exc))
                continue
            volume = np.empty(loaded.stack.shape, np.float32)
            norms = []
            for c in range(volume.shape[-1]):
                channel = loaded.stack[..., c]
                norm = fit_normalisation(channel, foreground_mask(channel, foreground), normalisation)
                volume[..., c] = norm.apply(channel)
                norms.append(norm.to_dict())
            folder = check_inside(tmp, tmp / case.patient_id)
            save_npy(folder / "volume.npy", volume)
            save_npy(folder / "mask.npy", loaded.mask.astype(np.uint8))
            save_json(folder / "meta.json", {
                "patient": loaded.patient_id, "modalities": loaded.modalities, "shape_zhw": list(volume.shape[:3]),
                "spacing_zhw_mm": loaded.spacing_zhw_mm, "normalisation": norms,
                "lesion_voxels": int(np.count_nonzero(loaded.mask)),
                "warnings": loaded.warnings, "notes": loaded.notes,
                "source": {"image_files": [str(p) for p in loaded.image_files],
                           "mask_file": [str(p) for p in loaded.mask_file] if isinstance(loaded.mask_file, list)
                           else (str(loaded.mask_file) if loaded.mask_file else None),
                           "affine": loaded.affine, "axcodes": loaded.axcodes, "shape": loaded.source_shape},
            })  # fmt: skip
            prepared.append(case.patient_id)
        if not prepared:
            raise _NothingPrepared
        save_csv(tmp / "failures.csv", failures, columns=FAILURE_COLUMNS)
        save_json(tmp / PREP3D_CONFIG, {**config, "patients": prepared, "n_failures": len(failures)})
        if prepared:
            save_splits(tmp / SPLITS, split_patients(prepared, split, test_fraction=test_fraction,
                        val_fraction=val_fraction, k=min(folds, max(len(prepared), 2)), seed=seed))  # fmt: skip


def open_volume(dataset_dir: str | Path, patient: str, mmap: bool = True) -> PreparedVolume:
    """One prepared patient (arrays memory-mapped read-only by default)."""
    folder = Path(dataset_dir) / str(patient)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such patient in the prepared volumes")
    return PreparedVolume(str(patient), load_npy(folder / "volume.npy", mmap), load_npy(folder / "mask.npy", mmap),
                          load_json(folder / "meta.json"))  # fmt: skip
