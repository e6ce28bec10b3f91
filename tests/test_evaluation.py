"""Whole-volume evaluation, prediction files and the exact inverse mapping."""

import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mslesion.cli import main
from mslesion.data.cohort import discover_cases
from mslesion.data.loading import load_case
from mslesion.data.slicing import slice_case, to_native_stack
from mslesion.data.synthetic import generate_cohort
from mslesion.data.volumes import from_axial_stack
from mslesion.evaluate import evaluation
from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.evaluate.loop import evaluate_volume
from mslesion.infer import inference
from mslesion.infer.predict import predict

from .conftest import LJUBLJANA, copy_run, requires


@pytest.fixture
def trained(trained_run, tmp_path) -> Path:
    """This test's own copy of the session's run: evaluations write into it."""
    return copy_run(trained_run, tmp_path / "runs" / trained_run.name)


def _oracle(monkeypatch):
    """Replace the network by the ground truth: every number must then be perfect."""
    monkeypatch.setattr(evaluation, "predict_volume",
                        lambda run, case, batch_size=16, tta="none", uncertainty="none": case.mask.astype(np.float32))


def test_evaluate_writes_every_table_and_records_its_settings(trained):
    out = evaluate(trained, EvalConfig(write_masks=True, detection_fraction=0.2, connectivity=18),
                   verbose=False)  # fmt: skip
    cfg = json.loads((trained / "config.json").read_text())
    test_ids = json.loads((Path(cfg["dataset"]) / "splits.json").read_text())["folds"][0]["test"]
    per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
    assert sorted(per_patient.patient) == sorted(test_ids)
    for col in ("dice", "iou", "sensitivity", "specificity", "ppv", "npv", "extra_fraction", "abs_volume_diff_ml",
                "rel_volume_diff", "hd95_mm", "lesion_tpr", "lesion_fpr", "lesion_f1", "tp_lesions", "fn_lesions",
                "fp_lesions", "slice_level_dice"):  # fmt: skip
        assert col in per_patient, col
    assert per_patient.dice.between(0, 1).all() and (per_patient.connectivity == 18).all()
    # the whole volume was predicted: counts cover every voxel of the source grid
    assert (per_patient[["tp", "fp", "fn", "tn"]].sum(axis=1) == 128 * 128 * 16).all()
    lesions = pd.read_csv(out / "lesions.csv", dtype={"patient": str})
    assert len(lesions) == 4 * len(test_ids) and set(lesions.detection_fraction) == {0.2}
    slices = pd.read_csv(out / "slices.csv", dtype={"patient": str})
    assert (slices.lesion_pixels > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["connectivity"] == 18 and summary["detection_fraction"] == 0.2 and summary["checkpoint"] == "model"
    assert summary["run"] == str(trained) and summary["patients"] == per_patient.patient.tolist()
    assert summary["slice_level"]["n_slices"] == len(slices)
    assert 0 <= summary["slice_level"]["pooled_dice"] <= 1
    examples = np.load(out / "examples.npz")
    assert {"good_0/image", "average_0/truth", "bad_0/pred"} <= set(examples.files)
    # written masks: source affine, source shape, binary
    for pid in test_ids:
        src = nib.load(str(Path(summary["evaluated_on"].split("volumes from ")[1]) / f"Patient-{pid}" / f"{pid}-Flair.nii.gz"))
        written = nib.load(str(out / "masks" / f"{pid}_pred.nii.gz"))
        np.testing.assert_allclose(written.affine, src.affine)
        assert written.shape == src.shape and set(np.unique(written.get_fdata())) <= {0.0, 1.0}


def test_oracle_prediction_scores_perfectly_and_writes_the_source_mask_back(trained, monkeypatch, tmp_path):
    _oracle(monkeypatch)
    out = evaluate(trained, EvalConfig(write_masks=True, out_dir=str(tmp_path / "oracle")), verbose=False)
    per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
    assert (per_patient.dice == 1).all() and (per_patient.hd95_mm == 0).all()
    assert (per_patient.lesion_f1 == 1).all() and (per_patient.fp_lesions == 0).all()
    assert (per_patient.abs_volume_diff_ml == 0).all()
    src_root = Path(json.loads((trained / "prep_config.json").read_text())["source"])
    for pid in per_patient.patient:
        truth = nib.load(str(src_root / f"Patient-{pid}" / f"{pid}-LesionSeg-Flair.nii.gz")).get_fdata() > 0.5
        written = nib.load(str(out / "masks" / f"{pid}_pred.nii.gz")).get_fdata() > 0.5
        np.testing.assert_array_equal(written, truth)


def test_a_bad_patient_is_reported_and_the_others_evaluated(trained, tmp_path):
    source = Path(json.loads((trained / "prep_config.json").read_text())["source"])
    copy = tmp_path / "heldout"
    for pid in ("1", "2"):
        shutil.copytree(source / f"Patient-{pid}", copy / f"Patient-{pid}")
    flair = copy / "Patient-2" / "2-Flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[:300])  # truncated
    out = evaluate(trained, EvalConfig(source=str(copy)), verbose=False)
    assert out.name == "eval_heldout"
    assert pd.read_csv(out / "per_patient.csv", dtype={"patient": str}).patient.tolist() == ["1"]
    failures = pd.read_csv(out / "failures.csv", dtype={"patient": str})
    assert failures.patient.tolist() == ["2"] and "2-Flair.nii.gz" in failures.message[0]


def test_predict_a_file_and_a_folder(trained, tmp_path):
    source = Path(json.loads((trained / "prep_config.json").read_text())["source"])
    flair = source / "Patient-1" / "1-Flair.nii.gz"
    table = pd.read_csv(predict(trained, flair, tmp_path / "one", verbose=False))
    assert table.patient.tolist() == ["1-Flair"]
    mask = nib.load(str(tmp_path / "one" / "1-Flair_lesion_mask.nii.gz"))
    src = nib.load(str(flair))
    np.testing.assert_allclose(mask.affine, src.affine)
    assert mask.get_data_dtype() == np.uint8 and mask.shape == src.shape
    voxels = int((mask.get_fdata() > 0).sum())
    assert table.lesion_voxels[0] == voxels
    assert math.isclose(table.lesion_volume_ml[0], voxels * 1.8 * 1.8 * 5.0 / 1000, rel_tol=1e-4)
    # a folder of plain FLAIR files (no masks, no dataset layout), through the CLI
    plain = tmp_path / "plain"
    plain.mkdir()
    for pid in ("3", "4"):
        shutil.copy(source / f"Patient-{pid}" / f"{pid}-Flair.nii.gz", plain / f"case{pid}.nii.gz")
    assert main(["predict", str(trained), str(plain), str(tmp_path / "many")]) == 0
    assert pd.read_csv(tmp_path / "many" / "lesions.csv").patient.tolist() == ["case3", "case4"]


def test_cli_evaluate(trained, tmp_path):
    assert main(["evaluate", str(trained), "--out-dir", str(tmp_path / "e"), "--checkpoint", "final",
                 "--connectivity", "6"]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["checkpoint"] == "final" and summary["connectivity"] == 6


def test_run_keeps_its_prep_config_so_it_predicts_without_the_dataset(trained, tmp_path):
    run = tmp_path / "run"  # a copy: the shared fixture is not touched
    shutil.copytree(trained, run)
    config = json.loads((run / "config.json").read_text())
    config["dataset"] = str(tmp_path / "dataset_gone")  # as after the dataset was deleted or never copied over
    (run / "config.json").write_text(json.dumps(config))
    assert inference.run_prep_config(run)["size"] == [64, 64]
    generate_cohort(tmp_path / "raw", 1, seed=5, shape=(128, 128, 16), spacing_mm=(1.8, 1.8, 5.0))
    predict(run, tmp_path / "raw", tmp_path / "pred", verbose=False)
    (mask,) = sorted((tmp_path / "pred").rglob("*_lesion_mask.nii.gz"))
    assert nib.load(mask).shape == (128, 128, 16)
    (run / "prep_config.json").unlink()
    with pytest.raises(inference.RunNotFoundError, match="dataset_gone"):
        inference.run_prep_config(run)


def test_evaluate_volume_without_spacing_reports_voxels_not_mm():
    truth = np.zeros((4, 20, 20), bool)
    truth[1:3, 5:9, 5:9] = True
    pred = np.roll(truth, 2, axis=2)
    row, lesions = evaluate_volume(truth, pred, None)
    assert math.isnan(row["hd95_mm"]) and math.isnan(row["volume_true_ml"])
    assert row["hd95_voxels"] == 2 and row["volume_true_voxels"] == 32
    assert lesions["tp_lesions"] == 1 and row["dice"] == 0.5


def _inverse_check(case, size):
    loaded = load_case(case)
    sliced = slice_case(loaded.stack, loaded.mask, loaded.modalities, loaded.spacing_zhw_mm, selection="all",
                        size=size)  # fmt: skip
    prob = to_native_stack(sliced.masks.astype(np.float32), sliced.geometry, sliced.slice_indices,
                           loaded.stack.shape[:3])  # fmt: skip
    native = from_axial_stack(prob > 0.5, loaded.affine)
    truth = nib.load(str(loaded.mask_file)).get_fdata() > 0.5
    np.testing.assert_array_equal(native, truth)


def test_inverse_mapping_of_a_perfect_prediction_is_the_source_mask(tmp_path):
    generate_cohort(tmp_path, 1, seed=3, shape=(150, 170, 12), spacing_mm=(0.9, 0.9, 5.0))
    _inverse_check(discover_cases(tmp_path).cases[0], (256, 256))


@requires(LJUBLJANA)
def test_inverse_mapping_on_ljubljana_is_exact():
    _inverse_check(discover_cases(LJUBLJANA).cases[0], (256, 256))


def test_predict_volume_undoes_a_brain_crop(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mslesion.data.prep import PrepConfig
    from mslesion.infer import inference

    generate_cohort(tmp_path, 1, seed=4, shape=(170, 190, 8), spacing_mm=(0.9, 0.9, 5.0))
    loaded = load_case(discover_cases(tmp_path).cases[0])
    seen = {}

    def recording_slice_case(*args, **kwargs):
        seen["sliced"] = slice_case(*args, **kwargs)
        return seen["sliced"]

    monkeypatch.setattr(inference, "slice_case", recording_slice_case)
    # a "network" that returns the prepared mask of each slice
    monkeypatch.setattr(inference, "predict_slices", lambda model, images, batch_size=16, tta="none", passes=None:
                        seen["sliced"].masks[..., 0].astype(np.float32))  # fmt: skip
    run = SimpleNamespace(prep=PrepConfig(size=(256, 256), crop="brain"), input_shape=(256, 256, 1), model=None,
                          run_dir=tmp_path)  # fmt: skip
    prob = inference.predict_volume(run, loaded)
    assert seen["sliced"].crop_box is not None
    np.testing.assert_array_equal(prob > 0.5, loaded.mask)


def test_trust_summary_spread_collapsed_and_volumes():
    import pandas as pd

    from mslesion.evaluate.summary import describe_trust, trust_summary

    table = pd.DataFrame({"patient": ["a", "b", "c", "d"], "dice": [0.8, 0.05, float("nan"), 0.6],
                          "volume_true_ml": [2.0, 4.0, 0.0, 1.0], "volume_pred_ml": [3.0, 40.0, 0.5, 1.0]})  # fmt: skip
    trust = trust_summary(table)
    assert trust["dice"]["n"] == 3 and trust["dice"]["n_nan"] == 1
    assert trust["dice"]["median"] == pytest.approx(0.6) and trust["dice"]["min"] == pytest.approx(0.05)
    assert trust["collapsed"] == {"dice_below": 0.1, "n": 1, "fraction": 0.25, "patients": ["b"]}
    volume = trust["lesion_volume"]
    assert volume["unit"] == "ml" and volume["true_mean"] == pytest.approx(7 / 4)
    assert volume["pred_over_true"]["median"] == pytest.approx(1.5)  # 1.5, 10, 1 (c has no true lesion)
    assert "1 of 4 patients below 0.1" in describe_trust(trust)
    voxels = trust_summary(table.rename(columns={"volume_true_ml": "volume_true_voxels",
                                                 "volume_pred_ml": "volume_pred_voxels"}))  # fmt: skip
    assert voxels["lesion_volume"]["unit"] == "voxels"


def test_a_run_whose_dataset_cannot_be_found_is_one_line_naming_it(trained, tmp_path, monkeypatch, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("eval_*", ".eval_*"))
    config = json.loads((copy / "config.json").read_text())
    config["dataset"] = "data/slices/elsewhere"  # relative, as make demo records it
    (copy / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data/slices/elsewhere" in err[0] and "relative path" in err[0]


def test_evaluate_flags_are_generated_from_the_config_fields():
    import argparse
    from dataclasses import fields

    from mslesion.cli.options import add_config_flags, config_from_flags

    parser = argparse.ArgumentParser()
    add_config_flags(parser, EvalConfig, skip=("ensemble",))
    assert {a.dest for a in parser._actions} - {"help"} == {f.name for f in fields(EvalConfig)} - {"ensemble"}
    assert config_from_flags(parser.parse_args([]), EvalConfig, skip=("ensemble",)) == EvalConfig()
    args = parser.parse_args(["--patients", "3", "7", "--tta", "flip", "--connectivity", "6", "--write-masks",
                              "--checkpoint", "best", "--out-dir", "o"])  # fmt: skip
    assert config_from_flags(args, EvalConfig, skip=("ensemble",)) == EvalConfig(
        patients=["3", "7"], tta="flip", connectivity=6, write_masks=True, checkpoint="best", out_dir="o")
    for bad in (["--connectivity", "8"], ["--tta", "mirror"], ["--layout", "bids"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
