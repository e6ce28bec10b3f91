"""Folder-in/folder-out scoring: any tool's masks against references, no model (mslesion score)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mslesion.cli import main
from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.evaluate.folder import pair_masks, score_folder
from mslesion.outputs import OutputError

from .conftest import copy_run, phantom, write_nifti


def _dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture
def folders(tmp_path):
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    _, truth = phantom(seed=0)
    shifted = np.roll(truth, 2, axis=0)
    write_nifti(refs / "a.nii.gz", truth)
    write_nifti(preds / "a.nii.gz", truth)  # same name: perfect
    write_nifti(refs / "b.nii.gz", truth)
    write_nifti(preds / "b_pred.nii.gz", (shifted * 255).astype(np.uint8))  # mslesion's name, 0/255
    write_nifti(refs / "c.nii", truth)
    write_nifti(preds / "c.nii.gz", np.where(truth > 0, 0.7, 0.2).astype(np.float32))  # probabilities
    write_nifti(refs / "d.nii.gz", truth)  # no prediction
    write_nifti(refs / "e.nii.gz", truth)
    write_nifti(preds / "e.nii.gz", truth[:, :, :-1])  # another grid
    write_nifti(preds / "stray.nii.gz", truth)  # no reference
    (preds / "notes.txt").write_text("not a mask")
    return preds, refs, truth, shifted


def test_pairs_by_name_and_by_pred_suffix(folders):
    preds, refs, *_ = folders
    pairs, unmatched = pair_masks(preds, refs)
    assert [(p, r.name, q.name if q else None) for p, r, q in pairs] == [
        ("a", "a.nii.gz", "a.nii.gz"), ("b", "b.nii.gz", "b_pred.nii.gz"), ("c", "c.nii", "c.nii.gz"),
        ("d", "d.nii.gz", None), ("e", "e.nii.gz", "e.nii.gz")]  # fmt: skip
    assert unmatched == ["stray.nii.gz"]


def test_scores_each_pair_and_reports_the_bad_ones(folders, tmp_path):
    preds, refs, truth, shifted = folders
    out = score_folder(preds, refs, tmp_path / "scores", verbose=False)
    table = pd.read_csv(out / "per_patient.csv").set_index("patient")
    assert sorted(table.index) == ["a", "b", "c"]
    assert table.loc["a", "dice"] == 1 and table.loc["a", "hd95_mm"] == 0
    assert table.loc["b", "dice"] == pytest.approx(_dice(truth, shifted))
    assert table.loc["c", "dice"] == 1  # 0.7 > 0.5 inside, 0.2 outside
    assert table.loc["a", "volume_true_ml"] == pytest.approx(truth.sum() * 1.2 * 1.1 * 4.0 / 1000)  # LPS_AFFINE voxels
    failures = pd.read_csv(out / "failures.csv").set_index("patient")
    assert sorted(failures.index) == ["d", "e"]
    assert "no prediction d.nii.gz" in failures.loc["d", "message"]
    assert failures.loc["e", "error"] == "ShapeMismatchError" and "e.nii.gz" in failures.loc["e", "message"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unmatched_predictions"] == ["stray.nii.gz"] and summary["threshold"] == 0.5
    assert summary["per_patient"]["dice"]["n"] == 3
    assert (preds / "notes.txt").read_text() == "not a mask"


def test_threshold_applies_to_probability_maps(folders, tmp_path):
    preds, refs, *_ = folders
    out = score_folder(preds, refs, tmp_path / "scores", threshold=0.8, verbose=False)
    table = pd.read_csv(out / "per_patient.csv").set_index("patient")
    assert table.loc["c", "volume_pred_voxels"] == 0 and table.loc["a", "dice"] == 1


def test_a_missing_or_empty_folder_is_one_error_line(folders, tmp_path, capsys):
    preds, refs, *_ = folders
    assert main(["score", str(preds), str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"mslesion: error: {tmp_path / 'nowhere'}: no such folder (expected a folder of "
                                        "NIfTI masks)"]  # fmt: skip
    (tmp_path / "empty").mkdir()
    assert main(["score", str(preds), str(tmp_path / "empty"), "--out-dir", str(tmp_path / "s")]) == 2
    assert "holds no NIfTI mask" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_refuses_an_output_inside_an_input_and_a_foreign_folder(folders, tmp_path):
    preds, refs, *_ = folders
    with pytest.raises(OutputError, match="lies inside the input"):
        score_folder(preds, refs, preds / "scores", verbose=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user file")
    with pytest.raises(OutputError, match="mslesion did not write"):
        score_folder(preds, refs, foreign, overwrite=True, verbose=False)
    assert (foreign / "keep.txt").read_text() == "user file"


def test_scoring_the_written_masks_repeats_the_evaluation(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    evaluated = evaluate(run, EvalConfig(write_masks=True), verbose=False)
    summary = json.loads((evaluated / "summary.json").read_text())
    source = summary["evaluated_on"].split("volumes from ")[1]
    refs = tmp_path / "refs"
    refs.mkdir()
    for pid in summary["patients"]:  # the reference masks, gathered as another tool would have them
        shutil.copy(Path(source) / f"Patient-{pid}" / f"{pid}-LesionSeg-Flair.nii.gz", refs / f"{pid}.nii.gz")
    assert main(["score", str(evaluated / "masks"), str(refs), "--out-dir", str(tmp_path / "scores")]) == 0
    assert "per-patient results" in capsys.readouterr().out
    a = pd.read_csv(evaluated / "per_patient.csv", dtype={"patient": str}).set_index("patient")
    b = pd.read_csv(tmp_path / "scores" / "per_patient.csv", dtype={"patient": str}).set_index("patient")
    for col in ("dice", "hd95_mm", "lesion_f1", "tp_lesions", "fp_lesions", "volume_pred_ml"):
        np.testing.assert_allclose(b.loc[a.index, col], a[col], rtol=1e-5, err_msg=col)

