"""Test-time augmentation: predict mirrored/rotated copies of the slices, undo each, average.

``flip``: the slices and their left-right mirror (2 passes). ``flip+rot90``: the eight symmetries
of the square (rotations by 0/90/180/270 degrees, each with and without the mirror). Each output
is mapped back by the inverse transform before it joins the running mean, so memory stays at
one probability array whatever the number of passes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TTA_MODES", "transforms", "predict_tta"]

TTA_MODES = ("none", "flip", "flip+rot90")

Transform = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _symmetry(k: int, mirror: bool) -> Transform:
    # arrays are (N, H, W[, C]): axes 1 and 2 are the slice grid
    def forward(a: np.ndarray) -> np.ndarray:
        a = np.flip(a, axis=2) if mirror else a
        return np.rot90(a, k, axes=(1, 2))

    def inverse(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, -k, axes=(1, 2))
        return np.flip(a, axis=2) if mirror else a

    return forward, inverse


def transforms(mode: str) -> list[Transform]:
    """``(forward, inverse)`` pairs of ``mode`` (see :data:`TTA_MODES`); the identity first."""
    if mode == "none":
        return [_symmetry(0, False)]
    if mode == "flip":
        return [_symmetry(0, False), _symmetry(0, True)]
    if mode == "flip+rot90":
        return [_symmetry(k, m) for m in (False, True) for k in range(4)]
    raise ValueError(f"tta must be one of {TTA_MODES}, not {mode!r}")


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str = "none",
                passes=None) -> np.ndarray:  # fmt: skip
    """Mean of ``predict`` over the transforms of ``mode``; ``predict`` maps ``(N, H, W, C)`` to ``(N, H, W)``.

    ``passes``: a :class:`mslesion.infer.uncertainty.PassStats` that also receives each pass (for uncertainty).

    Raises:
        ValueError: an unknown mode, or ``flip+rot90`` on slices that are not square.
    """
    pairs = transforms(mode)
    if mode == "flip+rot90" and images.shape[1] != images.shape[2]:
        raise ValueError(f"tta 'flip+rot90' needs square slices, not {images.shape[1]}x{images.shape[2]}; use 'flip'")
    total = None
    for forward, inverse in pairs:
        out = inverse(np.asarray(predict(np.ascontiguousarray(forward(images))), np.float32))
        if passes is not None:
            passes.add(out)
        total = out.copy() if total is None else np.add(total, out, out=total)
    return total / len(pairs)
