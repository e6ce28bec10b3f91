"""Uncertainty of an ensemble / TTA: running statistics checked against numpy and scipy, maps written by predict."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from mslesion.infer.uncertainty import PassStats, binary_entropy, lesion_uncertainty, uncertainty_map

from .conftest import copy_run


def test_running_mean_and_sd_match_numpy_over_the_passes():
    passes = np.random.default_rng(0).random((7, 4, 9, 9)).astype(np.float32)
    acc = PassStats()
    for p in passes:
        acc.add(p)
    assert np.allclose(acc.mean(), passes.mean(0), atol=1e-6)
    assert np.allclose(uncertainty_map(acc, "std"), passes.std(0), atol=1e-5)
    one = PassStats()
    one.add(passes[0])
    with pytest.raises(ValueError, match="needs several passes"):
        uncertainty_map(one, "std")


def test_entropy_in_bits_and_lesion_means_match_scipy():
    p = np.array([0.0, 1e-9, 0.1, 0.5, 0.9, 1.0])
    want = [stats.entropy([q, 1 - q], base=2) for q in p]
    assert np.allclose(binary_entropy(p), want, atol=1e-6) and binary_entropy(np.array([0.5]))[0] == pytest.approx(1)
    mask = np.zeros((4, 8, 8), bool)
    mask[0, :2, :2] = mask[3, 5:, 5:] = True
    labels, n = ndimage.label(mask)
    unc = np.random.default_rng(1).random(mask.shape)
    assert np.allclose(lesion_uncertainty(labels, n, unc), ndimage.mean(unc, labels, np.arange(1, n + 1)))


def test_predict_writes_maps_on_the_source_grid_and_per_lesion_rows(trained_run, tmp_path):
    from mslesion.infer.predict import predict

    run = copy_run(trained_run, tmp_path / "run")
    source = json.loads((run / "prep_config.json").read_text())["source"]
    with pytest.raises(ValueError, match="needs several passes"):  # refused before anything is written
        predict(run, source, tmp_path / "no", uncertainty="std", verbose=False)
    assert not (tmp_path / "no").exists()
    plain = pd.read_csv(predict(run, source, tmp_path / "plain", tta="flip", verbose=False).lesions_csv)
    result = predict(run, source, tmp_path / "unc", tta="flip", uncertainty="std", verbose=False)
    table = pd.read_csv(result.lesions_csv, dtype={"patient": str})
    assert table.lesion_voxels.tolist() == plain.lesion_voxels.tolist()  # the masks do not change
    lesions = pd.read_csv(tmp_path / "unc" / "uncertainty.csv", dtype={"patient": str})
    assert len(lesions) == table.lesions.sum()
    with_lesions = table[table.lesions > 0]
    assert lesions.groupby("patient").voxels.sum().to_dict() == dict(zip(with_lesions.patient, with_lesions.lesion_voxels))
    assert lesions.mean_std.between(0, 0.5).all() and (lesions.max_std >= lesions.mean_std).all()
    first = table.iloc[0]
    image = nib.load(next((tmp_path / "unc").glob(f"{first.patient}_lesion_mask.nii.gz")))
    umap = nib.load(first.uncertainty_map)
    assert umap.shape == image.shape and np.allclose(umap.affine, image.affine)
    data = umap.get_fdata()
    assert data.dtype.kind == "f" and 0 <= data.min() and data.max() <= 0.5 and data.max() > 0
    record = json.loads((tmp_path / "unc" / "predict_config.json").read_text())
    assert record["uncertainty"] == "std" and record["tta"] == "flip"
    single = predict(run, source, tmp_path / "ent", uncertainty="entropy", verbose=False)  # one pass is enough
    assert pd.read_csv(single.lesions_csv).mean_lesion_uncertainty.dropna().between(0, 1).all()
