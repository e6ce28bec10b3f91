import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from mslesion.evaluate.metrics import compute_all
from mslesion.evaluate.volume_metrics import (
    compute_hd95_mm,
    compute_patient_metrics,
    compute_volume_difference,
    compute_volume_ml,
)

NAN = float("nan")
SPACING = (5.0, 1.0, 1.0)  # thick axial slices along axis 0
EMPTY = np.zeros((20, 20, 20), bool)
CUBE = EMPTY.copy()
CUBE[5:11, 5:11, 5:11] = True  # 216 voxels


def _surface(mask):
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, mask.ndim))


def _hd_uncropped(y_true, y_pred, spacing, q=95.0):
    """Reference: the same definition on the full array, no cropping."""
    st, sp = _surface(y_true), _surface(y_pred)
    to_t = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return max(np.percentile(to_t[sp], q), np.percentile(to_p[st], q))


def _hd_brute_force(y_true, y_pred, spacing, q=95.0):
    """Reference: all pairwise surface distances in mm."""
    pt = np.argwhere(_surface(y_true)) * np.asarray(spacing)
    pp = np.argwhere(_surface(y_pred)) * np.asarray(spacing)
    d = cdist(pt, pp)
    return max(np.percentile(d.min(axis=0), q), np.percentile(d.min(axis=1), q))


def _random_pair(shape=(40, 48, 36), seed=0):
    rng = np.random.default_rng(seed)
    t, p = np.zeros(shape, bool), np.zeros(shape, bool)
    t[22:34, 28:40, 20:30] = rng.random((12, 12, 10)) < 0.5  # off-centre, so the crop is a real crop
    p[24:37, 25:44, 18:31] = rng.random((13, 19, 13)) < 0.3
    return t, p


def test_volume_ml_for_known_count_and_spacing():
    assert compute_volume_ml(CUBE, SPACING) == pytest.approx(216 * 5 / 1000)
    assert compute_volume_ml(CUBE.astype(np.uint8), (1, 1, 1)) == pytest.approx(0.216)
    assert compute_volume_ml(EMPTY, SPACING) == 0.0
    with pytest.raises(ValueError, match="3 axes"):
        compute_volume_ml(CUBE, (1.0, 1.0))


@pytest.mark.parametrize(
    "y_true, y_pred, rel",
    [
        (CUBE, CUBE, 0.0),
        (CUBE, CUBE | np.roll(CUBE, 3, axis=1), 0.5),  # over-segmentation: positive
        (CUBE, CUBE & np.roll(CUBE, 3, axis=1), -0.5),  # under-segmentation: negative
        (CUBE, EMPTY, -1.0),
        (EMPTY, CUBE, NAN),
        (EMPTY, EMPTY, NAN),
    ],
)
def test_volume_difference_sign_and_empty(y_true, y_pred, rel):
    out = compute_volume_difference(y_true, y_pred, SPACING)
    vt, vp = y_true.sum() * 5 / 1000, y_pred.sum() * 5 / 1000
    assert out["volume_true_ml"] == pytest.approx(vt)
    assert out["volume_pred_ml"] == pytest.approx(vp)
    assert out["abs_volume_diff_ml"] == pytest.approx(abs(vp - vt))
    assert out["rel_volume_diff"] == pytest.approx(rel, nan_ok=True)


@pytest.mark.parametrize(
    "axis, shift, expected_mm",
    [(0, 2, 10.0), (0, -1, 5.0), (2, 3, 3.0), (1, 1, 1.0), (2, 0, 0.0)],
)
def test_hd95_of_shifted_cube_with_anisotropic_spacing(axis, shift, expected_mm):
    shifted = np.roll(CUBE, shift, axis=axis)
    assert compute_hd95_mm(CUBE, shifted, SPACING) == pytest.approx(expected_mm)
    assert compute_hd95_mm(shifted, CUBE, SPACING) == pytest.approx(expected_mm)  # symmetric


def test_hd95_identical_masks_is_zero_and_works_in_2d():
    assert compute_hd95_mm(CUBE, CUBE, SPACING) == 0.0
    square = CUBE[8]
    assert compute_hd95_mm(square, np.roll(square, 4, axis=1), (0.5, 2.0)) == pytest.approx(8.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_hd95_cropped_equals_uncropped_and_brute_force(seed):
    t, p = _random_pair(seed=seed)
    spacing = (3.0, 0.9, 1.2)
    for q in (95.0, 100.0, 50.0):
        got = compute_hd95_mm(t, p, spacing, percentile=q)
        assert got == pytest.approx(_hd_uncropped(t, p, spacing, q), rel=1e-12)
        assert got == pytest.approx(_hd_brute_force(t, p, spacing, q), rel=1e-12)


def test_hd95_mask_touching_the_array_border():
    t = np.zeros((10, 12, 12), bool)
    t[0:4, 0:5, 7:12] = True  # touches three faces of the array
    p = np.roll(t, 2, axis=1)
    assert compute_hd95_mm(t, p, (2.0, 1.0, 1.0)) == pytest.approx(_hd_uncropped(t, p, (2.0, 1.0, 1.0)))


@pytest.mark.parametrize("y_true, y_pred", [(EMPTY, EMPTY), (CUBE, EMPTY), (EMPTY, CUBE)])
def test_hd95_nan_when_either_mask_is_empty(y_true, y_pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(compute_hd95_mm(y_true, y_pred, SPACING))


def test_patient_metrics_is_one_flat_row():
    pred = np.roll(CUBE, 2, axis=0)
    out = compute_patient_metrics(CUBE, pred.astype(np.uint8), SPACING)
    assert {k: out[k] for k in compute_all(CUBE, pred)} == compute_all(CUBE, pred, beta=3.0)
    assert out["hd95_mm"] == pytest.approx(10.0)
    assert out["rel_volume_diff"] == 0.0
    assert "f2" in compute_patient_metrics(CUBE, pred, SPACING, beta=2)
    assert all(np.isscalar(v) for v in out.values())


def test_patient_metrics_both_empty_gives_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_patient_metrics(EMPTY, EMPTY, SPACING)
    for key in ("dice", "sensitivity", "ppv", "rel_volume_diff", "hd95_mm"):
        assert np.isnan(out[key]), key
    assert out["abs_volume_diff_ml"] == 0.0


def test_patient_metrics_validates_inputs():
    with pytest.raises(ValueError, match=r"\(20, 20, 20\).*\(20, 20, 19\)"):
        compute_patient_metrics(CUBE, CUBE[:, :, :19], SPACING)
    with pytest.raises(ValueError, match="spacing_mm"):
        compute_patient_metrics(CUBE, CUBE, (1.0, 1.0))
