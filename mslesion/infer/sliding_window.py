"""Patch predictions -> a whole volume: Gaussian-weighted sliding window (the 3DR2AUNet paper, 2024; nnU-Net's blending).

The window follows :func:`mslesion.train.patches.patch_grid`; an axis shorter than the patch is padded with
the channel's minimum (the air) and the padding cropped away again."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mslesion.train.patches import extract_patch, pad_values, patch_grid

__all__ = ["gaussian_importance", "sliding_window_predict"]


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 1 / 8) -> np.ndarray:
    """Separable Gaussian centred in the patch, sigma = ``sigma_scale`` * size, max 1, floored at 1e-6 (nnU-Net)."""
    g = np.ones((), np.float64)
    for p in patch:
        axis = np.exp(-0.5 * ((np.arange(p) - (p - 1) / 2) / (sigma_scale * p)) ** 2)
        g = np.multiply.outer(g, axis)
    return np.maximum(g / g.max(), 1e-6).astype(np.float32)


def sliding_window_predict(predict_fn: Callable[[np.ndarray], np.ndarray], volume: np.ndarray,
                           patch: Sequence[int] = (64, 64, 64), stride: Sequence[int] = (32, 32, 32),
                           batch_size: int = 2, blend: str = "gaussian") -> np.ndarray:  # fmt: skip
    """Predict a whole volume from overlapping patches.

    Args:
        predict_fn: ``(B, D, H, W, C)`` float32 -> ``(B, D, H, W)`` or ``(B, D, H, W, K)`` (e.g.
            ``model.predict_on_batch``).
        volume: ``(Z, H, W, C)`` (or ``(Z, H, W)``: one channel).
        blend: ``gaussian`` (weights of :func:`gaussian_importance`) or ``mean`` (uniform).

    Returns:
        ``(Z, H, W)`` float32 (``(Z, H, W, K)`` when K > 1): the weighted mean of
        every patch prediction covering each voxel. Memory: two volume-sized
        float32 accumulators plus one batch of patches; patches are never all held.
    """
    if blend not in ("gaussian", "mean"):
        raise ValueError(f"blend must be 'gaussian' or 'mean', not {blend!r}")
    volume = volume[..., None] if volume.ndim == 3 else volume
    patch, shape = tuple(int(p) for p in patch), volume.shape[:3]
    padded = tuple(max(n, p) for n, p in zip(shape, patch))
    weight = gaussian_importance(patch) if blend == "gaussian" else np.ones(patch, np.float32)
    pad, corners = pad_values(volume, patch), patch_grid(shape, patch, stride)
    total, acc = np.zeros(padded, np.float32), None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        x = np.stack([extract_patch(volume, c, patch, pad) for c in chunk]).astype(np.float32, copy=False)
        out = np.asarray(predict_fn(x), np.float32)
        out = out[..., 0] if out.ndim == 5 and out.shape[-1] == 1 else out
        if acc is None:
            acc = np.zeros(padded + out.shape[4:], np.float32)
        w = weight if out.ndim == 4 else weight[..., None]
        for c, o in zip(chunk, out):
            region = tuple(slice(ci, ci + p) for ci, p in zip(c, patch))
            acc[region] += o * w
            total[region] += weight
    np.divide(acc, total if acc.ndim == 3 else total[..., None], out=acc)
    crop = acc[: shape[0], : shape[1], : shape[2]]
    return crop if crop.shape[:3] == acc.shape[:3] else np.ascontiguousarray(crop)
