"""Rigid co-registration at load time: a modality moved by a known rigid transform comes back onto the FLAIR grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mslesion.data.case import Case
from mslesion.data.loading import SourceConfig, load_case
from mslesion.data.registration import itk_geometry, register_to, to_sitk
from mslesion.data.volumes import load_image, to_axial_stack
from mslesion.errors import AffineMismatchError, ConfigError, ShapeMismatchError
from tests.conftest import write_nifti

# FLAIR grid: 48x48x32 voxels of 1 mm, centred on the world origin (RAS)
FIXED_AFFINE = np.array([[1.0, 0, 0, -23.5], [0, 1.0, 0, -23.5], [0, 0, 1.0, -15.5], [0, 0, 0, 1]])
# the T2's own grid: other voxel size, shape and origin (a separate acquisition)
MOVING_AFFINE = np.array([[1.1, 0, 0, -22.0], [0, 1.1, 0, -26.0], [0, 0, 1.2, -14.0], [0, 0, 0, 1]])
MOVING_SHAPE = (44, 46, 28)
# the head moved between the two series: 3, -2 and 6 degrees about x, y, z and (4, -3, 2) mm
ROTATION = Rotation.from_euler("xyz", [3, -2, 6], degrees=True).as_matrix()
SHIFT = np.array([4.0, -3.0, 2.0])


def _head(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLAIR and T2 of one smooth 'head' at world points (..., 3) in mm: blobs bright on FLAIR, dark on T2."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    head = 1 / (1 + np.exp(12 * ((x / 20) ** 2 + (y / 22) ** 2 + (z / 14) ** 2 - 1)))
    blobs = np.zeros_like(x)
    for (cx, cy, cz), sd, amp in [((-8, 5, 2), 5, 1.0), ((9, -6, -3), 4, 0.8), ((0, 12, 5), 3, 1.2), ((4, 0, -6), 6, 0.6)]:
        blobs += amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sd**2))
    return (head * (100 + 80 * blobs)).astype(np.float32), (head * (180 - 80 * blobs)).astype(np.float32)


def _world(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _ncc(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    a, b = a[where] - a[where].mean(), b[where] - b[where].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture
def moved_case(tmp_path):
    """A Case whose T2 lies on another grid and is moved rigidly; plus the T2 the FLAIR grid should show."""
    flair, t2_truth = _head(_world((48, 48, 32), FIXED_AFFINE))
    # the moved head: the value at world point p is the head's at R^-1 (p - t)
    _, t2_moved = _head((_world(MOVING_SHAPE, MOVING_AFFINE) - SHIFT) @ ROTATION)
    folder = tmp_path / "p1"
    mask = np.zeros(flair.shape, np.uint8)
    mask[20:24, 20:24, 14:17] = 1
    case = Case("p1", {"flair": write_nifti(folder / "flair.nii.gz", flair, FIXED_AFFINE),
                       "t2": write_nifti(folder / "t2.nii.gz", t2_moved, MOVING_AFFINE)},
                {"flair": write_nifti(folder / "mask.nii.gz", mask, FIXED_AFFINE)}, "pattern", root=tmp_path)  # fmt: skip
    return case, t2_truth, t2_moved


def test_a_known_rigid_motion_is_undone(moved_case):
    case, t2_truth, t2_moved = moved_case
    loaded = load_case(case, source=SourceConfig(modalities=("flair", "t2"), register="rigid"))
    assert loaded.stack.shape == (32, 48, 48, 2)  # the FLAIR's grid, as a canonical stack
    import SimpleITK as sitk

    truth = to_axial_stack(t2_truth, FIXED_AFFINE)
    inside = to_axial_stack(t2_truth > 10, FIXED_AFFINE)
    registered = _ncc(loaded.stack[..., 1], truth, inside)
    # the headers alone (resampling by the affines, no registration) leave the 4 mm / 6 degree motion in
    by_header = sitk.Resample(to_sitk(t2_moved, MOVING_AFFINE), to_sitk(t2_truth, FIXED_AFFINE), sitk.Transform(),
                              sitk.sitkLinear, 0.0)  # fmt: skip
    header_only = _ncc(to_axial_stack(sitk.GetArrayFromImage(by_header).transpose(2, 1, 0), FIXED_AFFINE), truth,
                       inside)  # fmt: skip
    assert registered > 0.95  # measured 0.999
    assert header_only < 0.7  # measured 0.52
    assert loaded.image_files[1].name == "t2.nii.gz"
    # recorded: which file was registered, onto what, and the final metric
    line = next(w for w in loaded.warnings if "registered rigidly" in w)
    assert "t2.nii.gz" in line and "flair.nii.gz" in line and "mutual information -" in line
    # the FLAIR channel is untouched
    np.testing.assert_array_equal(loaded.stack[..., 0], to_axial_stack(_head(_world((48, 48, 32), FIXED_AFFINE))[0],
                                                                       FIXED_AFFINE))  # fmt: skip


def test_the_transform_found_is_the_one_applied(moved_case):
    case, *_ = moved_case
    fixed, moving = load_image(case.image("flair")), load_image(case.image("t2"))
    result = register_to(fixed.data, fixed.affine, moving.data, moving.affine)
    # ITK's fixed -> moving map in LPS: the translation is the head's shift with x and y negated
    np.testing.assert_allclose(result.parameters[3:], SHIFT * [-1, -1, 1], atol=0.3)
    assert result.data.shape == fixed.data.shape and result.data.dtype == np.float32


def test_without_registration_other_grids_are_refused(moved_case):
    case, *_ = moved_case
    with pytest.raises(ShapeMismatchError, match=r"t2\.nii\.gz.*register"):
        load_case(case, ("flair", "t2"))
    with pytest.raises(ShapeMismatchError, match="register"):
        load_case(case, source=SourceConfig(modalities=("flair", "t2")))


def test_same_grid_takes_the_fast_path(tmp_path, monkeypatch):
    flair, t2 = _head(_world((48, 48, 32), FIXED_AFFINE))
    case = Case("p", {"flair": write_nifti(tmp_path / "f.nii.gz", flair, FIXED_AFFINE),
                      "t2": write_nifti(tmp_path / "t2.nii.gz", t2, FIXED_AFFINE)}, {}, "pattern")  # fmt: skip

    def fail(*a, **k):
        raise AssertionError("registered although the grids match")

    monkeypatch.setattr("mslesion.data.loading.register_volume", fail)
    loaded = load_case(case, with_mask=False, source=SourceConfig(modalities=("flair", "t2"), register="rigid"))
    assert not any("registered" in w for w in loaded.warnings)


def test_the_lesion_mask_must_lie_on_the_flair_grid(moved_case, tmp_path):
    case, *_ = moved_case
    case.masks["flair"] = write_nifti(tmp_path / "p1" / "mask_t2grid.nii.gz", np.ones(MOVING_SHAPE, np.uint8),
                                      MOVING_AFFINE)  # fmt: skip
    with pytest.raises(ShapeMismatchError, match=r"mask_t2grid\.nii\.gz.*not registered"):
        load_case(case, source=SourceConfig(modalities=("flair", "t2"), register="rigid"))


def test_unknown_registration_is_refused():
    with pytest.raises(ConfigError, match="unknown register"):
        SourceConfig(register="affine")


@pytest.mark.parametrize("affine", [
    np.array([[-1.2, 0, 0, 30.0], [0, -1.1, 0, 25.0], [0, 0, 4.0, -20.0], [0, 0, 0, 1]]),  # LPS voxel order
    np.array([[0.9, 0, 0, -80.0], [0, 0, 5.0, -40.0], [0, -0.9, 0, 100.0], [0, 0, 0, 1]]),  # coronal-like, swapped axes
    None,  # oblique: rotated 10 degrees about z and 5 about x, anisotropic voxels
])  # fmt: skip
def test_itk_geometry_matches_simpleitk_reading_the_file(tmp_path, affine):
    import SimpleITK as sitk

    if affine is None:
        rot = Rotation.from_euler("zx", [10, 5], degrees=True).as_matrix()
        affine = np.eye(4)
        affine[:3, :3] = rot @ np.diag([0.8, 1.0, 3.0])
        affine[:3, 3] = [12.0, -7.5, 33.0]
    data = np.random.default_rng(0).random((7, 6, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "g.nii.gz", data, affine)
    image = sitk.ReadImage(str(path))
    origin, spacing, direction = itk_geometry(affine)
    np.testing.assert_allclose(origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(spacing, image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(direction, image.GetDirection(), atol=1e-5)
    # and the voxel order: SimpleITK's (k, j, i) array is nibabel's (i, j, k) transposed
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), data)


def test_affine_mismatch_without_shape_change_is_refused_too(tmp_path):
    flair, t2 = _head(_world((48, 48, 32), FIXED_AFFINE))
    shifted = FIXED_AFFINE.copy()
    shifted[:3, 3] += [3.0, 0, 0]
    case = Case("p", {"flair": write_nifti(tmp_path / "f.nii.gz", flair, FIXED_AFFINE),
                      "t2": write_nifti(tmp_path / "t2.nii.gz", t2, shifted)}, {}, "pattern")  # fmt: skip
    with pytest.raises(AffineMismatchError, match="t2.nii.gz"):
        load_case(case, ("flair", "t2"), with_mask=False)
    # registration aligns the anatomy, not the headers: the head the T2 header puts 3 mm off comes back onto the
    # FLAIR's, where resampling by the headers alone would leave it 3 voxels away
    loaded = load_case(case, with_mask=False, source=SourceConfig(modalities=("flair", "t2"), register="rigid"))
    inside = to_axial_stack(t2 > 10, FIXED_AFFINE)
    assert _ncc(loaded.stack[..., 1], to_axial_stack(t2, FIXED_AFFINE), inside) > 0.98
    assert _ncc(to_axial_stack(np.roll(t2, 3, axis=0), FIXED_AFFINE), to_axial_stack(t2, FIXED_AFFINE), inside) < 0.95
