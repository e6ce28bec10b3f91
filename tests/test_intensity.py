import numpy as np
import pytest

from mslesion.data.intensity import fit_normalisation, foreground_mask, slice_entropy_bits

from .conftest import phantom


def test_zscore_uses_foreground_only():
    image = phantom()[0].transpose(2, 0, 1)
    fg = foreground_mask(image)
    norm = fit_normalisation(image, fg, "zscore")
    out = norm.apply(image)
    assert out[fg].mean() == pytest.approx(0, abs=1e-4)
    assert out[fg].std() == pytest.approx(1, abs=1e-3)
    # Doubling the air around the head must not change the statistics.
    padded = np.pad(image, ((0, 0), (20, 20), (20, 20)), constant_values=0) + 0
    padded_norm = fit_normalisation(padded, foreground_mask(padded, "otsu"), "zscore")
    assert padded_norm.offset == pytest.approx(norm.offset, rel=0.02)


def test_percentile_maps_to_unit_interval():
    image = phantom()[0].transpose(2, 0, 1)
    out = fit_normalisation(image, foreground_mask(image), "percentile", (1, 99)).apply(image)
    assert out.min() == 0.0 and out.max() == 1.0


def test_foreground_otsu_finds_the_head_and_nonzero_for_skull_stripped():
    image = phantom()[0].transpose(2, 0, 1)
    fg = foreground_mask(image, "otsu")
    assert 0.2 < fg.mean() < 0.6 and fg[:, 20, 24].all() and not fg[:, 0, 0].any()
    stripped = np.where(fg, image, 0)
    np.testing.assert_array_equal(foreground_mask(stripped, "auto"), stripped != 0)
    with pytest.raises(ValueError, match="unknown foreground"):
        foreground_mask(image, "magic")


def test_entropy_in_bits():
    vol = np.zeros((3, 16, 16))
    vol[1, :8] = 1.0  # half/half: 1 bit
    vol[2] = np.arange(256).reshape(16, 16)  # every level once: 8 bits
    np.testing.assert_allclose(slice_entropy_bits(vol), [0.0, 1.0, 8.0], atol=1e-9)
    assert slice_entropy_bits(np.ones((2, 4, 4))).tolist() == [0.0, 0.0]
