"""N4 bias-field correction: a known synthetic field is removed; prep, predict and evaluate apply it alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mslesion.data.bias_field import n4_correct
from mslesion.data.slicing import SliceConfig, slice_case


def _phantom(seed: int = 0):
    """A two-tissue ellipsoid 'brain' (white matter 100, grey 70), noise SD 2, times a smooth field (0.7-1.5)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:20, :96, :96]
    brain = ((y - 48) / 38) ** 2 + ((x - 48) / 32) ** 2 + ((z - 10) / 12) ** 2 < 1
    wm = ((y - 48) / 22) ** 2 + ((x - 48) / 18) ** 2 + ((z - 10) / 8) ** 2 < 1
    clean = np.where(wm, 100.0, np.where(brain, 70.0, 0.0)) + rng.normal(0, 2, brain.shape) * brain
    field = np.exp(0.35 * (x - 48) / 48 + 0.2 * ((y - 48) / 48) ** 2)
    return (clean * field).astype(np.float32), clean.astype(np.float32), brain, wm


def _cv(volume, region):
    return float(volume[region].std() / volume[region].mean())


def test_a_known_bias_field_is_removed():
    biased, clean, brain, wm = _phantom()
    corrected = n4_correct(biased, (3.0, 1.0, 1.0), brain)
    before, after, floor = _cv(biased, wm), _cv(corrected, wm), _cv(clean, wm)
    assert after < before / 2.5  # measured 0.065 -> 0.020 with the noise floor at 0.020
    assert after < 1.3 * floor
    # the tissue contrast survives: white over grey matter as in the clean volume (100 / 70)
    grey = brain & ~wm
    assert corrected[wm].mean() / corrected[grey].mean() == pytest.approx(100 / 70, rel=0.05)
    assert n4_correct(biased, (3.0, 1.0, 1.0)).shape == biased.shape  # Otsu's mask when none is given
    with pytest.raises(ValueError, match="mask shape"):
        n4_correct(biased, None, brain[:5])


def test_slicing_records_and_applies_it():
    biased, _, brain, wm = _phantom(1)
    stack, mask = biased[..., None], np.zeros(biased.shape, np.uint8)
    cfg = SliceConfig(selection="all", size=(96, 96), bias_correction="n4")
    plain = slice_case(stack, mask, ["flair"], (3.0, 1.0, 1.0), SliceConfig(selection="all", size=(96, 96)))
    fixed = slice_case(stack, mask, ["flair"], (3.0, 1.0, 1.0), cfg)
    # z-scored white matter: the field spreads it over ~1.8 SD before correction, far less after
    assert fixed.images[..., 0][wm].std() < 0.6 * plain.images[..., 0][wm].std()
    with pytest.raises(ValueError, match="unknown bias correction"):
        slice_case(stack, mask, ["flair"], None, SliceConfig(bias_correction="n3"))


def test_prep_writes_it_into_prep_config(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path / "raw", 2, seed=3, shape=(64, 64, 8))
    prepare_dataset(tmp_path / "raw", tmp_path / "ds", PrepConfig(size=(32, 32), bias_correction="n4"), progress=False)
    record = json.loads((tmp_path / "ds" / "prep_config.json").read_text())
    assert record["bias_correction"] == "n4"
    # inference slices new scans from the run's record, so they are corrected the same way
    assert PrepConfig.from_dict(record).slicing().bias_correction == "n4"
