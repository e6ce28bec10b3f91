"""A deterministic synthetic multiple-sclerosis cohort, written as NIfTI.

Each patient is a brain MRI study with three co-registered modalities (FLAIR,
T1, T2) and per-modality lesion masks, laid out like the public Muslim et al.
(2022) MS dataset::

    out_dir/Patient-<id>/<id>-Flair.nii.gz        <id>-LesionSeg-Flair.nii.gz
                         <id>-T1.nii.gz           <id>-LesionSeg-T1.nii.gz
                         <id>-T2.nii.gz           <id>-LesionSeg-T2.nii.gz
    out_dir/cohort.json

It is meant to look like brain MRI to a segmentation model, not like noise.
Everything is built in physical millimetres on the voxel grid:

* **Head**: an ellipsoid (semi-axes ~72 x 92 x 75 mm, +-8 % per patient, a little
  longer in front than behind) whose surface is perturbed by a smooth random
  radial field. Layers by depth below that surface: scalp (~5 mm), skull
  (~6 mm), subarachnoid CSF (~2.5 mm), cortical grey matter (~3.5 mm, wavy, with
  CSF-filled sulci lined by GM and an interhemispheric fissure), white matter.
* **Deep structures**: lateral ventricles (two curved chains of ellipsoids, the
  frontal horns larger than the occipital ends), thalami, lentiform and caudate
  nuclei (label :data:`DEEP_GM`).
* **Lesions**: 4 to 25 irregular blobs with heavy-tailed sizes (radius 1 to
  12 mm), painted in white matter only, ~60 % of centres drawn within 10 mm of
  a ventricle.
* **Images**: per-tissue relative intensities (:data:`CONTRASTS`, varied a few %
  per patient), smooth multiplicative texture, partial-volume Gaussian blur,
  a smooth bias field per modality, Rician noise, scaled to int16 with a
  per-patient, per-modality maximum between 400 and 1500.

Orientation. The affine is ``diag(-sx, -sy, sz)`` plus an origin that puts the
volume centre at world (0, 0, 0) (the head centre within a few mm of it), as
DICOM converters write LPS-stored data: ``nib.aff2axcodes`` gives
``('L', 'P', 'S')``. So increasing the first index goes toward the patient's
*left* (index 0 is the patient's right), increasing the second index goes
*posterior* (index 0 is the front of the head), the third goes superior. The
anatomy is built in world (RAS+) millimetres through that same affine, so it
is consistent with it by construction; frontal horns are at world +y.

Masks. ``Flair`` and ``T2`` masks hold every lesion. The ``T1`` mask holds
only the T1 "black holes": lesions of at least :data:`BLACK_HOLE_MIN_MM3` mm³,
each kept with probability 0.65, and at least the largest one when any lesion
is that big. A patient whose lesions are all small therefore has an **empty
T1 mask** (load it with ``allow_empty=True``). All lesions are hypointense on
T1; black holes are darker still.

Determinism. :func:`generate_patient` with the same seed returns identical
arrays; :func:`generate_cohort` seeds patient ``<id>`` with
``SeedSequence([seed, id])``, so a patient does not depend on how many others
are generated alongside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mslesion.fileio import atomic_path, save_json
from mslesion.outputs import output_dir

__all__ = [
    "SyntheticPatient",
    "generate_patient",
    "write_patient",
    "generate_cohort",
    "MODALITIES",
    "CONTRASTS",
    "LABEL_NAMES",
    "BACKGROUND",
    "SCALP",
    "SKULL",
    "CSF",
    "GM",
    "WM",
    "VENTRICLE",
    "LESION",
    "DEEP_GM",
    "BLACK_HOLE_MIN_MM3",
    "GENERATOR",
    "GENERATOR_VERSION",
]

GENERATOR = "mslesion.synthetic"
#: Bump whenever the same seed would give different arrays.
GENERATOR_VERSION = "1.0"

#: Modalities as spelled in the file names.
MODALITIES = ("Flair", "T1", "T2")

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

#: Relative signal per tissue label (index = label) before texture, blur, bias
#: and noise; each value is varied by ~3 % per patient.
CONTRASTS: dict[str, tuple[float, ...]] = {
    #          bg   scalp skull  csf   gm    wm   vent  lesion deepGM
    "Flair": (0.0, 0.60, 0.05, 0.08, 0.58, 0.44, 0.07, 1.00, 0.50),
    "T1": (0.0, 0.90, 0.08, 0.15, 0.50, 0.75, 0.13, 0.35, 0.60),
    "T2": (0.0, 0.55, 0.06, 1.00, 0.55, 0.40, 1.00, 0.85, 0.48),
}
#: T1 signal of black-hole lesions (the lesions in the T1 mask).
T1_BLACK_HOLE = 0.22
#: Smallest lesion (mm³ inside white matter) that may be a T1 black hole.
BLACK_HOLE_MIN_MM3 = 200.0

_PERIVENTRICULAR_FRACTION = 0.6
_PERIVENTRICULAR_MM = 10.0
_LESION_COUNT = (4, 25)
_LESION_MAX_RADIUS_MM = 12.0
_BLUR_SIGMA_VOXELS = (0.6, 0.6, 0.4)

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


@dataclass
class SyntheticPatient:
    """One synthetic study, arrays in voxel order ``(x, y, z)``.

    Attributes:
        images: modality (``"Flair"``, ``"T1"``, ``"T2"``) -> int16 image.
        masks: modality -> uint8 {0, 1} lesion mask (T1: black holes only, may be empty).
        labels: uint8 tissue labels (:data:`BACKGROUND` ... :data:`DEEP_GM`), lesions painted.
        affine: 4x4 voxel -> world (RAS+ mm) matrix, ``diag(-sx, -sy, sz)`` + origin.
        lesions: one dict per lesion: ``centre_voxel`` (i, j, k), ``n_voxels`` (its own
            blob inside white matter; blobs may overlap), ``radius_mm``, ``periventricular``
            (centre drawn near a ventricle), ``black_hole`` (in the T1 mask).
        healthy_labels: the label map before lesions were painted.
        spacing_mm: voxel size (sx, sy, sz).
    """

    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    labels: np.ndarray
    affine: np.ndarray
    lesions: list[dict]
    healthy_labels: np.ndarray
    spacing_mm: tuple[float, float, float]


# --------------------------------------------------------------------------- fields


def _axis_weights(coords: np.ndarray, corr_mm: float) -> np.ndarray:
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


def _smooth_field(rng: np.random.Generator, axes_mm: Sequence[np.ndarray], corr_mm: float) -> np.ndarray:
    """Smooth Gaussian random field (mean 0, std 1) on the grid ``axes_mm`` (x, y, z mm).

    A coarse grid of normal values with node spacing ``corr_mm`` is interpolated
    with separable Gaussian weights: three small matrix products, no full-volume
    filtering.
    """
    wx, wy, wz = (_axis_weights(np.asarray(a, np.float64), corr_mm) for a in axes_mm)
    coarse = rng.standard_normal((wx.shape[1], wy.shape[1], wz.shape[1]), dtype=np.float32)
    t = coarse @ wz.T  # (a, b, nz)
    t = np.tensordot(wy, t, axes=([1], [1]))  # (ny, a, nz)
    return np.ascontiguousarray(np.tensordot(wx, t, axes=([1], [1])))  # (nx, ny, nz)


def _clipped(rng: np.random.Generator, axes_mm: Sequence[np.ndarray], corr_mm: float, limit: float = 2.0):
    return np.clip(_smooth_field(rng, axes_mm, corr_mm), -limit, limit)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _box(axes: Sequence[np.ndarray], lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, ...] | None:
    """Index slices of the voxels whose coordinate along each axis lies in [lo, hi]."""
    out = []
    for a, l, h in zip(axes, lo, hi):
        idx = np.flatnonzero((a >= l) & (a <= h))
        if idx.size == 0:
            return None
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


def _paint_ellipsoids(
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


# --------------------------------------------------------------------------- anatomy


def _affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    sx, sy, sz = spacing
    cx, cy, cz = ((n - 1) / 2.0 for n in shape)
    return np.array(
        [[-sx, 0.0, 0.0, sx * cx], [0.0, -sy, 0.0, sy * cy], [0.0, 0.0, sz, -sz * cz], [0.0, 0.0, 0.0, 1.0]]
    )


def _anatomy(rng: np.random.Generator, shape, spacing, affine):
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
    surface = 1.0 + eps_surface * _clipped(rng, axes, 35.0)
    # Depth below the (perturbed) surface, first order: (r_surface - rho) / |grad rho|.
    depth = (surface - rho) * np.maximum(rho, 1e-3) / np.sqrt(np.maximum(grad2, 1e-12), dtype=np.float32)
    del rho2, grad2, surface

    d_scalp = 5.0 + 0.8 * _clipped(rng, axes, 30.0)
    d_skull = d_scalp + 6.0 + 1.0 * _clipped(rng, axes, 25.0)
    d_brain = d_skull + 2.5 + 0.5 * _clipped(rng, axes, 20.0)
    d_wm = d_brain + 3.5 + 0.8 * _clipped(rng, axes, 8.0)

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
    sulcal = np.abs(_smooth_field(rng, axes, 3.0))
    sulcus_depth = 11.0 + 3.0 * _clipped(rng, axes, 25.0)
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
    sl = _box(axes, (-45 * k, -55 * k, -25 * k), (45 * k, 55 * k, 40 * k))
    if sl is not None:
        nuclei = _DEEP_NUCLEI.copy() * k
        nuclei[:, 3:] *= rng.uniform(0.9, 1.1, (len(nuclei), 3))
        both = np.concatenate([nuclei, nuclei * [-1, 1, 1, 1, 1, 1]])
        deep = _paint_ellipsoids(axes, sl, both[:, :3], both[:, 3:])
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
        wobble = 0.12 * _clipped(rng, sub_axes, 6.0)
        vent = _paint_ellipsoids(axes, sl, centres, radii, wobble)
        septum = np.abs(sub_axes[0])[:, None, None] < 0.6
        vent &= ~septum & (sub >= GM)
        sub[vent] = VENTRICLE
    return labels, axes


def _ventricle_distance(labels: np.ndarray, spacing, reach_mm: float) -> np.ndarray:
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


def _lesions(rng: np.random.Generator, healthy: np.ndarray, spacing):
    """Paint lesions into white matter. Returns lesion id map, T1 mask, lesion dicts."""
    shape = healthy.shape
    sp = np.asarray(spacing, float)
    wm = healthy == WM
    wm_flat = np.flatnonzero(wm)
    if wm_flat.size == 0:
        raise ValueError("the grid holds no white matter (field of view too small); cannot place lesions")
    near = _ventricle_distance(healthy, spacing, _PERIVENTRICULAR_MM + 2) <= _PERIVENTRICULAR_MM
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
        rot = _random_rotation(rng)
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
        noise = _smooth_field(rng, local, max(1.5, 0.5 * radius))
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


# --------------------------------------------------------------------------- imaging


def _render(rng, labels, lesion_id, t1_mask, n_lesions, axes):
    """Turn the label map into three int16 images."""
    lesion = lesion_id > 0
    brain = (labels == GM) | (labels == WM)
    lesion_gain = rng.uniform(0.88, 1.08, n_lesions + 1).astype(np.float32)
    texture = 1.0 + rng.uniform(0.03, 0.05) * _clipped(rng, axes, 1.5, 3.0)
    images = {}
    for mod in MODALITIES:
        lut = np.asarray(CONTRASTS[mod], np.float32) * rng.normal(1.0, 0.03, len(CONTRASTS[mod])).astype(np.float32)
        signal = lut[labels]
        if mod != "T1":
            signal[lesion] *= lesion_gain[lesion_id[lesion]]
        else:
            signal[t1_mask] = T1_BLACK_HOLE * rng.normal(1.0, 0.03)
        signal *= texture
        signal = ndimage.gaussian_filter(signal, _BLUR_SIGMA_VOXELS, mode="nearest")
        bias_amp = rng.uniform(0.05, 0.09)  # exp(+-2 * amp): +-10-20 %
        signal *= np.exp(bias_amp * _clipped(rng, axes, 110.0, 2.5))
        sigma = rng.uniform(0.02, 0.04) * float(signal[brain].mean()) if brain.any() else 0.01
        n1 = rng.standard_normal(signal.shape, dtype=np.float32)
        n2 = rng.standard_normal(signal.shape, dtype=np.float32)
        signal += sigma * n1
        signal *= signal
        n2 *= sigma
        n2 *= n2
        signal += n2
        np.sqrt(signal, out=signal)
        peak = rng.uniform(400, 1500)
        signal *= peak / max(float(signal.max()), 1e-6)
        images[mod] = np.rint(signal).astype(np.int16)
    return images


def _as_shape(shape) -> tuple[int, int, int]:
    out = tuple(int(s) for s in shape)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape!r}")
    return out  # type: ignore[return-value]


def _as_spacing(spacing) -> tuple[float, float, float]:
    out = tuple(float(s) for s in spacing)
    if len(out) != 3 or not all(np.isfinite(out)) or min(out) <= 0:
        raise ValueError(f"spacing_mm must be three positive numbers, got {spacing!r}")
    return out  # type: ignore[return-value]


def generate_patient(
    seed: int | Sequence[int],
    shape: tuple[int, int, int] = (256, 256, 24),
    spacing_mm: tuple[float, float, float] = (0.9, 0.9, 5.0),
) -> SyntheticPatient:
    """Generate one synthetic MS patient in memory.

    Args:
        seed: an int, or a sequence of ints (``[cohort_seed, patient_id]`` reproduces
            a patient of :func:`generate_cohort`); fed to ``np.random.SeedSequence``.
        shape: voxels along (x, y, z); z is the axial slice axis.
        spacing_mm: voxel size along (x, y, z) in mm.

    Returns:
        The images, masks, label maps, affine and lesion list. The same seed, shape
        and spacing always give identical arrays.

    Raises:
        ValueError: bad shape/spacing, or a grid that holds no white matter.
    """
    shape = _as_shape(shape)
    spacing = _as_spacing(spacing_mm)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    affine = _affine(shape, spacing)
    healthy, axes = _anatomy(rng, shape, spacing, affine)
    lesion_id, t1_mask, lesions = _lesions(rng, healthy, spacing)
    lesion = lesion_id > 0
    labels = healthy.copy()
    labels[lesion] = LESION
    images = _render(rng, labels, lesion_id, t1_mask, len(lesions), axes)
    masks = {"Flair": lesion.astype(np.uint8), "T1": t1_mask.astype(np.uint8), "T2": lesion.astype(np.uint8)}
    return SyntheticPatient(images, masks, labels, affine, lesions, healthy, spacing)


# --------------------------------------------------------------------------- writing


def _nifti(data: np.ndarray, affine: np.ndarray, spacing, descrip: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # scanner
    img.set_sform(affine, code=1)
    hdr = img.header
    hdr.set_data_dtype(data.dtype)
    hdr.set_xyzt_units(xyz="mm")
    hdr.set_zooms(tuple(float(s) for s in spacing))
    hdr["descrip"] = descrip.encode()[:79]
    return img


def write_patient(patient: SyntheticPatient, out_dir: Path, patient_id: str) -> Path:
    """Write one patient as ``out_dir/Patient-<id>/<id>-<Mod>.nii.gz`` + ``<id>-LesionSeg-<Mod>.nii.gz``.

    Every file is written to a temporary sibling and renamed into place, so a
    file exists whole or not at all. Existing files of the same names are replaced.

    Args:
        patient: from :func:`generate_patient`.
        out_dir: the cohort folder.
        patient_id: the id used in the folder and file names (``"7"``).

    Returns:
        The ``Patient-<id>`` folder.
    """
    folder = Path(out_dir) / f"Patient-{patient_id}"
    folder.mkdir(parents=True, exist_ok=True)
    for mod in MODALITIES:
        for name, data, what in (
            (f"{patient_id}-{mod}.nii.gz", patient.images[mod].astype(np.int16, copy=False), "image"),
            (f"{patient_id}-LesionSeg-{mod}.nii.gz", patient.masks[mod].astype(np.uint8, copy=False), "lesion mask"),
        ):
            img = _nifti(data, patient.affine, patient.spacing_mm, f"{GENERATOR} {GENERATOR_VERSION} {mod} {what}")
            with atomic_path(folder / name) as tmp:
                nib.save(img, tmp)
    return folder


def generate_cohort(
    out_dir: str | Path,
    n_patients: int = 10,
    seed: int = 0,
    shape: tuple[int, int, int] = (256, 256, 24),
    spacing_mm: tuple[float, float, float] = (0.9, 0.9, 5.0),
    start_id: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """Generate and write a cohort of synthetic patients, plus ``cohort.json``.

    Patient ids run ``start_id .. start_id + n_patients - 1``; patient ``<id>`` is
    ``generate_patient([seed, id], shape, spacing_mm)``, so it is the same whatever
    ``n_patients`` is. ``cohort.json`` describes the patients written by this call.

    Args:
        out_dir: cohort folder: new, empty, or (with ``overwrite``) a cohort this
            toolkit wrote, replaced whole once complete (:func:`mslesion.outputs.output_dir`).
        n_patients: how many patients.
        seed: cohort seed.
        shape: voxels along (x, y, z).
        spacing_mm: voxel size in mm.
        start_id: id of the first patient.
        overwrite: replace an existing synthetic cohort at ``out_dir``.

    Returns:
        The ``Patient-<id>`` folders, in id order.

    Raises:
        OutputError: ``out_dir`` holds files mslesion did not write, or a cohort
            and ``overwrite`` is False (checked before anything is written).
        ValueError: negative ``n_patients`` or ``start_id``, bad shape/spacing.
    """
    if n_patients < 0 or start_id < 0:
        raise ValueError(f"n_patients and start_id must be >= 0, got {n_patients} and {start_id}")
    out_dir = Path(out_dir)
    shape = _as_shape(shape)
    spacing = _as_spacing(spacing_mm)
    ids = [start_id + k for k in range(n_patients)]
    with output_dir(out_dir, "cohort", overwrite=overwrite) as tmp:
        summary = [_write_one(tmp, int(seed), pid, shape, spacing) for pid in ids]
        save_json(tmp / "cohort.json", {
            "generator": GENERATOR, "version": GENERATOR_VERSION, "n_patients": n_patients, "seed": int(seed),
            "start_id": start_id, "seeding": "numpy SeedSequence([seed, patient_id])", "shape": list(shape),
            "spacing_mm": list(spacing), "modalities": list(MODALITIES),
            "labels": {str(k): v for k, v in LABEL_NAMES.items()}, "patients": summary,
        })  # fmt: skip
    return [out_dir / f"Patient-{pid}" for pid in ids]


def _write_one(out_dir: Path, seed: int, pid: int, shape, spacing) -> dict:
    """Generate and write patient ``pid``; its ``cohort.json`` entry."""
    patient = generate_patient([seed, pid], shape, spacing)
    write_patient(patient, out_dir, str(pid))
    counts = {mod: int(patient.masks[mod].sum()) for mod in MODALITIES}
    return {
        "id": str(pid), "folder": f"Patient-{pid}", "n_lesions": len(patient.lesions),
        "n_black_holes": sum(les["black_hole"] for les in patient.lesions), "lesion_voxels": counts["Flair"],
        "lesion_volume_mm3": round(counts["Flair"] * float(np.prod(spacing)), 3), "mask_voxels": counts,
    }  # fmt: skip
