"""Resampling to a target voxel size (``prep --spacing``) and its way back to the source grid."""

import cv2
import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from mslesion.cli import main
from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.data.reader import open_case, read_manifest
from mslesion.data.resampling import Resampling, parse_spacing, plan_resampling
from mslesion.data.slicing import SliceConfig, slice_case, to_native_stack, to_native_volume

from .conftest import LGG, LJUBLJANA, phantom, requires, write_nifti


@pytest.mark.parametrize("given, target", [
    ((1,), (1.0, 1.0, 1.0)), ((0.5, 0.5), (None, 0.5, 0.5)), ((3, 0, 1), (3.0, None, 1.0)),
    (None, None), ((0, 0, 0), None),
])  # fmt: skip
def test_spacing_values(given, target):
    assert parse_spacing(given) == target


@pytest.mark.parametrize("bad", [(1, 1, 1, 1), (-1,), (1, float("nan"))])
def test_bad_spacing_refused_when_configured(bad):
    with pytest.raises(ValueError, match="spacing"):
        SliceConfig(spacing=bad)


def test_plan_keeps_the_extent_and_states_the_spacing_reached():
    plan = plan_resampling((19, 512, 512), (6.5, 0.45, 0.45), (None, 1.0, 1.0))
    assert plan.target_zhw == (19, 230, 230)
    np.testing.assert_allclose(plan.target_spacing_mm, (6.5, 512 * 0.45 / 230, 512 * 0.45 / 230))
    assert Resampling.from_dict(plan.to_dict()) == plan
    assert plan_resampling((19, 512, 512), (6.5, 0.45, 0.45), (6.5, 0.45, 0.45)) is None
    with pytest.raises(ValueError, match="TIFF"):
        plan_resampling((19, 256, 256), None, (1.0, 1.0, 1.0))


@pytest.mark.parametrize("source_zhw, target_zhw", [((6, 20, 30), (6, 40, 45)), ((6, 20, 30), (6, 13, 21))])
def test_in_plane_resampling_is_opencv_resize(source_zhw, target_zhw):
    """Per axis, linear where refined and area averaging where coarsened: cv2.resize slice by slice."""
    stack = np.random.default_rng(0).random((*source_zhw, 2)).astype(np.float32)
    plan = Resampling(source_zhw, (3.0, 1.0, 1.0), target_zhw)
    interpolation = cv2.INTER_LINEAR if target_zhw[1] > source_zhw[1] else cv2.INTER_AREA
    expected = np.stack([cv2.resize(s, target_zhw[:0:-1], interpolation=interpolation) for s in stack])
    np.testing.assert_allclose(plan.image(stack), expected, atol=1e-5)


def test_refining_matches_scipy_linear_interpolation_at_voxel_centres():
    """Through-plane refinement is linear interpolation at the new voxel centres (scipy's grid mode)."""
    stack = np.random.default_rng(1).random((5, 8, 9)).astype(np.float32)
    plan = Resampling((5, 8, 9), (5.0, 1.0, 1.0), (25, 8, 9))
    expected = ndi.zoom(stack, (5, 1, 1), order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(plan.image(stack), expected, atol=1e-5)


@pytest.mark.parametrize("target_zhw", [(21, 20, 30), (7, 40, 60), (10, 50, 31)])
def test_a_refined_mask_maps_back_exactly(target_zhw):
    """Refining (integer factors or not): the way back of the resampled mask is the source mask."""
    mask = np.random.default_rng(2).random((7, 20, 30)) > 0.7
    plan = Resampling((7, 20, 30), (3.0, 1.0, 1.0), target_zhw)
    resampled = plan.mask(mask)
    assert resampled.shape == target_zhw and resampled.dtype == bool
    np.testing.assert_array_equal(plan.to_source(resampled.astype(np.float32), "mask"), mask)
    np.testing.assert_allclose(plan.to_source(resampled.astype(np.float32)), mask)


def test_a_coarsened_mask_comes_back_close_but_not_exact():
    image, mask = phantom((40, 48, 10))
    mask = np.moveaxis(mask, -1, 0) > 0
    plan = Resampling((10, 40, 48), (4.0, 1.0, 1.0), (10, 27, 32))
    back = plan.to_source(plan.mask(mask).astype(np.float32), "mask").astype(bool)
    dice = 2 * np.count_nonzero(back & mask) / (np.count_nonzero(back) + np.count_nonzero(mask))
    assert 0.7 < dice < 1.0


def test_wrong_grid_refused():
    plan = Resampling((7, 20, 30), (3.0, 1.0, 1.0), (21, 20, 30))
    with pytest.raises(ValueError, match="grid"):
        plan.to_source(np.zeros((7, 20, 30), np.float32))


def test_slices_are_cut_from_the_resampled_stack_and_map_back():
    image, mask = phantom((40, 48, 10))
    stack, truth = np.moveaxis(image, -1, 0)[..., None], np.moveaxis(mask, -1, 0) > 0
    cfg = SliceConfig(size=(64, 64), selection="all", spacing=(2.0, 0.8, 0.8))
    sliced = slice_case(stack, truth, ["flair"], (4.0, 1.2, 1.1), cfg)
    assert sliced.resampling.target_zhw == (20, 60, 66) and len(sliced.images) == 20
    np.testing.assert_allclose(sliced.geometry.spacing_hw_mm, sliced.resampling.target_spacing_mm[1:])
    back = to_native_stack(sliced.masks, sliced.geometry, sliced.slice_indices, truth.shape, "mask", None,
                           sliced.resampling)  # fmt: skip
    np.testing.assert_array_equal(back.astype(bool), truth)
    prob = to_native_stack(sliced.masks.astype(np.float32), sliced.geometry, sliced.slice_indices, truth.shape,
                           "probability", None, sliced.resampling)  # fmt: skip
    np.testing.assert_array_equal(prob > 0.5, truth)
    with pytest.raises(ValueError, match="resampled from"):
        to_native_stack(sliced.masks, sliced.geometry, sliced.slice_indices, (10, 40, 40), "mask", None,
                        sliced.resampling)  # fmt: skip


def test_prep_with_spacing_records_the_plan_and_maps_back_to_the_source_file(tmp_path):
    image, mask = phantom((40, 48, 10))
    write_nifti(tmp_path / "raw" / "Patient-9" / "9-Flair.nii.gz", image)
    write_nifti(tmp_path / "raw" / "Patient-9" / "9-LesionSeg-Flair.nii.gz", mask)
    out = tmp_path / "s"
    # the canonical stack is (10, 48, 40) of 4 x 1.1 x 1.2 mm (LPS_AFFINE); the model grid (96) stays the finest
    assert main(["prep", str(tmp_path / "raw"), str(out), "--size", "96", "96", "--selection", "lesion",
                 "--spacing", "2", "0", "0.6"]) == 0  # fmt: skip
    _, saved_mask, meta = open_case(out, "9")
    assert meta["resampling"]["target_zhw"] == [20, 48, 80]
    manifest = read_manifest(out)
    assert set(manifest.spacing_mm) == {"2x1.1x0.6"} and set(manifest.native_shape) == {"48x80"}
    np.testing.assert_array_equal(to_native_volume(saved_mask, meta, "mask"), mask)
    assert nib.load(str(tmp_path / "raw" / "Patient-9" / "9-Flair.nii.gz")).shape == (40, 48, 10)


@requires(LJUBLJANA)
@pytest.mark.real
def test_ljubljana_resampled_to_one_mm_maps_back_exactly(tmp_path):
    """The real scan (1 mm isotropic) refined to 0.9 mm in-plane (218 x 182 -> 242 x 202, still under the 256 grid)
    keeps its gold standard through the round trip."""
    out = tmp_path / "lj"
    prepare_dataset(LJUBLJANA, out, PrepConfig(spacing=(0.9, 0.9)), progress=False)
    _, mask, meta = open_case(out, "patient07")
    gold = nib.load(str(next(LJUBLJANA.glob("GOLD*")))).get_fdata() > 0.5
    assert meta["resampling"]["target_zhw"][1] > meta["resampling"]["source_zhw"][1]
    np.testing.assert_array_equal(to_native_volume(mask, meta, "mask").astype(bool), gold)


@requires(LGG)
def test_tiff_slices_cannot_be_resampled(tmp_path):
    with pytest.raises(ValueError, match="no voxel size"):
        prepare_dataset(LGG, tmp_path / "lgg", PrepConfig(modalities=("flair",), spacing=(1.0,)), progress=False)


class _Bright:
    """A stand-in model: lesion where the normalised FLAIR is bright (the phantom's lesions are)."""

    input_shape = (None, 96, 96, 1)

    def predict(self, x, batch_size=16, verbose=0):
        return (np.asarray(x) > 1.5).astype(np.float32)


def test_prediction_of_a_resampled_run_comes_back_on_the_scan_grid(tmp_path):
    from mslesion.data.loading import LoadedCase
    from mslesion.infer.inference import TrainedRun, predict_volume

    image, mask = phantom((40, 48, 10))
    stack, truth = np.moveaxis(image, -1, 0)[..., None], np.moveaxis(mask, -1, 0) > 0
    case = LoadedCase("9", stack, truth, ["flair"], (4.0, 1.1, 1.2), [tmp_path / "9.nii.gz"], None)
    prep = PrepConfig(size=(96, 96), spacing=(2.0, 0.0, 0.6))
    prob = predict_volume(TrainedRun(tmp_path, "model", _Bright(), prep, {}, {}), case)
    assert prob.shape == truth.shape
    found = prob > 0.5
    assert 2 * np.count_nonzero(found & truth) / (np.count_nonzero(found) + np.count_nonzero(truth)) > 0.8
