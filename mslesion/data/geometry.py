"""In-plane resizing to the model grid (e.g. 256x256) and its exact inverse.

``fit="pad"`` pads the slice to a square (edge-replicated image, zero mask)
before resizing, so anatomy keeps its aspect ratio; ``fit="stretch"`` resizes
straight to the target like the backbone report did. Either way :class:`SliceGeometry`
records what was done, and :func:`to_native` maps a model-grid array back onto
the native pixel grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

__all__ = ["SliceGeometry", "plan_geometry", "to_model", "to_native", "to_native_many", "back_weights", "FITS"]

FITS = ("pad", "stretch")


@dataclass(frozen=True)
class SliceGeometry:
    """How a native ``(H, W)`` slice maps to the model's ``size`` grid.

    Attributes:
        native_hw: in-plane shape of the canonical axial slice.
        spacing_hw_mm: native pixel size (rows, columns) in mm, or None if unknown.
        size: model grid ``(H, W)``.
        fit: ``pad`` or ``stretch``.
        pad: ``(top, bottom, left, right)`` pixels added before resizing.
    """

    native_hw: tuple[int, int]
    spacing_hw_mm: tuple[float, float] | None
    size: tuple[int, int]
    fit: str
    pad: tuple[int, int, int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        t, b, l, r = self.pad
        return (self.native_hw[0] + t + b, self.native_hw[1] + l + r)

    @property
    def model_spacing_hw_mm(self) -> tuple[float, float] | None:
        """Pixel size on the model grid, when the native spacing is known."""
        if self.spacing_hw_mm is None:
            return None
        ph, pw = self.padded_hw
        return (self.spacing_hw_mm[0] * ph / self.size[0], self.spacing_hw_mm[1] * pw / self.size[1])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SliceGeometry:
        sp = d.get("spacing_hw_mm")
        return cls(
            native_hw=tuple(d["native_hw"]),
            spacing_hw_mm=tuple(sp) if sp is not None else None,
            size=tuple(d["size"]),
            fit=d["fit"],
            pad=tuple(d["pad"]),
        )


def plan_geometry(
    native_hw: tuple[int, int],
    size: tuple[int, int] = (256, 256),
    fit: str = "pad",
    spacing_hw_mm: tuple[float, float] | None = None,
) -> SliceGeometry:
    """Decide padding for a native slice shape; see :class:`SliceGeometry`."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; known: {FITS}")
    h, w = (int(v) for v in native_hw)
    pad = (0, 0, 0, 0)
    if fit == "pad":
        # Pad to the target's aspect ratio (a square for 256x256).
        th, tw = size
        ph, pw = max(h, -(-w * th // tw)), max(w, -(-h * tw // th))
        dh, dw = ph - h, pw - w
        pad = (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
    sp = tuple(float(s) for s in spacing_hw_mm) if spacing_hw_mm is not None else None
    return SliceGeometry((h, w), sp, (int(size[0]), int(size[1])), fit, pad)


def _resize(arr: np.ndarray, hw: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize ``(H, W)`` or ``(H, W, C)`` with OpenCV, keeping a channel axis of 1."""
    out = cv2.resize(arr, (hw[1], hw[0]), interpolation=interpolation)
    if arr.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def to_model(image: np.ndarray, geom: SliceGeometry, kind: str = "image") -> np.ndarray:
    """Native ``(H, W[, C])`` slice -> model grid.

    Images: area averaging when shrinking, bilinear when enlarging. Masks
    (``kind="mask"``): nearest neighbour, so they stay binary.
    """
    if image.shape[:2] != geom.native_hw:
        raise ValueError(f"slice shape {image.shape[:2]} does not match planned native shape {geom.native_hw}")
    t, b, l, r = geom.pad
    if kind == "mask" and geom.pad == (0, 0, 0, 0) and geom.native_hw == geom.size:
        return image.copy()
    if kind == "mask":
        arr = np.pad(image.astype(np.uint8), ((t, b), (l, r)) + ((0, 0),) * (image.ndim - 2))
        out = _resize(arr, geom.size, cv2.INTER_NEAREST_EXACT)
        return out.astype(bool) if image.dtype == bool else out.astype(image.dtype)
    if kind != "image":
        raise ValueError(f"kind must be 'image' or 'mask', not {kind!r}")
    if geom.pad == (0, 0, 0, 0) and geom.native_hw == geom.size:
        return image.astype(np.float32, copy=False)
    arr = np.pad(image.astype(np.float32), ((t, b), (l, r)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    shrinking = geom.size[0] * geom.size[1] < arr.shape[0] * arr.shape[1]
    return _resize(arr, geom.size, cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@lru_cache(maxsize=64)
def back_weights(n_native: int, n_model: int) -> np.ndarray:
    """``(n_native, n_model)`` weights taking one model-grid axis back to the native axis.

    Where the model grid is at least as fine (upsampled for the model), native
    pixel j gets the mean of the model pixels that nearest-neighbour resizing
    filled from it (its preimage under ``INTER_NEAREST_EXACT``): so a prediction
    equal to the prepared mask comes back as exactly the native mask, and
    probabilities are area-averaged. Where the model grid is coarser, linear
    interpolation at the native pixel centres (as ``cv2.INTER_LINEAR``).
    """
    weights = np.zeros((n_native, n_model), np.float32)
    if n_model >= n_native:
        source = cv2.resize(np.arange(n_native, dtype=np.float32)[None, :], (n_model, 1),
                            interpolation=cv2.INTER_NEAREST_EXACT)[0].astype(np.int64)  # fmt: skip
        weights[source, np.arange(n_model)] = 1.0
        return weights / weights.sum(axis=1, keepdims=True)
    x = np.clip((np.arange(n_native) + 0.5) * n_model / n_native - 0.5, 0, n_model - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_model - 1)
    frac = (x - lo).astype(np.float32)
    np.add.at(weights, (np.arange(n_native), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_native), hi), frac)
    return weights


def to_native(array: np.ndarray, geom: SliceGeometry, kind: str = "probability") -> np.ndarray:
    """Model-grid ``(H, W[, C])`` array -> native slice grid; inverse of :func:`to_model`.

    Args:
        kind: ``probability`` (area mean over each native pixel's model pixels, or
            linear interpolation where the model grid is coarser; threshold
            afterwards; the right choice for network outputs) or ``mask``
            (nearest neighbour, stays binary).
    """
    if array.shape[:2] != geom.size:
        raise ValueError(f"array shape {array.shape[:2]} does not match model grid {geom.size}")
    if kind == "mask":
        out = _resize(array.astype(np.uint8), geom.padded_hw, cv2.INTER_NEAREST_EXACT)
    elif kind == "probability":
        rows = back_weights(geom.padded_hw[0], geom.size[0])
        cols = back_weights(geom.padded_hw[1], geom.size[1])
        out = np.einsum("ab,bc...,dc->ad...", rows, array.astype(np.float32), cols, optimize=True)
    else:
        raise ValueError(f"kind must be 'probability' or 'mask', not {kind!r}")
    t, b, l, r = geom.pad
    out = out[t : out.shape[0] - b, l : out.shape[1] - r]
    if kind == "mask":
        out = out.astype(array.dtype if array.dtype == bool else np.uint8)
    return out


def to_native_many(probabilities: np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """``(N, S, S)`` model-grid probabilities -> ``(N, H, W)`` native, as :func:`to_native` slice by slice.

    Two batched matrix products with the padding's rows/columns dropped from the
    weights first: one BLAS call per volume instead of two per slice (per-slice
    calls stalled for seconds when the CPU was shared).
    """
    if probabilities.shape[1:3] != geom.size:
        raise ValueError(f"array shape {probabilities.shape[1:3]} does not match model grid {geom.size}")
    t, b, l, r = geom.pad
    rows = back_weights(geom.padded_hw[0], geom.size[0])[t : geom.padded_hw[0] - b]
    cols = back_weights(geom.padded_hw[1], geom.size[1])[l : geom.padded_hw[1] - r]
    return np.matmul(np.matmul(rows, probabilities.astype(np.float32, copy=False)), cols.T)
