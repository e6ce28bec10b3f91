"""Cross-validation as one study: train every fold (resumable), score each patient out of fold, report Table 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.cross_validation import evaluate_folds, fold_runs
from mslesion.folders import DatasetFolder
from mslesion.train.config import TrainConfig
from mslesion.train.folds import fold_ids, fold_run_config, train_folds

TINY = {"model": "kuc.unet", "model_params": {"filter_num": [4, 8]}, "loss": "bce_dice", "epochs": 1, "batch_size": 8,
        "tensorboard": False}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Six synthetic patients split into 3 folds, a tiny U-Net trained on each (one epoch)."""
    from mslesion.data.prep import resplit_dataset
    from mslesion.data.quick import quick_synthetic_dataset

    root = tmp_path_factory.mktemp("cv")
    quick_synthetic_dataset(root / "ds", 6, size=32, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    resplit_dataset(root / "ds", "kfold", folds=3, overwrite=True)
    config = TrainConfig(dataset=str(root / "ds"), run_dir=str(root / "study"), **TINY)
    runs = train_folds(config, "all", verbose=0)
    return root, config, runs


def test_every_fold_trains_into_its_own_run_and_a_rerun_skips_the_finished(study, capsys):
    root, config, runs = study
    assert [r.name for r in runs] == ["fold_0", "fold_1", "fold_2"] and all(r.parent == root / "study" for r in runs)
    assert [json.loads((r / "config.json").read_text())["fold"] for r in runs] == [0, 1, 2]
    before = [(r / "history.csv").read_text() for r in runs]
    assert train_folds(config, [2, 0], verbose=0) == [runs[2], runs[0]]
    assert "already finished" in capsys.readouterr().out
    assert [(r / "history.csv").read_text() for r in runs] == before


def test_fold_names_are_checked_against_the_dataset(study):
    root, config, _ = study
    assert fold_ids(config.dataset, "all") == [0, 1, 2]
    with pytest.raises(ValueError, match="no fold 3; its splits.json has folds 0..2"):
        fold_ids(config.dataset, [0, 3])
    with pytest.raises(ValueError, match="named twice"):
        fold_ids(config.dataset, [1, 1])
    assert fold_run_config(TrainConfig(dataset="d"), 2).run_dir is None  # default name ends in fold_2 already


def test_each_patient_is_scored_once_by_the_fold_that_held_it_out(study, tmp_path):
    root, config, runs = study
    out = evaluate_folds([root / "study"], EvalConfig(out_dir=str(tmp_path / "cv")), verbose=False)
    per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
    splits = DatasetFolder(config.dataset).splits()["folds"]
    held_out = {p: k for k, fold in enumerate(splits) for p in fold["test"]}
    assert dict(zip(per_patient.patient, per_patient.fold)) == held_out  # all six, each by its own fold
    folds = pd.read_csv(out / "folds.csv")
    for k in range(3):  # a fold's row is the mean over its own evaluation
        own = pd.read_csv(out / f"fold_{k}" / "per_patient.csv")
        assert folds.dice[k] == pytest.approx(own.dice.mean(), rel=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["across_folds"]["dice"]["mean"] == pytest.approx(folds.dice.mean(), rel=1e-5)
    assert summary["across_folds"]["dice"]["std"] == pytest.approx(folds.dice.std(ddof=0), rel=1e-4, abs=1e-9)
    assert summary["across_patients"]["dice"]["n"] + summary["across_patients"]["dice"]["n_nan"] == 6
    assert not [p for p in out.rglob(".*") if p.name != ".mslesion.json"]  # no lock or temporary left inside

    from mslesion.report.eval_tables import cross_validation_table

    table = cross_validation_table(out)
    assert table.fold.tolist() == [0, 1, 2, "mean ± SD"] and table.n_patients.iloc[-1] == 6
    assert table.dice.iloc[-1].startswith(f"{folds.dice.mean():.4g} ± ")


def test_what_is_not_a_cross_validation_is_refused(study, tmp_path):
    root, _, runs = study
    with pytest.raises(ValueError, match="needs the runs of at least two folds"):
        fold_runs([runs[0]])
    with pytest.raises(ValueError, match="fold 1 is given twice"):
        fold_runs([runs[1], runs[1], runs[0]])
    with pytest.raises(ValueError, match="give out_dir"):
        evaluate_folds(runs, EvalConfig())
    with pytest.raises(ValueError, match="part other than test do not apply"):
        evaluate_folds(runs, EvalConfig(out_dir=str(tmp_path / "x"), part="val"))
    assert not (tmp_path / "x").exists()


def test_cli_trains_folds_and_evaluates_them_as_one(study, tmp_path, capsys):
    from mslesion.cli import main

    root, config, runs = study
    args = ["train", config.dataset, "--recipe", "none", "--model", "kuc.unet", "--model-param", "filter_num=[4,8]",
            "--epochs", "1", "--no-tensorboard", "--run-dir", str(root / "study")]  # fmt: skip
    assert main([*args, "--folds", "all", "--loss", "bce_dice", "--batch-size", "8"]) == 0  # the study's own options
    assert capsys.readouterr().out.count("already finished") == 3
    with pytest.raises(SystemExit, match="--fold or --folds"):
        main([*args, "--folds", "0", "--fold", "1"])
    assert main(["evaluate", *map(str, runs), "--cross-validation", "--out-dir", str(tmp_path / "cv")]) == 0
    assert len(pd.read_csv(tmp_path / "cv" / "folds.csv")) == 3



def test_the_report_gets_a_cross_validation_table(study, tmp_path):
    from mslesion.report.build import ReportConfig, build_report

    root, _, runs = study
    cv = evaluate_folds(runs, EvalConfig(out_dir=str(tmp_path / "cv5")), verbose=False)
    build_report(ReportConfig(runs=[], cross_validations=[str(cv)], out=str(tmp_path / "results")))
    table = pd.read_csv(tmp_path / "results" / "tables" / "cross_validation_cv5.csv")
    assert table.fold.tolist() == ["0", "1", "2", "mean ± SD"]
    assert "Rondinella et al. (2023) Table 2" in (tmp_path / "results" / "report.md").read_text()
