"""Synthetic patients: anatomy and lesions rendered as FLAIR, T1 and T2 with texture, blur, bias field and Rician noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mslesion.data.synthetic.anatomy import GM, LESION, WM, build_anatomy, clipped_field, lps_affine
from mslesion.data.synthetic.lesions import place_lesions

__all__ = ["SyntheticPatient", "generate_patient", "MODALITIES", "CONTRASTS", "render_images",
           "as_shape", "as_spacing", "T1_BLACK_HOLE"]  # fmt: skip


#: Modalities as spelled in the file names.
MODALITIES = ("Flair", "T1", "T2")


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




_BLUR_SIGMA_VOXELS = (0.6, 0.6, 0.4)


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


def render_images(rng, labels, lesion_id, t1_mask, n_lesions, axes):
    """Turn the label map into three int16 images."""
    lesion = lesion_id > 0
    brain = (labels == GM) | (labels == WM)
    lesion_gain = rng.uniform(0.88, 1.08, n_lesions + 1).astype(np.float32)
    texture = 1.0 + rng.uniform(0.03, 0.05) * clipped_field(rng, axes, 1.5, 3.0)
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
        signal *= np.exp(bias_amp * clipped_field(rng, axes, 110.0, 2.5))
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


def as_shape(shape) -> tuple[int, int, int]:
    out = tuple(int(s) for s in shape)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape!r}")
    return out  # type: ignore[return-value]


def as_spacing(spacing) -> tuple[float, float, float]:
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
    shape = as_shape(shape)
    spacing = as_spacing(spacing_mm)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    affine = lps_affine(shape, spacing)
    healthy, axes = build_anatomy(rng, shape, spacing, affine)
    lesion_id, t1_mask, lesions = place_lesions(rng, healthy, spacing)
    lesion = lesion_id > 0
    labels = healthy.copy()
    labels[lesion] = LESION
    images = render_images(rng, labels, lesion_id, t1_mask, len(lesions), axes)
    masks = {"Flair": lesion.astype(np.uint8), "T1": t1_mask.astype(np.uint8), "T2": lesion.astype(np.uint8)}
    return SyntheticPatient(images, masks, labels, affine, lesions, healthy, spacing)
