"""Probabilities -> mask: threshold, remove small components, optionally fill holes (``postprocess.json``).

A run's chosen post-processing (:func:`mslesion.evaluate.postprocess_search.choose_postprocess`, picked on its
validation patients) is saved in the run folder as ``postprocess.json``; ``mslesion predict`` and ``mslesion
evaluate`` then apply it, so the same run turns probabilities into masks the same way everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from mslesion.configs import config_from_dict
from mslesion.fileio import save_json
from mslesion.paths import POSTPROCESS

__all__ = ["PostProcess", "POSTPROCESS", "remove_small_components", "run_postprocess", "save_postprocess",
           "resolve_postprocess"]



def remove_small_components(mask: np.ndarray, min_voxels: float, connectivity: int = 26) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_voxels`` voxels (26-connected by default)."""
    mask = np.asarray(mask, dtype=bool)
    if min_voxels <= 1 or not mask.any():
        return mask
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity!r}")
    rank = {6: 1, 18: 2, 26: 3}[connectivity] if mask.ndim == 3 else mask.ndim  # 2D: full (8) connectivity
    labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, rank))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


@dataclass(frozen=True)
class PostProcess:
    """How probabilities become a mask. ``min_size_mm3`` applies where the voxel size is known, else
    ``min_size_voxels`` (TIFF data); ``fill_holes`` fills enclosed background in 3D."""

    threshold: float = 0.5
    min_size_mm3: float = 0.0
    min_size_voxels: int = 0
    fill_holes: bool = False
    connectivity: int = 26
    chosen_on: dict = field(default_factory=dict, compare=False)  # the patients, objective and score it was picked by

    @classmethod
    def from_dict(cls, d: dict) -> PostProcess:
        return config_from_dict(cls, d, "post-processing")

    def min_voxels(self, spacing_zhw_mm) -> float:
        """The smallest component kept, in voxels of a volume of voxel size ``spacing_zhw_mm`` (None: unknown)."""
        if spacing_zhw_mm and self.min_size_mm3 > 0:
            return self.min_size_mm3 / float(np.prod(spacing_zhw_mm))
        return float(self.min_size_voxels)

    def apply(self, probability: np.ndarray, spacing_zhw_mm=None) -> np.ndarray:
        """The mask of ``probability``: cut at :attr:`threshold`, small components removed, holes filled."""
        mask = np.asarray(probability) > self.threshold
        mask = remove_small_components(mask, self.min_voxels(spacing_zhw_mm), self.connectivity)
        return ndimage.binary_fill_holes(mask) if self.fill_holes else mask

    def describe(self) -> str:
        size = (f"components under {self.min_size_mm3:g} mm³ removed" if self.min_size_mm3 else
                f"components under {self.min_size_voxels} voxels removed" if self.min_size_voxels else "no size filter")
        return f"threshold {self.threshold:g}, {size}" + (", holes filled" if self.fill_holes else "")


def run_postprocess(run_dir: str | Path) -> PostProcess | None:
    """The post-processing saved in a run folder, or None when it has none."""
    from mslesion.folders import read_json_object

    path = Path(run_dir) / POSTPROCESS
    if not path.is_file():
        return None
    return PostProcess.from_dict(read_json_object(path, "choose it again (mslesion postprocess RUN)"))


def save_postprocess(run_dir: str | Path, post: PostProcess) -> Path:
    """Write ``post`` as the run's ``postprocess.json`` (atomically); returns its path."""
    path = Path(run_dir) / POSTPROCESS
    save_json(path, asdict(post))
    return path


def resolve_postprocess(run_dir: str | Path, threshold: float | None = None, use_saved: bool = True,
                        ensemble: bool = False) -> PostProcess:  # fmt: skip
    """What predict and evaluate apply: the run's ``postprocess.json`` (unless ``use_saved`` is False or the
    probabilities are an ensemble's, for which it was not chosen), with ``threshold`` in place of its own when given;
    else a plain cut at ``threshold`` (default 0.5)."""
    from dataclasses import replace

    saved = run_postprocess(run_dir) if use_saved and not ensemble else None
    if saved is None:
        return PostProcess(threshold=0.5 if threshold is None else float(threshold))
    return saved if threshold is None else replace(saved, threshold=float(threshold))
