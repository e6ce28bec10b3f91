import gzip
import itertools

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

from mslesion.data.volumes import (
    axial_spacing_mm,
    binarise_mask,
    canonical_affine,
    check_same_grid,
    from_axial_stack,
    load_image,
    load_mask,
    to_axial_stack,
)
from mslesion.errors import (
    AffineMismatchError,
    CorruptFileError,
    EmptyMaskError,
    NonBinaryMaskError,
    NonFiniteError,
    NotThreeDError,
    ShapeMismatchError,
)

from .conftest import LJUBLJANA, LPS_AFFINE, phantom, requires, write_nifti


def test_load_image_float32_and_spacing(tmp_path):
    image, _ = phantom()
    vol = load_image(write_nifti(tmp_path / "a.nii.gz", image.astype(np.int16)))
    assert vol.data.dtype == np.float32 and vol.data.shape == image.shape
    assert vol.axcodes == ("L", "P", "S")
    assert vol.spacing_mm == pytest.approx((1.2, 1.1, 4.0))
    assert axial_spacing_mm(vol.affine) == pytest.approx((4.0, 1.1, 1.2))


def test_truncated_gzip_is_a_corrupt_file_naming_it(tmp_path):
    path = write_nifti(tmp_path / "t.nii.gz", phantom()[0])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match=r"t\.nii\.gz: cannot read"):
        load_image(path)


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "g.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    with pytest.raises(CorruptFileError, match="g.nii.gz"):
        load_image(bad)
    with pytest.raises(CorruptFileError, match="does not exist"):
        load_image(tmp_path / "nope.nii.gz")


def test_4d_volume_refused_but_singleton_4th_axis_accepted(tmp_path):
    image = phantom()[0]
    with pytest.raises(NotThreeDError, match=r"\(40, 48, 10, 2\)"):
        load_image(write_nifti(tmp_path / "4d.nii.gz", np.stack([image, image], -1)))
    assert load_image(write_nifti(tmp_path / "4d1.nii.gz", image[..., None])).data.shape == image.shape


def test_nan_voxels_refused(tmp_path):
    image = phantom()[0]
    image[3, 4, 5] = np.nan
    image[1, 1, 1] = np.inf
    with pytest.raises(NonFiniteError, match="2 voxels are NaN or Inf"):
        load_image(write_nifti(tmp_path / "nan.nii.gz", image))


@pytest.mark.parametrize(
    "values, expected",
    [([0, 1], [False, True]), ([0.0, 0.49, 0.51, 1.0], [False, False, True, True]), ([0, 255], [False, True])],
)
def test_binarise_mask_accepts_binary_soft_and_8bit(values, expected):
    assert binarise_mask(np.array(values), "m").tolist() == expected


@pytest.mark.parametrize("values", [[0, 1, 2], [-1, 0, 1], [0, 3]])
def test_label_maps_are_not_silently_thresholded(values, tmp_path):
    with pytest.raises(NonBinaryMaskError, match="not binary"):
        load_mask(write_nifti(tmp_path / "m.nii.gz", np.array(values * 10, np.int16).reshape(len(values), 10, 1)))


def test_empty_mask_refused_unless_allowed(tmp_path):
    path = write_nifti(tmp_path / "empty.nii.gz", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(EmptyMaskError, match="empty.nii.gz: mask has no lesion voxel"):
        load_mask(path)
    assert not load_mask(path, allow_empty=True).data.any()


def test_grid_checks_name_the_mask(tmp_path):
    image, mask = phantom()
    img = load_image(write_nifti(tmp_path / "i.nii.gz", image))
    with pytest.raises(ShapeMismatchError, match=r"m1.nii.gz: mask shape \(40, 48, 9\)"):
        check_same_grid(img, load_mask(write_nifti(tmp_path / "m1.nii.gz", mask[..., :9])))
    shifted = LPS_AFFINE.copy()
    shifted[0, 3] += 2.0
    with pytest.raises(AffineMismatchError, match="m2.nii.gz: mask affine differs"):
        check_same_grid(img, load_mask(write_nifti(tmp_path / "m2.nii.gz", mask, shifted)))
    nudged = LPS_AFFINE.copy()
    nudged[0, 3] += 0.01  # converter rounding: same grid
    check_same_grid(img, load_mask(write_nifti(tmp_path / "m3.nii.gz", mask, nudged)))


ALL_AXCODES = [
    tuple(c)
    for perm in itertools.permutations(("LR", "PA", "IS"))
    for c in itertools.product(*perm)
]


@pytest.mark.parametrize("axcodes", ALL_AXCODES)
def test_axial_stack_is_the_same_anatomy_whatever_the_file_orientation(axcodes):
    """One RAS volume stored in any of the 48 orientations gives one axial stack, and back exactly."""
    rng = np.random.default_rng(1)
    ras = rng.random((5, 6, 7)).astype(np.float32)
    ras_affine = np.diag([1.0, 2.0, 3.0, 1.0])
    ornt = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(axcodes))
    stored = nib.orientations.apply_orientation(ras, ornt)
    affine = ras_affine @ inv_ornt_aff(ornt, ras.shape)
    assert nib.aff2axcodes(affine) == axcodes
    stack = to_axial_stack(stored, affine)
    np.testing.assert_array_equal(stack, to_axial_stack(ras, ras_affine))
    np.testing.assert_array_equal(from_axial_stack(stack, affine), stored)
    assert axial_spacing_mm(affine) == pytest.approx((3.0, 2.0, 1.0))


def test_axial_stack_convention_anterior_up_left_left_inferior_first():
    ras = np.zeros((4, 5, 3))
    ras[0, 4, 2] = 1  # patient's far left... x=0 is the most left in RAS, y=4 most anterior, z=2 top
    stack = to_axial_stack(ras, np.eye(4))
    assert stack.shape == (3, 5, 4)
    assert stack[2, 0, 0] == 1  # last (superior) slice, top row (anterior), first column (left)


@requires(LJUBLJANA)
@pytest.mark.real
def test_ljubljana_las_reoriented_to_axial_stack():
    flair = load_image(next(LJUBLJANA.glob("FLAIR_*.nii.gz")))
    assert flair.axcodes == ("L", "A", "S")
    stack = to_axial_stack(flair.data, flair.affine)
    assert stack.shape == (182, 218, 182)
    np.testing.assert_array_equal(from_axial_stack(stack, flair.affine), flair.data)
    # MNI space: the frontal pole lies near y=+70 mm, the occipital pole near y=-104 mm.
    # Row r of the stack is RAS voxel y = H-1-r; map it to world mm with the RAS affine.
    ras_affine = canonical_affine(flair.data.shape, flair.affine)
    rows = np.flatnonzero((stack != 0).any(axis=(0, 2)))
    first_y, last_y = ((ras_affine @ [0, stack.shape[1] - 1 - r, 0, 1])[1] for r in (rows[0], rows[-1]))
    assert 55 < first_y < 85 and -115 < last_y < -90
