"""Bias-field correction of a volume: N4 (Tustison et al. 2010) through SimpleITK.

Raw clinical scans (the Muslim et al. data: not bias-corrected) carry a smooth multiplicative intensity field
that makes one tissue brighter on one side of the head; a z-score over the brain then mixes it into the
lesion contrast. ``mslesion prep --bias-correction n4`` removes it per volume and modality before
normalisation; the run records it (``prep_config.json``), so predict and evaluate correct new scans alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BIAS_CORRECTIONS", "n4_correct"]

BIAS_CORRECTIONS = ("none", "n4")


def n4_correct(volume_zhw: np.ndarray, spacing_zhw_mm: Sequence[float] | None = None, mask: np.ndarray | None = None,
               shrink: int = 4, iterations: Sequence[int] = (50, 50, 50, 50)) -> np.ndarray:  # fmt: skip
    """``volume_zhw`` divided by its N4-estimated bias field (float32, same shape).

    The field is fitted on a copy shrunk ``shrink`` times in-plane (through-plane too when there are enough
    slices), inside ``mask`` (default: Otsu's threshold), and evaluated at full resolution. Voxels outside the
    mask are divided by the field too, so the volume stays smooth at the mask's edge.

    Raises:
        ValueError: not a 3D volume, or a mask of another shape.
    """
    import SimpleITK as sitk

    volume = np.asarray(volume_zhw, np.float32)
    if volume.ndim != 3:
        raise ValueError(f"N4 needs a 3D volume (Z, H, W), not shape {volume.shape}")
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(f"N4 mask shape {np.shape(mask)} differs from the volume's {volume.shape}")
    # N4 models log intensities: it needs positive values inside the mask
    image = sitk.GetImageFromArray(volume - min(float(volume.min()), 0.0) + 1e-3)
    spacing = tuple(float(s) for s in spacing_zhw_mm) if spacing_zhw_mm else (1.0, 1.0, 1.0)
    image.SetSpacing(spacing[::-1])  # SimpleITK orders axes x, y, z
    if mask is None:
        region = sitk.OtsuThreshold(image, 0, 1, 200)
    else:
        region = sitk.GetImageFromArray(np.asarray(mask, np.uint8))
        region.CopyInformation(image)
    factors = [shrink, shrink, shrink if volume.shape[0] >= 8 * shrink else 1]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in iterations])
    corrector.Execute(sitk.Shrink(image, factors), sitk.Shrink(region, factors))
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image)).astype(np.float32)
    return volume / np.exp(log_field)
