"""Uncertainty per predicted lesion at evaluation: true vs false lesions, and the AUROC that separates them."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.evaluate.lesion_uncertainty import lesion_uncertainty_rows, uncertainty_summary

from .conftest import copy_run


def _example():
    truth = np.zeros((4, 10, 10), bool)
    truth[1:3, 2:4, 2:4] = True
    pred = np.zeros_like(truth)
    pred[1:3, 2:5, 2:4] = True  # touches the true lesion: 12 voxels
    pred[0, 8, 8] = True  # a false one: 1 voxel
    unc = np.zeros(truth.shape, np.float32)
    unc[1:3, 2:5, 2:4] = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 100
    unc[0, 8, 8] = 0.9
    return truth, pred, unc


def test_each_predicted_lesion_gets_its_uncertainty_and_whether_it_is_true():
    truth, pred, unc = _example()
    rows = lesion_uncertainty_rows("p", truth, pred, unc, (2.0, 1.0, 1.0))
    by_size = sorted(rows, key=lambda r: r["voxels"])
    assert [(r["voxels"], r["true_positive"]) for r in by_size] == [(1, False), (12, True)]
    assert by_size[0]["mean_uncertainty"] == pytest.approx(0.9) and by_size[0]["volume_ml"] == pytest.approx(0.002)
    assert by_size[1]["mean_uncertainty"] == pytest.approx(np.arange(12).mean() / 100)
    assert by_size[1]["max_uncertainty"] == pytest.approx(0.11)
    assert math.isnan(lesion_uncertainty_rows("p", truth, pred, unc)[0]["volume_ml"])
    assert lesion_uncertainty_rows("p", truth, np.zeros_like(pred), unc) == []
    with pytest.raises(ValueError, match="one shape"):
        lesion_uncertainty_rows("p", truth, pred, unc[:2])


def test_auroc_is_the_chance_a_false_lesion_is_more_uncertain_than_a_true_one():
    rng = np.random.default_rng(0)
    rows = [{"mean_uncertainty": float(u), "true_positive": bool(t)}
            for u, t in zip(rng.integers(0, 5, 40) / 10, rng.random(40) < 0.6)]  # ties included
    false = [r["mean_uncertainty"] for r in rows if not r["true_positive"]]
    true = [r["mean_uncertainty"] for r in rows if r["true_positive"]]
    pairs = [(f > t) + 0.5 * (f == t) for f, t in itertools.product(false, true)]
    got = uncertainty_summary(rows, "entropy")
    assert got["auroc_false_lesions"] == pytest.approx(np.mean(pairs))
    assert (got["true_lesions"], got["false_lesions"]) == (len(true), len(false))
    assert got["mean_uncertainty_false"] == pytest.approx(np.mean(false))
    assert math.isnan(uncertainty_summary([r for r in rows if r["true_positive"]], "std")["auroc_false_lesions"])


def test_evaluate_writes_lesion_uncertainty_consistent_with_its_masks(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    with pytest.raises(ValueError, match="several passes"):
        evaluate(run, EvalConfig(uncertainty="std"), verbose=False)
    out = evaluate(run, EvalConfig(uncertainty="entropy"), verbose=False)
    lesions = pd.read_csv(out / "lesion_uncertainty.csv")
    per_patient = pd.read_csv(out / "per_patient.csv")
    assert list(lesions.columns[:2]) == ["patient", "lesion"] and len(lesions)
    # every predicted voxel belongs to one predicted lesion row
    voxels = lesions.groupby("patient").voxels.sum()
    predicted = per_patient.set_index("patient").volume_pred_voxels
    assert (voxels.reindex(predicted.index, fill_value=0) == predicted).all()
    assert lesions.mean_uncertainty.between(0, 1).all() and (lesions.max_uncertainty >= lesions.mean_uncertainty).all()
    assert (lesions.groupby("patient").true_positive.apply(lambda t: (~t).sum())
            .reindex(predicted.index, fill_value=0) == per_patient.set_index("patient").fp_lesions).all()
    summary = json.loads((out / "summary.json").read_text())["uncertainty"]
    assert summary["measure"] == "entropy"
    assert summary["true_lesions"] + summary["false_lesions"] == len(lesions)
    assert "mean_lesion_uncertainty" in per_patient.columns
