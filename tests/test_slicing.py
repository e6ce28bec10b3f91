import numpy as np
import pytest

from mslesion.data.slicing import context_indices, select_slices, slice_case


def test_context_indices_edge_and_zero_padding():
    assert context_indices(0, 5, 3) == [0, 0, 1]
    assert context_indices(4, 5, 5) == [2, 3, 4, 4, 4]
    assert context_indices(0, 5, 3, "zero") == [-1, 0, 1]
    assert context_indices(2, 5, 1) == [2]
    with pytest.raises(ValueError, match="odd"):
        context_indices(0, 5, 2)


def test_selection_modes():
    mask = np.zeros((4, 8, 8), bool)
    mask[1, 2, 2] = True
    fg = np.zeros_like(mask)
    fg[1:3, :4] = True
    entropy = np.array([0.5, 2.5, 3.0, 1.0])
    assert select_slices(mask, fg, entropy, "lesion").tolist() == [1]
    assert select_slices(mask, fg, entropy, "brain", min_foreground_fraction=0.4).tolist() == [1, 2]
    assert select_slices(mask, fg, entropy, "entropy", entropy_threshold_bits=2.0).tolist() == [1, 2]
    assert select_slices(mask, fg, entropy, "all").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown slice selection"):
        select_slices(mask, fg, entropy, "most")


def test_slice_case_stacks_neighbours_and_modalities_as_channels():
    z, h, w = 5, 16, 16
    ramp = np.arange(z, dtype=np.float32)[:, None, None] * np.ones((z, h, w), np.float32)
    stack = np.stack([ramp, 10 * ramp], axis=-1)  # two modalities
    mask = np.zeros((z, h, w), bool)
    mask[[0, 3], 5:9, 5:9] = True
    out = slice_case(stack, mask, ["flair", "t1"], (3.0, 1.0, 1.0), normalisation="none", size=(16, 16),
                     context=3, foreground="nonzero")  # fmt: skip
    assert out.slice_indices.tolist() == [0, 3]
    assert out.images.shape == (2, 16, 16, 6) and out.masks.shape == (2, 16, 16, 1)
    assert out.channels == ["flair[-1]", "flair[+0]", "flair[+1]", "t1[-1]", "t1[+0]", "t1[+1]"]
    # slice 0: neighbours (0, 0, 1) by edge padding; slice 3: (2, 3, 4)
    np.testing.assert_array_equal(out.images[0, 0, 0], [0, 0, 1, 0, 0, 10])
    np.testing.assert_array_equal(out.images[1, 0, 0], [2, 3, 4, 20, 30, 40])
    assert out.lesion_pixels.tolist() == out.lesion_pixels_native.tolist() == [16, 16]


def test_slice_case_resizes_and_records_geometry():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 40, 30, 1)).astype(np.float32) + 1
    mask = np.zeros((3, 40, 30), bool)
    mask[1, 10:20, 10:20] = True
    out = slice_case(stack, mask, ["flair"], (5.0, 1.0, 1.0), size=(64, 64), selection="all")
    assert out.images.shape == (3, 64, 64, 1) and out.images.dtype == np.float32
    assert out.masks.dtype == np.uint8 and set(np.unique(out.masks)) == {0, 1}
    assert out.geometry.native_hw == (40, 30) and out.geometry.pad == (0, 0, 5, 5)
    assert out.normalisations[0].method == "zscore"
    assert out.images.mean() == pytest.approx(0, abs=0.05)


def test_brain_crop_is_recorded_and_undone_exactly(tmp_path):
    from mslesion.data.cohort import discover_cases
    from mslesion.data.loading import load_case
    from mslesion.data.slicing import slice_case, to_native_stack
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path, 1, seed=2, shape=(200, 180, 10), spacing_mm=(0.9, 0.9, 5.0))
    loaded = load_case(discover_cases(tmp_path).cases[0])
    full = slice_case(loaded.stack, loaded.mask, loaded.modalities, loaded.spacing_zhw_mm, selection="all",
                      size=(256, 256))  # fmt: skip
    cropped = slice_case(loaded.stack, loaded.mask, loaded.modalities, loaded.spacing_zhw_mm, selection="all",
                         size=(256, 256), crop="brain", crop_margin=3)  # fmt: skip
    r0, r1, c0, c1 = cropped.crop_box
    assert full.crop_box is None and 0 < r1 - r0 < 200 and 0 < c1 - c0 < 180
    assert cropped.geometry.native_hw == (r1 - r0, c1 - c0)
    back = to_native_stack(cropped.masks.astype(np.float32), cropped.geometry, cropped.slice_indices,
                           loaded.stack.shape[:3], crop_box=cropped.crop_box) > 0.5  # fmt: skip
    np.testing.assert_array_equal(back, loaded.mask)  # the lesions lie inside the head
    # the head fills more of the model grid once the background is cut away
    assert cropped.masks.sum() > full.masks.sum()


def test_background_zero_sets_outside_the_foreground_to_zero_after_zscore():
    """nnU-Net's masked z-score: foreground ~ N(0, 1), air 0; "keep" leaves air at -mean/sd; records without the
    option (written before it existed) read back as "keep", so old runs predict as they were trained."""
    from mslesion.data.prep import PrepConfig

    rng = np.random.default_rng(1)
    stack = np.zeros((4, 32, 32, 1), np.float32)
    stack[:, 8:24, 8:24, 0] = rng.normal(100, 10, (4, 16, 16))  # a skull-stripped "brain", air exactly 0
    mask = np.zeros((4, 32, 32), bool)
    mask[1, 10:12, 10:12] = True
    zero = slice_case(stack, mask, ["flair"], None, size=(32, 32), selection="all", foreground="nonzero")
    keep = slice_case(stack, mask, ["flair"], None, size=(32, 32), selection="all", foreground="nonzero",
                      background="keep")  # fmt: skip
    brain = np.zeros((32, 32), bool)
    brain[8:24, 8:24] = True
    assert np.all(zero.images[:, ~brain] == 0) and np.all(keep.images[:, ~brain] < -5)
    np.testing.assert_array_equal(zero.images[:, brain], keep.images[:, brain])
    assert zero.images[:, brain].mean() == pytest.approx(0, abs=1e-3)
    assert zero.images[:, brain].std() == pytest.approx(1, abs=1e-3)
    with pytest.raises(ValueError, match="unknown background 'air'"):
        slice_case(stack, mask, ["flair"], None, size=(32, 32), background="air")
    assert PrepConfig().background == "zero" and PrepConfig.from_dict({"size": [64, 64]}).background == "keep"
    assert PrepConfig.from_dict(PrepConfig().to_dict()).background == "zero"


def test_slice_case_takes_a_config_and_single_field_overrides():
    from mslesion.data.slicing import SliceConfig

    rng = np.random.default_rng(0)
    stack = rng.normal(100, 10, (6, 40, 40, 1)).astype(np.float32)
    mask = np.zeros((6, 40, 40), bool)
    mask[2, 10:14, 10:14] = True
    config = SliceConfig(size=(32, 32), selection="lesion")
    lesion_only = slice_case(stack, mask, ["flair"], None, config)
    every = slice_case(stack, mask, ["flair"], None, config, selection="all")
    assert lesion_only.slice_indices.tolist() == [2] and every.slice_indices.tolist() == list(range(6))
    np.testing.assert_array_equal(every.images[2], lesion_only.images[0])
    assert config.selection == "lesion"  # the override did not change the config
    with pytest.raises(TypeError, match="no_such_option"):
        slice_case(stack, mask, ["flair"], None, config, no_such_option=1)
