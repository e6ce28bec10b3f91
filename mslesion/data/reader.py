"""Reading a prepared slice dataset (the folder :func:`mslesion.data.prep.prepare_dataset` writes): its manifest
and one patient's slices, memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mslesion.fileio import load_json, load_npy
from mslesion.folders import DatasetFolder

__all__ = ["open_case", "read_manifest"]


def read_manifest(dataset_dir: str | Path):
    """The dataset's ``manifest.csv`` as a pandas DataFrame (:meth:`DatasetFolder.manifest`)."""
    return DatasetFolder(dataset_dir).manifest()


def open_case(dataset_dir: str | Path, patient: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """One patient's ``(image, mask, meta)``; arrays memory-mapped read-only by default."""
    folder = Path(dataset_dir) / str(patient)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such patient in the dataset")
    return load_npy(folder / "image.npy", mmap), load_npy(folder / "mask.npy", mmap), load_json(folder / "meta.json")
