"""Voxel-wise uncertainty of an ensemble and/or test-time augmentation (Rondinella et al. 2023, section IV).

``std``: the standard deviation of the lesion probability over the passes (every member times every TTA
transform; needs at least two). ``entropy``: the binary predictive entropy of the mean probability, in bits
(0: certain, 1: p = 0.5); defined for a single pass too. Both are written as float32 NIfTI beside the mask.
The passes are accumulated as a running sum and sum of squares: two arrays whatever their number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["UNCERTAINTY", "PassStats", "binary_entropy", "uncertainty_map", "write_float_like", "lesion_uncertainty"]

UNCERTAINTY = ("none", "std", "entropy")


class PassStats:
    """Running mean and standard deviation of per-pass probability arrays."""

    def __init__(self) -> None:
        self.n = 0
        self.total: np.ndarray | None = None
        self.squares: np.ndarray | None = None

    def add(self, p: np.ndarray) -> None:
        p = np.asarray(p, np.float32)
        if self.total is None:
            self.total, self.squares = p.copy(), np.square(p)
        else:
            self.total += p
            self.squares += np.square(p)
        self.n += 1

    def mean(self) -> np.ndarray:
        return self.total / self.n

    def std(self) -> np.ndarray:
        """Population SD over the passes (the spread of the predictions themselves, not of their mean)."""
        mean = self.mean()
        return np.sqrt(np.maximum(self.squares / self.n - np.square(mean), 0.0))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """``-p log2 p - (1-p) log2 (1-p)`` in bits, 0 at p = 0 and p = 1."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)


def uncertainty_map(stats: PassStats, measure: str) -> np.ndarray:
    """The ``measure`` (:data:`UNCERTAINTY`) of the passes in ``stats``.

    Raises:
        ValueError: an unknown measure, or ``std`` of a single pass.
    """
    if measure == "entropy":
        return binary_entropy(stats.mean())
    if measure == "std":
        if stats.n < 2:
            raise ValueError("uncertainty 'std' needs several passes: give --tta or several runs (an ensemble), "
                             "or use 'entropy'")  # fmt: skip
        return stats.std()
    raise ValueError(f"uncertainty must be one of {UNCERTAINTY[1:]}, not {measure!r}")


def lesion_uncertainty(labels: np.ndarray, n: int, uncertainty: np.ndarray) -> np.ndarray:
    """Mean uncertainty inside each of the ``n`` labelled lesions (label k at index k-1)."""
    if n == 0:
        return np.zeros(0)
    sums = np.bincount(labels.ravel(), weights=uncertainty.ravel().astype(np.float64), minlength=n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    return sums[1:] / np.maximum(counts[1:], 1)


def write_float_like(volume_zhw: np.ndarray, affine: np.ndarray, image_file: str | Path, out: str | Path,
                     description: str) -> Path:  # fmt: skip
    """A canonical-stack float map as float32 NIfTI in the source image's voxel order, affine and header."""
    import nibabel as nib

    from mslesion.data.volumes import from_axial_stack
    from mslesion.fileio import atomic_path

    header = nib.load(str(image_file)).header.copy()
    header.set_data_dtype(np.float32)
    image = nib.Nifti1Image(from_axial_stack(np.asarray(volume_zhw, np.float32), affine), affine, header=header)
    image.header.set_slope_inter(1, 0)
    image.header["descrip"] = description.encode()[:79]
    with atomic_path(out) as tmp:
        nib.save(image, str(tmp))
    return Path(out)
