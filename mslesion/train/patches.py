"""3D training patches (the 3DR2AUNet paper, 2024): the patch grid, patch augmentation and :class:`PatchSampler`.

Patches lie on a regular grid (:func:`patch_grid`, the last patch flush with
the far edge); an axis shorter than the patch is padded at its far end with the
channel's minimum (the air), both when sampling and in
:func:`mslesion.infer.sliding_window.sliding_window_predict`, which crops the padding away again.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import keras
import numpy as np
from scipy import ndimage

from mslesion.data.volumes3d import PreparedVolume

__all__ = ["patch_grid", "extract_patch", "augment_patch", "PatchSampler", "pad_values", "Triple"]


Triple = tuple[int, int, int]


def _starts(n: int, p: int, s: int) -> list[int]:
    if p < 1 or not 1 <= s <= p:
        raise ValueError(f"need patch >= 1 and 1 <= stride <= patch (no gaps); got patch {p}, stride {s}")
    if n <= p:
        return [0]
    starts = list(range(0, n - p + 1, s))
    return starts if starts[-1] == n - p else [*starts, n - p]


def patch_grid(shape: Sequence[int], patch: Sequence[int] = (64, 64, 64),
               stride: Sequence[int] = (32, 32, 32)) -> list[Triple]:  # fmt: skip
    """Start corners ``(z, h, w)`` of patches covering every voxel of a ``shape[:3]`` volume.

    Starts step by ``stride``; the last is ``n - patch`` (flush with the edge). An
    axis shorter than the patch has the single start 0 (the patch is padded).
    """
    return list(itertools.product(*(_starts(int(n), int(p), int(s)) for n, p, s in zip(shape[:3], patch, stride))))


def extract_patch(array: np.ndarray, corner: Sequence[int], patch: Sequence[int], pad_value=0) -> np.ndarray:
    """``array[corner : corner + patch]`` over the first three axes as a new array, padded at the far ends."""
    region = array[tuple(slice(c, c + p) for c, p in zip(corner, patch))]
    if region.shape[:3] == tuple(patch):
        return np.array(region)
    out = np.empty((*patch, *array.shape[3:]), array.dtype)
    out[...] = pad_value
    out[tuple(slice(0, s) for s in region.shape[:3])] = region
    return out


def pad_values(volume: np.ndarray, patch: Sequence[int]) -> np.ndarray | float:
    """Per-channel minimum when some axis needs padding (0 otherwise: unused)."""
    if all(n >= p for n, p in zip(volume.shape[:3], patch)):
        return 0.0
    return np.asarray(volume).reshape(-1, volume.shape[-1]).min(axis=0)


def augment_patch(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, rotate_deg: float = 0.0, elastic_alpha_vox: float = 0.0,
    elastic_grid_vox: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The same random transform on an image patch ``x`` (D, H, W, C) and its mask ``y`` (D, H, W).

    Flip along each axis with probability 1/2; rotate by a multiple of 90 degrees
    in the axial (H, W) plane (only 0/180 when H != W); then optionally rotate by
    a uniform angle in ``[-rotate_deg, rotate_deg]`` in that plane and deform
    elastically (a smooth random displacement of up to about ``elastic_alpha_vox``
    voxels, interpolated cubically from a control grid every ``elastic_grid_vox``
    voxels). The image is interpolated linearly, the mask by nearest neighbour.
    """
    for axis in range(3):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    k = int(rng.integers(4)) if x.shape[1] == x.shape[2] else 2 * int(rng.integers(2))
    x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(1, 2))
    if rotate_deg:
        angle = float(rng.uniform(-rotate_deg, rotate_deg))
        x = ndimage.rotate(x, angle, axes=(1, 2), reshape=False, order=1, mode="nearest")
        y = ndimage.rotate(y, angle, axes=(1, 2), reshape=False, order=0, mode="constant", cval=0)
    if elastic_alpha_vox:
        shape = y.shape
        coarse = [max(2, math.ceil(n / elastic_grid_vox) + 1) for n in shape]
        grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
        coords = [g + ndimage.zoom(rng.normal(0, elastic_alpha_vox / 2, coarse).astype(np.float32),
                                   [n / c for n, c in zip(shape, coarse)], order=3)[: shape[0], : shape[1], : shape[2]]
                  for g in grids]  # fmt: skip
        x = np.stack([ndimage.map_coordinates(x[..., c], coords, order=1, mode="nearest")
                      for c in range(x.shape[-1])], axis=-1)  # fmt: skip
        y = ndimage.map_coordinates(y, coords, order=0, mode="constant", cval=0)
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)


class PatchSampler(keras.utils.PyDataset):
    """Batches ``(x, y)`` of grid patches: x (B, D, H, W, C) float32, y (B, D, H, W, 1) float32.

    Training (``shuffle=True``): ``patches_per_epoch`` patches (default: the
    number of grid patches) per epoch; with ``lesion_fraction`` f, each batch
    draws round(f * B) patches (rounded cumulatively over the epoch) from the
    grid patches that hold lesion and the rest from those that hold none;
    ``lesion_fraction=None`` samples all grid patches alike. Pools are cycled
    through in random order. Validation (``shuffle=False``, ``augment=False``):
    every grid patch once, in order. Everything is a function of ``(seed, epoch,
    batch index)``, so batches are reproducible whatever order they are asked in.
    """

    def __init__(self, volumes: Sequence[PreparedVolume], batch_size: int = 2, patch: Sequence[int] = (64, 64, 64),
                 stride: Sequence[int] = (32, 32, 32), lesion_fraction: float | None = 0.5, augment: bool = True,
                 patches_per_epoch: int | None = None, shuffle: bool = True, seed: int = 0, rotate_deg: float = 0.0,
                 elastic_alpha_vox: float = 0.0, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if not volumes:
            raise ValueError("PatchSampler needs at least one volume")
        if lesion_fraction is not None and not 0 <= lesion_fraction <= 1:
            raise ValueError(f"lesion_fraction must be in [0, 1] or None, not {lesion_fraction}")
        self.volumes, self.batch_size, self.patch = list(volumes), int(batch_size), tuple(int(p) for p in patch)
        self.lesion_fraction, self.augment, self.shuffle, self.seed = lesion_fraction, augment, shuffle, seed
        self.augment_params = {"rotate_deg": rotate_deg, "elastic_alpha_vox": elastic_alpha_vox}
        self.pad_values = [pad_values(v.volume, self.patch) for v in self.volumes]
        index, lesion = [], []
        for i, v in enumerate(self.volumes):
            for corner in patch_grid(v.volume.shape, self.patch, stride):
                index.append((i, *corner))
                lesion.append(bool(np.any(v.mask[tuple(slice(c, c + p) for c, p in zip(corner, self.patch))])))
        self.index, self.has_lesion = np.array(index, np.int64), np.array(lesion, bool)
        self.n_patches = int(patches_per_epoch or len(self.index))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (the training runner calls this at each epoch's start)."""
        self.epoch = int(epoch)
        n, order = self.n_patches, np.arange(len(self.index))
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.shuffle:
            self.plan = np.resize(order, n)
        elif self.lesion_fraction is None:
            self.plan = _cycle(rng, order, n)
        else:
            lesion, other = order[self.has_lesion], order[~self.has_lesion]
            lesion, other = (lesion if len(lesion) else other), (other if len(other) else lesion)
            ends = [min(b * self.batch_size, n) for b in range(len(self) + 1)]
            counts = np.diff([math.floor(self.lesion_fraction * e + 0.5) for e in ends])  # rounded cumulatively
            les, oth = iter(_cycle(rng, lesion, int(counts.sum()))), iter(_cycle(rng, other, n - int(counts.sum())))
            sizes = [min(self.batch_size, n - b * self.batch_size) for b in range(len(self))]
            self.plan = np.array([next(les) if j < c else next(oth) for c, s in zip(counts, sizes) for j in range(s)])

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)

    def __len__(self) -> int:
        return math.ceil(self.n_patches / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range ({len(self)} batches)")
        xs, ys = [], []
        for j, k in enumerate(self.plan[i * self.batch_size : (i + 1) * self.batch_size]):
            v, corner = int(self.index[k, 0]), self.index[k, 1:]
            x = extract_patch(self.volumes[v].volume, corner, self.patch, self.pad_values[v])
            x, y = x.astype(np.float32, copy=False), extract_patch(self.volumes[v].mask, corner, self.patch, 0)
            if self.augment:
                rng = np.random.default_rng([self.seed, self.epoch, i, j])
                x, y = augment_patch(x, y, rng, **self.augment_params)
            xs.append(x)
            ys.append(y)
        return np.stack(xs), np.stack(ys).astype(np.float32)[..., None]


def _cycle(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """``n`` items of ``pool``: whole random permutations one after another, the last cut short."""
    reps = math.ceil(n / len(pool)) if n else 0
    return np.concatenate([rng.permutation(pool) for _ in range(reps)] or [pool[:0]])[:n]
