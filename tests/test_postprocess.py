"""Post-processing: small components removed (checked against scikit-image), holes filled, chosen on the
validation patients, saved in the run and applied by evaluate and predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.infer.postprocess import PostProcess, remove_small_components, resolve_postprocess, save_postprocess

from .conftest import copy_run


@pytest.mark.parametrize("min_voxels", [2, 5, 12])
def test_small_components_go_as_scikit_image_removes_them(min_voxels):
    from skimage.morphology import remove_small_objects

    mask = np.random.default_rng(min_voxels).random((12, 20, 20)) > 0.8
    want = remove_small_objects(mask, max_size=min_voxels - 1, connectivity=3)  # 3 = 26-connected in 3D
    assert np.array_equal(remove_small_components(mask, min_voxels, 26), want)
    want6 = remove_small_objects(mask, max_size=min_voxels - 1, connectivity=1)
    assert np.array_equal(remove_small_components(mask, min_voxels, 6), want6)


def test_sizes_in_mm3_follow_the_voxel_size_and_holes_are_filled():
    prob = np.zeros((6, 10, 10), np.float32)
    prob[1, 1, 1:4] = 0.9  # 3 voxels
    prob[2:5, 3:8, 3:8] = 0.8  # a 3x5x5 block with a hole at its centre
    prob[3, 5, 5] = 0.1
    post = PostProcess(threshold=0.5, min_size_mm3=10.0, fill_holes=True)
    mask = post.apply(prob, (2.0, 1.0, 1.0))  # 2 mm³ voxels: 10 mm³ = 5 voxels
    assert not mask[1].any() and mask[3, 5, 5] and mask.sum() == 75
    assert post.apply(prob, (1.0, 1.0, 1.0))[1].sum() == 0  # 10 voxels needed now
    assert PostProcess(min_size_voxels=2).apply(prob, None)[1].sum() == 3  # no voxel size: voxels
    assert not PostProcess(threshold=0.5).apply(prob, (1, 1, 1))[3, 5, 5]  # holes stay unless asked
    with pytest.raises(ValueError, match="connectivity must be 6, 18 or 26"):
        remove_small_components(prob > 0.5, 4, connectivity=4)


def test_what_predict_and_evaluate_apply(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert resolve_postprocess(run) == PostProcess(threshold=0.5)
    assert resolve_postprocess(run, 0.3).threshold == 0.3
    save_postprocess(run, PostProcess(threshold=0.4, min_size_mm3=5.0, fill_holes=True))
    assert resolve_postprocess(run) == PostProcess(threshold=0.4, min_size_mm3=5.0, fill_holes=True)
    given = resolve_postprocess(run, 0.6)  # an explicit threshold replaces the saved one, the rest stays
    assert (given.threshold, given.min_size_mm3, given.fill_holes) == (0.6, 5.0, True)
    assert resolve_postprocess(run, use_saved=False) == PostProcess()
    assert resolve_postprocess(run, ensemble=True) == PostProcess()  # chosen for one run's probabilities only
    (run / "postprocess.json").write_text(json.dumps({"threshold": 0.5, "min_size": 3}))
    with pytest.raises(ValueError, match="unknown post-processing"):
        resolve_postprocess(run)


@pytest.fixture
def run(trained_run, tmp_path):
    return copy_run(trained_run, tmp_path / "runs" / trained_run.name)


def test_chosen_on_validation_saved_in_the_run_and_applied_by_evaluate(run, tmp_path):
    from mslesion.evaluate.postprocess_search import choose_postprocess

    post = choose_postprocess(run, "lesion_f1", thresholds=(0.3, 0.5, 0.7), min_sizes=(0, 5, 20), verbose=False)
    grid = pd.read_csv(run / "postprocess_grid.csv")
    assert len(grid) == 3 * 3 * 2 and post.chosen_on["score"] == pytest.approx(grid.lesion_f1.max())
    assert post.chosen_on["score"] >= post.chosen_on["plain_cut_score"]  # the plain cut is on the grid
    config = json.loads((run / "config.json").read_text())
    assert set(post.chosen_on["patients"]) == set(config["val_patients"])  # the run's own validation patients
    assert not set(post.chosen_on["patients"]) & set(config.get("test_patients", []))
    out = evaluate(run, EvalConfig(out_dir=str(tmp_path / "ev")), verbose=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["postprocess"]["threshold"] == post.threshold == summary["threshold"]
    assert summary["postprocess"]["min_size_mm3"] == post.min_size_mm3

    # a size filter that removes every lesion shows it is applied; --no-postprocess is the plain cut again
    save_postprocess(run, PostProcess(threshold=0.5, min_size_mm3=1e9))
    empty = evaluate(run, EvalConfig(out_dir=str(tmp_path / "empty")), verbose=False)
    assert (pd.read_csv(empty / "per_patient.csv").volume_pred_ml == 0).all()
    plain = evaluate(run, EvalConfig(out_dir=str(tmp_path / "plain"), postprocess=False), verbose=False)
    assert (pd.read_csv(plain / "per_patient.csv").volume_pred_ml > 0).any()
    assert json.loads((plain / "summary.json").read_text())["postprocess"]["min_size_mm3"] == 0


def test_predict_applies_the_runs_postprocessing(run, tmp_path):
    from mslesion.infer.predict import predict

    source = json.loads((run / "prep_config.json").read_text())["source"]
    save_postprocess(run, PostProcess(threshold=0.5, min_size_mm3=1e9))
    result = predict(run, source, tmp_path / "pred", verbose=False)
    table = pd.read_csv(result.lesions_csv)
    assert (table.lesion_voxels == 0).all() and len(table) > 0
    record = json.loads((tmp_path / "pred" / "predict_config.json").read_text())
    assert record["postprocess"]["min_size_mm3"] == 1e9
    plain = predict(run, source, tmp_path / "plain", verbose=False, postprocess=False)
    assert (pd.read_csv(plain.lesions_csv).lesion_voxels > 0).any()
