"""Synthetic MS lesions: irregular white-matter blobs with heavy-tailed sizes, most near a ventricle."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mslesion.data.synthetic.anatomy import VENTRICLE, WM, random_rotation, smooth_field

__all__ = ["BLACK_HOLE_MIN_MM3", "ventricle_distance", "place_lesions"]

#: Smallest lesion (mm³ inside white matter) that may be a T1 black hole.
BLACK_HOLE_MIN_MM3 = 200.0


_PERIVENTRICULAR_FRACTION = 0.6


_PERIVENTRICULAR_MM = 10.0


_LESION_COUNT = (4, 25)


_LESION_MAX_RADIUS_MM = 12.0


def ventricle_distance(labels: np.ndarray, spacing, reach_mm: float) -> np.ndarray:
    """Distance (mm) to the nearest ventricle voxel, exact within ``reach_mm``, else inf.

    The distance transform only runs on the ventricles' bounding box plus ``reach_mm``.
    """
    dist = np.full(labels.shape, np.inf, np.float32)
    vent = labels == VENTRICLE
    if not vent.any():
        return dist
    sl = []
    for axis, sp in enumerate(spacing):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(vent.any(axis=other))
        pad = int(np.ceil(reach_mm / sp)) + 1
        sl.append(slice(max(0, idx[0] - pad), min(labels.shape[axis], idx[-1] + pad + 1)))
    sl = tuple(sl)
    d = ndimage.distance_transform_edt(~vent[sl], sampling=spacing).astype(np.float32)
    d[d > reach_mm] = np.inf
    dist[sl] = d
    return dist


def place_lesions(rng: np.random.Generator, healthy: np.ndarray, spacing):
    """Paint lesions into white matter. Returns lesion id map, T1 mask, lesion dicts."""
    shape = healthy.shape
    sp = np.asarray(spacing, float)
    wm = healthy == WM
    wm_flat = np.flatnonzero(wm)
    if wm_flat.size == 0:
        raise ValueError("the grid holds no white matter (field of view too small); cannot place lesions")
    near = ventricle_distance(healthy, spacing, _PERIVENTRICULAR_MM + 2) <= _PERIVENTRICULAR_MM
    periv_flat = np.flatnonzero(wm & near)
    del near

    lesion_id = np.zeros(shape, np.int16)
    blobs: list[tuple[tuple[slice, ...], np.ndarray]] = []
    lesions: list[dict] = []
    n = int(rng.integers(_LESION_COUNT[0], _LESION_COUNT[1] + 1))
    for index in range(n):
        periv = bool(rng.random() < _PERIVENTRICULAR_FRACTION) and periv_flat.size > 0
        pool = periv_flat if periv else wm_flat
        centre = np.array(np.unravel_index(pool[rng.integers(pool.size)], shape))
        radius = float(min(_LESION_MAX_RADIUS_MM, 1.5 + 2.5 * rng.pareto(2.0)))
        semi = radius * rng.uniform(0.65, 1.35, 3)
        rot = random_rotation(rng)
        half = np.ceil((semi.max() * 1.3 + sp) / sp).astype(int)
        lo = np.maximum(centre - half, 0)
        hi = np.minimum(centre + half + 1, shape)
        sl = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
        local = tuple((np.arange(l, h) - c) * s for l, h, c, s in zip(lo, hi, centre, sp))
        # Offsets rotated into the lesion frame: (R^T d)_m = sum_a d_a R[a, m].
        q2 = np.zeros(tuple(hi - lo), np.float64)
        for m in range(3):
            comp = (
                (local[0] * rot[0, m])[:, None, None]
                + (local[1] * rot[1, m])[None, :, None]
                + (local[2] * rot[2, m])[None, None, :]
            )
            q2 += (comp / semi[m]) ** 2
        noise = smooth_field(rng, local, max(1.5, 0.5 * radius))
        blob = (np.sqrt(q2) < 1.0 + 0.25 * noise) & wm[sl]
        blob[tuple(centre - lo)] = True  # the centre is a white-matter voxel: never empty
        lesion_id[sl][blob] = index + 1
        blobs.append((sl, blob))
        lesions.append(
            {
                "centre_voxel": [int(v) for v in centre],
                "n_voxels": int(blob.sum()),
                "radius_mm": round(radius, 3),
                "periventricular": periv,
                "black_hole": False,
            }
        )

    # T1 black holes: the larger lesions, each with probability 0.65, at least the largest one.
    voxel_mm3 = float(np.prod(sp))
    volumes = np.array([les["n_voxels"] * voxel_mm3 for les in lesions])
    draws = rng.random(len(lesions))
    big = volumes >= BLACK_HOLE_MIN_MM3
    chosen = big & (draws < 0.65)
    if big.any() and not chosen.any():
        chosen[int(np.argmax(volumes))] = True
    t1_mask = np.zeros(shape, bool)
    for les, (sl, blob), is_hole in zip(lesions, blobs, chosen):
        les["black_hole"] = bool(is_hole)
        if is_hole:
            t1_mask[sl] |= blob
    return lesion_id, t1_mask, lesions
