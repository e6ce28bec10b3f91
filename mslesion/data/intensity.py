"""Per-volume intensity handling: foreground, normalisation, slice entropy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = [
    "NORMALISATIONS",
    "Normalisation",
    "foreground_mask",
    "fit_normalisation",
    "slice_entropy_bits",
]

NORMALISATIONS = ("zscore", "percentile", "none")


def foreground_mask(volume: np.ndarray, method: str = "auto", slices: np.ndarray | None = None) -> np.ndarray:
    """Voxels that belong to the head/brain rather than the air around it.

    Args:
        volume: ``(Z, H, W)`` intensities.
        method: ``nonzero`` (skull-stripped data, background exactly 0), ``otsu``
            (raw scans with noisy air, then holes filled slice by slice), or
            ``auto``: ``nonzero`` when over 20% of voxels are exactly 0, else ``otsu``.
        slices: only compute these axial slices (the threshold still comes from
            the whole volume); the others are returned False.

    Returns:
        bool array, same shape.
    """
    slices = np.arange(volume.shape[0]) if slices is None else np.asarray(slices, dtype=np.int64)
    if method == "auto":
        method = "nonzero" if np.count_nonzero(volume == 0) > 0.2 * volume.size else "otsu"
    if method == "nonzero":
        out = np.zeros(volume.shape, dtype=bool)
        out[slices] = volume[slices] != 0
        return out
    if method != "otsu":
        raise ValueError(f"unknown foreground method {method!r}; use auto, nonzero or otsu")
    lo, hi = float(volume.min()), float(volume.max())
    if hi <= lo:
        return np.zeros(volume.shape, dtype=bool)
    # Otsu on the whole volume separates air from tissue; halving it keeps dark
    # tissue (CSF on FLAIR, skull) inside the head before holes are filled.
    # OpenCV per slice: ~10x faster than scipy.ndimage on a 256x256x24 volume.
    # Otsu's histogram from every 7th voxel is as good as from all of them.
    sample = _quantise(np.asarray(volume).reshape(-1)[::7], lo, hi, 256)
    otsu_q, _ = cv2.threshold(sample[None, :], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Halve in intensity units (MRI magnitude air sits near 0), then back to levels.
    half_raw = 0.5 * (lo + otsu_q * (hi - lo) / 255.0)
    level = (half_raw - lo) * 255.0 / (hi - lo)
    kernel = np.ones((3, 3), np.uint8)
    out = np.zeros(volume.shape, dtype=bool)
    for i in slices:
        q = _quantise(volume[i], lo, hi, 256)
        fg = cv2.morphologyEx((q > level).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        out[i] = _fill_holes(fg)
    return out


def _quantise(volume: np.ndarray, lo: float, hi: float, levels: int) -> np.ndarray:
    """Map [lo, hi] onto uint8 levels 0..levels-1 in float32 (cheap on big volumes)."""
    scale = np.float32(levels * (1 - 1e-6) / (hi - lo))
    return ((np.asarray(volume, np.float32) - np.float32(lo)) * scale).astype(np.uint8)


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the slice border (4-connected)."""
    padded = np.pad(fg, 1)
    cv2.floodFill(padded, None, (0, 0), 2)
    return (padded != 2)[1:-1, 1:-1]


@dataclass(frozen=True)
class Normalisation:
    """An affine intensity map ``(x - offset) / scale`` (then optional clip), recorded per volume."""

    method: str
    offset: float
    scale: float
    clip: tuple[float, float] | None = None

    def apply(self, volume: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(volume, dtype=np.float32)
        out = (volume.astype(np.float32) - np.float32(self.offset)) / np.float32(self.scale)
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def fit_normalisation(
    volume: np.ndarray,
    foreground: np.ndarray,
    method: str = "zscore",
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> Normalisation:
    """Fit a per-volume normalisation on the foreground voxels.

    Args:
        volume: intensities; foreground: bool mask of the same shape.
        method: ``zscore`` (Røvang's (2021) eq. 5.1, but over the foreground only, so the
            amount of air in the field of view does not change the result),
            ``percentile`` (clip to the given foreground percentiles, map to [0, 1]),
            or ``none``.

    Returns:
        The fitted :class:`Normalisation`; its numbers go into the dataset's meta.
    """
    if method == "none":
        return Normalisation("none", 0.0, 1.0)
    values = volume[foreground] if foreground.any() else volume.ravel()
    if method == "zscore":
        mean, std = float(values.mean()), float(values.std())
        return Normalisation("zscore", mean, std if std > 0 else 1.0)
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(values, percentiles))
        return Normalisation("percentile", lo, (hi - lo) if hi > lo else 1.0, (0.0, 1.0))
    raise ValueError(f"unknown normalisation {method!r}; known: {NORMALISATIONS}")


def slice_entropy_bits(volume: np.ndarray, levels: int = 256, slices: np.ndarray | None = None) -> np.ndarray:
    """Shannon entropy (Røvang's (2021) eq. 7.2) of each axial slice, in bits/pixel.

    Intensities are quantised into ``levels`` bins spanning the *volume's* range,
    so a uniform slice scores 0 and slices of one volume are comparable; with 256
    levels the numbers match those of 8-bit images (Røvang (2021) kept slices > 2 bits).

    Args:
        volume: ``(Z, H, W)``.
        slices: only these slices (default all).

    Returns:
        ``(len(slices),)`` float array (``(Z,)`` by default).
    """
    slices = np.arange(volume.shape[0]) if slices is None else np.asarray(slices, dtype=np.int64)
    lo, hi = float(volume.min()), float(volume.max())
    if hi <= lo:
        return np.zeros(len(slices))
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in [2, 256], not {levels}")
    # Quantise in float32 to uint8 and histogram with OpenCV: ~10x faster than
    # NumPy on a 182x218x182 volume, which keeps prep close to nibabel's load time.
    if not len(slices):
        return np.zeros(0)
    q = _quantise(volume[slices], lo, hi, levels)
    counts = np.stack([cv2.calcHist([np.ascontiguousarray(s)], [0], None, [levels], [0, levels]).ravel() for s in q])
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return h
