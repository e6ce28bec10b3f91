"""Resampling a canonical ``(Z, H, W)`` stack to a target voxel size, and its exact way back.

Raw clinical scans differ in voxel size (the Muslim et al. data: about 0.45 mm in-plane, 5-6 mm slices); a model
trained at one voxel size sees lesions of another size elsewhere. ``mslesion prep --spacing Z H W`` resamples each
volume before slicing, and records the plan (:class:`Resampling`, in ``meta.json``), so predictions map back onto
the source grid.

Each axis is resampled on its own, with the conventions of OpenCV's ``cv2.resize`` (voxel centres aligned, the
first and last voxel edges kept): images linearly where the axis is refined and by area averaging where it is
coarsened, masks by nearest neighbour (``INTER_NEAREST_EXACT``). The way back (:meth:`Resampling.to_source`)
gives every source voxel the mean of the target voxels nearest-neighbour resampling filled from it, so where
every axis is refined or kept, a prediction equal to the resampled mask maps back to exactly the source mask; an
axis coarsened loses detail that no inverse restores (it is then linear interpolation back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from mslesion.data.geometry import back_weights

__all__ = ["Resampling", "plan_resampling", "parse_spacing"]


def parse_spacing(spacing: Sequence[float] | None) -> tuple[float | None, float | None, float | None] | None:
    """``--spacing`` values -> a target ``(z, h, w)`` in mm, None where an axis keeps its voxel size.

    One value: every axis (isotropic); two: in-plane rows and columns (slices kept); three: ``Z H W``. 0 keeps
    that axis. None or all zeros: no resampling.

    Raises:
        ValueError: another number of values, or a negative one.
    """
    if spacing is None:
        return None
    values = [float(s) for s in spacing]
    if len(values) == 1:
        values = values * 3
    elif len(values) == 2:
        values = [0.0, *values]
    elif len(values) != 3:
        raise ValueError(f"spacing takes 1 (isotropic), 2 (in-plane H W) or 3 (Z H W) values in mm, not {spacing}")
    if any(v < 0 or not np.isfinite(v) for v in values):
        raise ValueError(f"spacing values must be positive mm (0 keeps an axis), not {spacing}")
    target = tuple(v if v > 0 else None for v in values)
    return None if all(v is None for v in target) else target


@dataclass(frozen=True)
class Resampling:
    """How a ``source_zhw`` stack of voxel size ``source_spacing_mm`` became ``target_zhw``.

    ``target_spacing_mm`` is the voxel size reached: the requested one adjusted so that a whole number of voxels
    spans the same extent (``source_zhw * source_spacing_mm == target_zhw * target_spacing_mm``).
    """

    source_zhw: tuple[int, int, int]
    source_spacing_mm: tuple[float, float, float]
    target_zhw: tuple[int, int, int]

    @property
    def target_spacing_mm(self) -> tuple[float, float, float]:
        return tuple(s * n / m for s, n, m in zip(self.source_spacing_mm, self.source_zhw, self.target_zhw))

    def to_dict(self) -> dict:
        return {**asdict(self), "target_spacing_mm": list(self.target_spacing_mm)}

    @classmethod
    def from_dict(cls, d: dict) -> Resampling:
        return cls(tuple(int(v) for v in d["source_zhw"]), tuple(float(v) for v in d["source_spacing_mm"]),
                   tuple(int(v) for v in d["target_zhw"]))  # fmt: skip

    def image(self, stack: np.ndarray) -> np.ndarray:
        """``(Z, H, W[, M])`` intensities -> the target grid, float32 (linear where refined, area where coarsened)."""
        return self._apply(np.asarray(stack, np.float32), self.source_zhw, self.target_zhw, _image_weights)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """``(Z, H, W)`` mask -> the target grid by nearest neighbour, same dtype."""
        self._check(mask, self.source_zhw)
        out = np.asarray(mask)
        for axis, (n, m) in enumerate(zip(self.source_zhw, self.target_zhw)):
            if n != m:
                out = np.take(out, _nearest_index(n, m), axis=axis)
        return out

    def to_source(self, array: np.ndarray, kind: str = "probability") -> np.ndarray:
        """Target-grid ``(Z', H', W')`` array -> the source grid; the inverse of :meth:`mask` (see module doc).

        ``kind``: ``probability`` (float32) or ``mask`` (the probability way back, then >= 0.5, as uint8).
        """
        if kind not in ("probability", "mask"):
            raise ValueError(f"kind must be 'probability' or 'mask', not {kind!r}")
        out = self._apply(np.asarray(array, np.float32), self.target_zhw, self.source_zhw, _back_weights)
        return (out >= 0.5).astype(np.uint8) if kind == "mask" else out

    def _apply(self, array: np.ndarray, from_zhw, to_zhw, weights) -> np.ndarray:
        self._check(array, from_zhw)
        out = array
        for axis, (n, m) in enumerate(zip(from_zhw, to_zhw)):
            if n != m:
                # (m, n) weights along one axis: a matrix product keeps every other axis as it is
                out = np.moveaxis(np.tensordot(weights(n, m), out, axes=([1], [axis])), 0, axis)
        return np.ascontiguousarray(out, dtype=np.float32)

    @staticmethod
    def _check(array: np.ndarray, zhw) -> None:
        if tuple(np.shape(array)[:3]) != tuple(zhw):
            raise ValueError(f"array of shape {np.shape(array)} is not on the {tuple(zhw)} grid this resampling maps")


def plan_resampling(shape_zhw: Sequence[int], spacing_mm: Sequence[float] | None,
                    target_mm: Sequence[float | None] | None) -> Resampling | None:  # fmt: skip
    """The :class:`Resampling` taking a ``shape_zhw`` stack of ``spacing_mm`` voxels to ``target_mm`` (see
    :func:`parse_spacing`; None on an axis keeps it), or None when nothing changes.

    Raises:
        ValueError: the voxel size is unknown (TIFF slices have none).
    """
    if target_mm is None or all(t is None for t in target_mm):
        return None
    if spacing_mm is None:
        raise ValueError("resampling to a voxel size needs the scan's voxel size, and this case has none "
                         "(TIFF slices); prepare it without --spacing")  # fmt: skip
    shape = tuple(int(n) for n in shape_zhw)
    spacing = tuple(float(s) for s in spacing_mm)
    target = tuple(n if t is None else max(1, int(round(n * s / float(t))))
                   for n, s, t in zip(shape, spacing, target_mm))  # fmt: skip
    return None if target == shape else Resampling(shape, spacing, target)


@lru_cache(maxsize=64)
def _nearest_index(n: int, m: int) -> np.ndarray:
    """Source index of each of ``m`` target voxels under ``cv2.INTER_NEAREST_EXACT``."""
    row = np.arange(n, dtype=np.float32)[None, :]
    return cv2.resize(row, (m, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0].astype(np.int64)


@lru_cache(maxsize=64)
def _image_weights(n: int, m: int) -> np.ndarray:
    """``(m, n)``: OpenCV's 1-D resize of an ``n`` axis to ``m`` as a matrix (resizing the identity)."""
    interpolation = cv2.INTER_LINEAR if m > n else cv2.INTER_AREA
    return cv2.resize(np.eye(n, dtype=np.float32), (n, m), interpolation=interpolation)


def _back_weights(m: int, n: int) -> np.ndarray:
    """``(n, m)``: target axis of ``m`` voxels back to the source's ``n`` (the preimage mean where refined)."""
    return back_weights(n, m)
