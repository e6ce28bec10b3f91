"""The synthetic head in physical millimetres: tissue labels, smooth random fields and shapes, the anatomy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LABEL_NAMES", "BACKGROUND", "SCALP", "SKULL", "CSF", "GM", "WM", "VENTRICLE", "LESION", "DEEP_GM",
           "axis_weights", "smooth_field", "clipped_field", "random_rotation", "bounding_box", "paint_ellipsoids",
           "lps_affine", "build_anatomy"]  # fmt: skip


# Tissue labels of :attr:`SyntheticPatient.labels`.
BACKGROUND = 0  #: air outside the head


SCALP = 1  #: skin, fat and muscle over the skull


SKULL = 2  #: cortical bone


CSF = 3  #: subarachnoid CSF, sulci, interhemispheric fissure (not the ventricles)


GM = 4  #: cortical grey matter


WM = 5  #: normal-appearing white matter


VENTRICLE = 6  #: lateral ventricles (CSF)


LESION = 7  #: MS lesion (always inside what was white matter)


DEEP_GM = 8  #: thalami, lentiform and caudate nuclei


LABEL_NAMES = {
    BACKGROUND: "background",
    SCALP: "scalp",
    SKULL: "skull",
    CSF: "csf",
    GM: "gm",
    WM: "wm",
    VENTRICLE: "ventricle",
    LESION: "lesion",
    DEEP_GM: "deep_gm",
}


# Lateral ventricle, one side, head-centred mm: (y, |x|, z, rx, ry, rz), front to back.
_VENTRICLE_PATH = np.array(
    [
        (31.0, 5.5, 9.0, 4.5, 5.0, 7.0),  # frontal horn tip
        (22.0, 7.5, 11.0, 6.5, 8.0, 9.0),  # frontal horn
        (9.0, 8.5, 15.0, 4.5, 8.0, 6.5),  # body
        (-6.0, 10.5, 16.0, 3.0, 8.0, 4.0),  # body
        (-20.0, 14.0, 11.0, 3.5, 6.0, 4.5),  # atrium
        (-30.0, 15.0, 6.0, 2.0, 5.0, 2.5),  # occipital horn
    ]
)


# Deep grey matter, one side: (x, y, z, rx, ry, rz) head-centred mm, |x| mirrored.
_DEEP_NUCLEI = np.array(
    [
        (10.0, -6.0, 2.0, 7.0, 11.0, 7.0),  # thalamus
        (21.0, 4.0, 0.0, 5.0, 12.0, 8.0),  # lentiform nucleus
        (12.0, 20.0, 9.0, 4.0, 7.0, 6.0),  # caudate head
    ]
)


def axis_weights(coords: np.ndarray, corr_mm: float) -> np.ndarray:
    """Gaussian interpolation weights from a node grid (spacing ``corr_mm``) to ``coords``.

    Rows are normalised to unit L2 norm, so i.i.d. unit-normal node values give a
    field of unit variance everywhere.
    """
    h = float(corr_mm)
    lo = float(coords.min()) - 3 * h
    n_nodes = int(np.ceil((float(coords.max()) + 3 * h - lo) / h)) + 1
    nodes = lo + h * np.arange(n_nodes)
    w = np.exp(-0.5 * ((coords[:, None] - nodes[None, :]) / h) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def smooth_field(rng: np.random.Generator, axes_mm: Sequence[np.ndarray], corr_mm: float) -> np.ndarray:
    """Smooth Gaussian random field (mean 0, std 1) on the grid ``axes_mm`` (x, y, z mm).

    A coarse grid of normal values with node spacing ``corr_mm`` is interpolated
    with separable Gaussian weights: three small matrix products, no full-volume
    filtering.
    """
    wx, wy, wz = (axis_weights(np.asarray(a, np.float64), corr_mm) for a in axes_mm)
    coarse = rng.standard_normal((wx.shape[1], wy.shape[1], wz.shape[1]), dtype=np.float32)
    t = coarse @ wz.T  # (a, b, nz)
    t = np.tensordot(wy, t, axes=([1], [1]))  # (ny, a, nz)
    return np.ascontiguousarray(np.tensordot(wx, t, axes=([1], [1])))  # (nx, ny, nz)


def clipped_field(rng: np.random.Generator, axes_mm: Sequence[np.ndarray], corr_mm: float, limit: float = 2.0):
    return np.clip(smooth_field(rng, axes_mm, corr_mm), -limit, limit)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def bounding_box(axes: Sequence[np.ndarray], lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, ...] | None:
    """Index slices of the voxels whose coordinate along each axis lies in [lo, hi]."""
    out = []
    for a, l, h in zip(axes, lo, hi):
        idx = np.flatnonzero((a >= l) & (a <= h))
        if idx.size == 0:
            return None
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def paint_ellipsoids(
    axes: Sequence[np.ndarray],
    sl: tuple[slice, ...],
    centres: np.ndarray,
    radii: np.ndarray,
    wobble: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Boolean union of axis-aligned ellipsoids inside the box ``sl``; ``wobble`` roughens walls."""
    x, y, z = (a[s] for a, s in zip(axes, sl))
    inside = np.zeros(tuple(len(v) for v in (x, y, z)), bool)
    for (cx, cy, cz), (rx, ry, rz) in zip(centres, radii):
        q = (
            ((x - cx) / rx)[:, None, None] ** 2
            + ((y - cy) / ry)[None, :, None] ** 2
            + ((z - cz) / rz)[None, None, :] ** 2
        )
        inside |= q < (1.0 + wobble) ** 2
    return inside


def lps_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    sx, sy, sz = spacing
    cx, cy, cz = ((n - 1) / 2.0 for n in shape)
    return np.array(
        [[-sx, 0.0, 0.0, sx * cx], [0.0, -sy, 0.0, sy * cy], [0.0, 0.0, sz, -sz * cz], [0.0, 0.0, 0.0, 1.0]]
    )


def build_anatomy(rng: np.random.Generator, shape, spacing, affine):
    """Tissue labels (no lesions) and the head-centred world coordinate axes."""
    nx, ny, nz = shape
    # World (RAS+ mm) coordinate of each voxel centre along each axis; the affine is diagonal.
    wx = affine[0, 3] + affine[0, 0] * np.arange(nx)
    wy = affine[1, 3] + affine[1, 1] * np.arange(ny)
    wz = affine[2, 3] + affine[2, 2] * np.arange(nz)
    world = (wx, wy, wz)

    eps_surface = 0.04  # radial surface perturbation per unit of the (clipped +-2) field
    a, b, c = np.array([72.0, 92.0, 75.0]) * rng.uniform(0.92, 1.08, 3)
    b_front, b_back = b * 1.03, b * 0.97
    centre = rng.uniform([-3, -3, -5], [3, 3, 5])
    # Fit the head inside the in-plane field of view with a background margin.
    half_fov_x, half_fov_y = nx * spacing[0] / 2, ny * spacing[1] / 2
    margin = max(8.0, 0.05 * min(half_fov_x, half_fov_y) * 2)
    k = min(
        1.0,
        (half_fov_x - margin) / (a * (1 + 2 * eps_surface) + abs(centre[0])),
        (half_fov_y - margin) / (b_front * (1 + 2 * eps_surface) + abs(centre[1])),
    )
    k = max(k, 0.3)
    a, b_front, b_back, c = a * k, b_front * k, b_back * k, c * k

    # Head-centred axes (mm); still RAS: +x right, +y anterior, +z superior.
    X, Y, Z = ((w - c0).astype(np.float32) for w, c0 in zip(world, centre))
    axes = (X, Y, Z)
    by = np.where(Y > 0, b_front, b_back).astype(np.float32)
    a, c = np.float32(a), np.float32(c)
    rho2 = (X / a)[:, None, None] ** 2 + (Y / by)[None, :, None] ** 2 + (Z / c)[None, None, :] ** 2
    grad2 = (X / a**2)[:, None, None] ** 2 + (Y / by**2)[None, :, None] ** 2 + (Z / c**2)[None, None, :] ** 2
    rho = np.sqrt(rho2, dtype=np.float32)
    surface = 1.0 + eps_surface * clipped_field(rng, axes, 35.0)
    # Depth below the (perturbed) surface, first order: (r_surface - rho) / |grad rho|.
    depth = (surface - rho) * np.maximum(rho, 1e-3) / np.sqrt(np.maximum(grad2, 1e-12), dtype=np.float32)
    del rho2, grad2, surface

    d_scalp = 5.0 + 0.8 * clipped_field(rng, axes, 30.0)
    d_skull = d_scalp + 6.0 + 1.0 * clipped_field(rng, axes, 25.0)
    d_brain = d_skull + 2.5 + 0.5 * clipped_field(rng, axes, 20.0)
    d_wm = d_brain + 3.5 + 0.8 * clipped_field(rng, axes, 8.0)

    labels = np.full(shape, WM, np.uint8)
    labels[depth < d_wm] = GM
    labels[depth < d_brain] = CSF
    labels[depth < d_skull] = SKULL
    labels[depth < d_scalp] = SCALP
    labels[depth < 0] = BACKGROUND
    del d_scalp, d_skull

    # Sulci: thin sheets around the zero set of a smooth field, CSF lined by GM.
    below = depth - d_brain
    del depth, d_brain, d_wm
    # Zero crossings of this field are ~13 mm apart and its gradient is ~0.24 per mm:
    # |f| < 0.2 is a ~1.7 mm CSF sheet, |f| < 0.75 adds ~2.3 mm of GM on each bank.
    sulcal = np.abs(smooth_field(rng, axes, 3.0))
    sulcus_depth = 11.0 + 3.0 * clipped_field(rng, axes, 25.0)
    cortex = (below >= 0) & (below < sulcus_depth + 3.0)
    labels[cortex & (sulcal < 0.75) & (labels == WM)] = GM
    labels[cortex & (below < sulcus_depth) & (sulcal < 0.2)] = CSF
    del sulcal, sulcus_depth, cortex

    # Interhemispheric fissure (midline CSF lined by GM) away from the central core.
    fissure_zone = (
        (Z[None, None, :] > 22 * k) | (Y[None, :, None] > 32 * k) | (Y[None, :, None] < -42 * k)
    ) & (below >= 0)
    midline = np.abs(X + rng.uniform(-1, 1))[:, None, None]
    labels[fissure_zone & (midline < 3.5) & (labels == WM)] = GM
    labels[fissure_zone & (midline < 1.0)] = CSF
    del fissure_zone, below

    # Deep grey matter and lateral ventricles, in a box around the centre.
    sl = bounding_box(axes, (-45 * k, -55 * k, -25 * k), (45 * k, 55 * k, 40 * k))
    if sl is not None:
        nuclei = _DEEP_NUCLEI.copy() * k
        nuclei[:, 3:] *= rng.uniform(0.9, 1.1, (len(nuclei), 3))
        both = np.concatenate([nuclei, nuclei * [-1, 1, 1, 1, 1, 1]])
        deep = paint_ellipsoids(axes, sl, both[:, :3], both[:, 3:])
        sub = labels[sl]
        sub[deep & (sub == WM)] = DEEP_GM

        size = rng.uniform(0.9, 1.6)  # MS brains are often atrophic: larger ventricles
        path = _VENTRICLE_PATH.copy()
        path[:, 3:] *= size * rng.uniform(0.92, 1.08, (len(path), 3))
        path[:, 1] *= 0.5 + 0.5 * size
        path[:, :3] += rng.normal(0, 1.0, (len(path), 3))
        path *= k
        # Interpolate the keypoints into a chain of overlapping ellipsoids.
        t = np.linspace(0, len(path) - 1, 5 * (len(path) - 1) + 1)
        chain = np.stack([np.interp(t, np.arange(len(path)), path[:, m]) for m in range(6)], axis=1)
        centres = np.concatenate([np.stack([s * chain[:, 1], chain[:, 0], chain[:, 2]], 1) for s in (1, -1)])
        radii = np.concatenate([chain[:, [3, 4, 5]]] * 2)
        sub_axes = tuple(ax[s] for ax, s in zip(axes, sl))
        wobble = 0.12 * clipped_field(rng, sub_axes, 6.0)
        vent = paint_ellipsoids(axes, sl, centres, radii, wobble)
        septum = np.abs(sub_axes[0])[:, None, None] < 0.6
        vent &= ~septum & (sub >= GM)
        sub[vent] = VENTRICLE
    return labels, axes
