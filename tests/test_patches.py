"""3D data path: prepared volumes, patch grid, patch sampler, augmentation, sliding window."""

from __future__ import annotations

import csv
import json
import tracemalloc

import numpy as np
import pytest

from mslesion.data.volumes3d import PreparedVolume, open_volume, prepare_volumes
from mslesion.infer.sliding_window import gaussian_importance, sliding_window_predict
from mslesion.train.patches import PatchSampler, augment_patch, extract_patch, patch_grid

from .conftest import write_muslim_patient

PATCH, STRIDE = (16, 16, 16), (8, 8, 8)


def _volume(shape, seed=0, n_channels=2):
    """A noise channel plus the truth mask as its last channel (so identity prediction = truth)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(4):
        c = [rng.integers(0, s) for s in shape]
        mask[tuple(slice(max(0, ci - 2), ci + 2) for ci in c)] = 1
    image = rng.normal(size=(*shape, n_channels)).astype(np.float32)
    image[..., -1] = mask
    return PreparedVolume("p", image, mask, {})


@pytest.mark.parametrize("shape, patch, stride", [
    ((64, 64, 64), (32, 32, 32), (16, 16, 16)), ((45, 70, 33), (32, 32, 32), (16, 16, 16)),
    ((20, 23, 17), (32, 32, 32), (16, 16, 16)), ((32, 33, 31), (32, 32, 32), (32, 32, 32)),
    ((182, 218, 182), (64, 64, 64), (32, 32, 32)), ((5, 100, 9), (4, 7, 9), (3, 5, 1)),
])  # fmt: skip
def test_patch_grid_covers_every_voxel(shape, patch, stride):
    covered = np.zeros(shape, np.int32)
    corners = patch_grid(shape, patch, stride)
    assert len(set(corners)) == len(corners)
    for corner in corners:
        assert all(0 <= c and (c + p <= n or (c == 0 and n < p)) for c, p, n in zip(corner, patch, shape))
        covered[tuple(slice(c, c + p) for c, p in zip(corner, patch))] += 1
    assert covered.min() >= 1
    for axis, (n, p) in enumerate(zip(shape, patch)):  # last patch flush with the far edge
        assert max(c[axis] for c in corners) == max(n - p, 0)


def test_patch_grid_counts_and_errors():
    assert len(patch_grid((182, 218, 182))) == 5 * 6 * 5
    assert patch_grid((10, 10, 10), (32, 32, 32), (16, 16, 16)) == [(0, 0, 0)]
    with pytest.raises(ValueError, match="stride"):
        patch_grid((64, 64, 64), (32, 32, 32), (40, 16, 16))


def test_extract_patch_pads_far_end():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    out = extract_patch(vol, (0, 0, 0), (4, 4, 4), pad_value=np.array([-7.0], np.float32))
    np.testing.assert_array_equal(out[:2, :3, :4], vol)
    assert (out[2:] == -7).all() and (out[:, 3:] == -7).all()


def _batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return [sampler[i] for i in range(len(sampler))]


def test_sampler_is_deterministic_per_seed():
    volumes = [_volume((40, 36, 30), seed=s) for s in range(3)]
    kwargs = {"batch_size": 3, "patch": PATCH, "stride": STRIDE, "patches_per_epoch": 12, "rotate_deg": 10.0}
    a, b, c = (PatchSampler(volumes, seed=s, **kwargs) for s in (0, 0, 1))
    for epoch in (0, 1):
        for (xa, ya), (xb, yb) in zip(_batches(a, epoch), _batches(b, epoch)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(_batches(a, 0)[0][0], _batches(a, 1)[0][0])  # a new draw each epoch
    assert not np.array_equal(_batches(a, 0)[0][0], _batches(c, 0)[0][0])  # and per seed
    a.set_epoch(2)
    last_first = a[len(a) - 1]
    a.set_epoch(2)
    np.testing.assert_array_equal(a[len(a) - 1][0], last_first[0])  # any access order
    x, y = a[0]
    assert x.shape == (3, *PATCH, 2) and x.dtype == np.float32 and y.shape == (3, *PATCH, 1) and y.dtype == np.float32


@pytest.mark.parametrize("fraction, batch_size", [(0.5, 2), (0.25, 4), (1.0, 3), (0.0, 2), (1 / 3, 3)])
def test_sampler_respects_lesion_fraction(fraction, batch_size):
    volumes = [_volume((48, 48, 40), seed=s) for s in range(2)]
    sampler = PatchSampler(volumes, batch_size=batch_size, patch=PATCH, stride=STRIDE, lesion_fraction=fraction,
                           patches_per_epoch=24, seed=3)  # fmt: skip
    assert 0 < sampler.has_lesion.sum() < len(sampler.has_lesion)
    n_lesion = 0
    for start, (x, y) in zip(range(0, 24, batch_size), _batches(sampler, 1)):
        with_lesion = int(y.reshape(len(y), -1).any(axis=1).sum())
        expected = int(np.floor(fraction * (start + len(y)) + 0.5) - np.floor(fraction * start + 0.5))
        assert with_lesion == expected
        n_lesion += with_lesion
    assert n_lesion == int(np.floor(fraction * 24 + 0.5))


def test_validation_sampler_visits_every_grid_patch_once_in_order():
    vol = _volume((40, 20, 24))
    sampler = PatchSampler([vol], batch_size=4, patch=PATCH, stride=STRIDE, augment=False, shuffle=False,
                           lesion_fraction=None)  # fmt: skip
    corners = patch_grid(vol.volume.shape, PATCH, STRIDE)
    xs = np.concatenate([x for x, _ in _batches(sampler, 0)])
    assert len(xs) == len(corners)
    for x, corner in zip(xs, corners):
        np.testing.assert_array_equal(x, extract_patch(vol.volume, corner, PATCH))


@pytest.mark.parametrize("params", [{}, {"rotate_deg": 15.0}, {"elastic_alpha_vox": 3.0, "elastic_grid_vox": 8}])
def test_augmentation_moves_image_and_mask_together(params):
    vol = _volume((24, 24, 24), seed=5)
    x0, y0 = vol.volume, vol.mask
    changed = 0
    for seed in range(12):
        x, y = augment_patch(x0, y0, np.random.default_rng(seed), **params)
        assert x.shape == x0.shape and y.shape == y0.shape and x.dtype == np.float32 and y.dtype == y0.dtype
        if params:  # interpolation: the image is linear, the mask nearest-neighbour
            assert ((x[..., -1] > 0.5) == (y > 0)).mean() > 0.97
        else:  # flips and 90-degree turns are exact
            np.testing.assert_array_equal(x[..., -1], y)
            assert y.sum() == y0.sum()
        changed += not np.array_equal(y, y0)
    assert changed >= 8


def test_gaussian_importance():
    g = gaussian_importance((16, 20, 9))
    assert g.shape == (16, 20, 9) and g.dtype == np.float32 and g.min() > 0 and np.isclose(g.max(), 1)
    assert g[8, 10, 4] > g[0, 10, 4] and g[8, 10, 4] > g[8, 0, 4]


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
@pytest.mark.parametrize("shape", [(45, 70, 33), (20, 23, 17), (32, 32, 32), (7, 40, 31)])
def test_sliding_window_identity_is_exact(blend, shape):
    vol = _volume(shape, seed=1)
    calls = []

    def identity(x):
        calls.append(len(x))
        assert x.shape[1:] == (32, 32, 32, 2) and x.dtype == np.float32
        return x[..., -1:]

    out = sliding_window_predict(identity, vol.volume, (32, 32, 32), (16, 16, 16), batch_size=3, blend=blend)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, vol.mask.astype(np.float32))
    assert max(calls) <= 3 and sum(calls) == len(patch_grid(shape, (32, 32, 32), (16, 16, 16)))


def test_sliding_window_multi_class_output():
    vol = _volume((40, 36, 20), seed=2)
    out = sliding_window_predict(lambda x: x, vol.volume, (16, 16, 16), (8, 8, 8), blend="gaussian")
    assert out.shape == (40, 36, 20, 2)
    np.testing.assert_array_equal(out[..., 1], vol.mask.astype(np.float32))


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
def test_sliding_window_full_size_is_exact_and_memory_bounded(blend):
    """182x218x182, patch 64, stride 32 (150 patches = 5.2 volumes of patch data).

    Bound: the two float32 accumulators are 2 volumes; one batch of patches
    (input, output, weighted product, importance map) is a few MB more. 2.5
    volumes is well under holding every patch (5.2 volumes) or a float64
    accumulator (2 more volumes).
    """
    shape = (182, 218, 182)
    truth = np.zeros(shape, np.float32)
    truth[40:60, 100:130, 90:95] = 1
    truth[::17, ::13, ::11] = 1
    tracemalloc.start()
    try:
        out = sliding_window_predict(lambda x: x, truth, (64, 64, 64), (32, 32, 32), batch_size=2, blend=blend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, truth)
    assert peak < 2.5 * truth.nbytes, f"peak {peak / 2**20:.0f} MiB for a {truth.nbytes / 2**20:.0f} MiB volume"


def test_prepare_volumes(tmp_path):
    raw = tmp_path / "raw"
    for pid in ("1", "2", "3", "4"):
        write_muslim_patient(raw, pid, seed=int(pid), modalities=("Flair", "T1"))
    (raw / "Patient-4" / "4-T1.nii.gz").write_bytes(b"not a nifti")  # a corrupt patient is reported and skipped
    summary = prepare_volumes(raw, tmp_path / "vol", modalities=("flair", "t1"), split="train_val_test",
                              test_fraction=0.34, val_fraction=0.5)  # fmt: skip
    out = tmp_path / "vol"
    assert summary["patients"] == ["1", "2", "3"] and [f["patient"] for f in summary["failures"]] == ["4"]
    with open(out / "failures.csv") as f:
        assert [r["patient"] for r in csv.DictReader(f)] == ["4"]
    splits = json.loads((out / "splits.json").read_text())
    fold = splits["folds"][0]
    assert sorted(fold["train"] + fold["val"] + fold["test"]) == ["1", "2", "3"] and fold["val"] and fold["test"]
    config = json.loads((out / "prep3d_config.json").read_text())
    assert config["modalities"] == ["flair", "t1"] and config["normalisation"] == "zscore"
    case = open_volume(out, "1")
    assert case.volume.shape == (10, 48, 40, 2) and case.volume.dtype == np.float32
    assert case.mask.shape == (10, 48, 40) and case.mask.dtype == np.uint8 and set(np.unique(case.mask)) == {0, 1}
    meta = case.meta
    assert meta["spacing_zhw_mm"] == pytest.approx([4.0, 1.1, 1.2]) and len(meta["normalisation"]) == 2
    assert np.asarray(meta["source"]["affine"]).shape == (4, 4) and len(meta["source"]["axcodes"]) == 3
    for c, norm in enumerate(meta["normalisation"]):
        assert norm["method"] == "zscore" and norm["scale"] > 0
        head = case.volume[..., c] > -5  # the phantom's head (~100) ends near 0, its air (~0) near -10
        assert abs(case.volume[..., c][head].mean()) < 0.2 and case.volume[..., c].min() < -5
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
