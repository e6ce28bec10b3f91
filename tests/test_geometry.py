import numpy as np
import pytest
from scipy import ndimage

from mslesion.data.geometry import plan_geometry, to_model, to_native


def blobs(hw, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(hw, np.uint8)
    for _ in range(6):
        r, c = rng.integers(10, np.array(hw) - 10)
        rad = rng.integers(2, 7)
        yy, xx = np.ogrid[: hw[0], : hw[1]]
        mask[(yy - r) ** 2 + (xx - c) ** 2 <= rad**2] = 1
    return mask


def test_pad_plan_keeps_aspect():
    g = plan_geometry((218, 182), (256, 256), "pad", (1.0, 1.0))
    assert g.pad == (0, 0, 18, 18) and g.padded_hw == (218, 218)
    assert g.model_spacing_hw_mm == pytest.approx((218 / 256, 218 / 256))
    assert plan_geometry((218, 182), (256, 256), "stretch").pad == (0, 0, 0, 0)


@pytest.mark.parametrize("native", [(218, 182), (512, 512), (100, 140), (256, 256)])
@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_mask_stays_binary_and_shapes_round_trip(native, fit):
    g = plan_geometry(native, (256, 256), fit)
    mask = blobs(native)
    model = to_model(mask, g, "mask")
    assert model.shape == (256, 256) and set(np.unique(model)) <= {0, 1}
    back = to_native(model, g, "mask")
    assert back.shape == native
    if min(native) <= 256 and max(g.padded_hw) <= 256:
        # Enlarging then shrinking by nearest neighbour is exact.
        np.testing.assert_array_equal(back, mask)
    else:
        # Shrinking by nearest neighbour errs only within one model pixel of a boundary.
        reach = int(np.ceil(max(g.padded_hw) / 256))
        band = ndimage.binary_dilation(mask, iterations=reach) & ~ndimage.binary_erosion(mask, iterations=reach)
        wrong = back != mask
        assert wrong.any() and not (wrong & ~band).any()


def test_identity_when_native_equals_model_grid():
    g = plan_geometry((256, 256), (256, 256), "pad")
    img = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_model(img, g), img)
    np.testing.assert_array_equal(to_native(img, g), img)


def test_probability_inverse_is_close_and_padding_is_cropped():
    g = plan_geometry((218, 182), (256, 256), "pad")
    yy, xx = np.mgrid[:218, :182]
    smooth = (np.sin(yy / 20) * np.cos(xx / 15)).astype(np.float32)
    back = to_native(to_model(smooth, g), g)
    assert back.shape == (218, 182)
    # the back-mapping is built for predictions (exact for masks, below), not as
    # the inverse of bilinear image resizing, hence the small loss on images
    assert np.abs(back - smooth).max() < 0.03


def test_images_use_edge_padding_masks_zero_and_channels_survive():
    g = plan_geometry((20, 10), (32, 32), "pad")
    img = np.full((20, 10, 5), 7.0, np.float32)
    out = to_model(img, g)
    assert out.shape == (32, 32, 5) and np.allclose(out, 7.0)
    mask = np.ones((20, 10, 1), np.uint8)
    mout = to_model(mask, g, "mask")
    assert mout.shape == (32, 32, 1) and mout[:, 0].sum() == 0 and mout[:, 16].all()


def test_wrong_shapes_refused():
    g = plan_geometry((20, 10), (32, 32))
    with pytest.raises(ValueError, match="does not match planned native shape"):
        to_model(np.zeros((10, 20)), g)
    with pytest.raises(ValueError, match="does not match model grid"):
        to_native(np.zeros((16, 16)), g)


@pytest.mark.parametrize("native_hw", [(218, 182), (182, 218), (256, 256), (240, 240), (160, 200)])
@pytest.mark.parametrize("fit", ["pad", "stretch"])
def test_prediction_equal_to_the_prepared_mask_maps_back_exactly(native_hw, fit):
    rng = np.random.default_rng(0)
    mask = np.zeros(native_hw, np.uint8)
    for _ in range(6):  # blobs of varied size, some a single pixel
        y, x, r = rng.integers(0, native_hw[0]), rng.integers(0, native_hw[1]), rng.integers(0, 6)
        mask[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = 1
    g = plan_geometry(native_hw, (256, 256), fit)
    prob = to_model(mask[..., None], g, "mask").astype(np.float32)  # a "perfect" network output
    back = to_native(prob, g, "probability")[..., 0] > 0.5
    np.testing.assert_array_equal(back, mask.astype(bool))


def test_probability_back_mapping_keeps_the_range_and_constant_maps():
    g = plan_geometry((300, 180), (128, 128), "pad")  # coarser model grid: linear interpolation
    for value in (0.0, 0.3, 1.0):
        back = to_native(np.full((128, 128), value, np.float32), g, "probability")
        np.testing.assert_allclose(back, value, atol=1e-6)


def test_batched_back_mapping_equals_the_per_slice_one():
    from mslesion.data.geometry import to_native_many

    rng = np.random.default_rng(1)
    for native, size in (((218, 182), (256, 256)), ((300, 180), (128, 128))):
        g = plan_geometry(native, size, "pad")
        probs = rng.random((5, *size), dtype=np.float32)
        many = to_native_many(probs, g)
        one = np.stack([to_native(p, g, "probability") for p in probs])
        np.testing.assert_allclose(many, one, rtol=0, atol=1e-6)
