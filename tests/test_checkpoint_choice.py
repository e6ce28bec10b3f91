"""The checkpoint evaluate/predict use: the better of best and final after BN recalibration; BN-gap warnings."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from mslesion.train.checkpoints import BN_GAP_TOLERANCE, bn_gap_warnings, choose, describe_choice, score_candidate


def candidate(dice: float, training_mode: float | None = None) -> dict:
    reference = dice if training_mode is None else training_mode
    return {"inference": {"dice": dice}, "training_mode_val_dice": reference, "bn_gap": reference - dice}


def test_choose_takes_the_higher_inference_dice_and_final_on_ties_or_nan():
    assert choose({"final": candidate(0.6), "best": candidate(0.7)}) == "best"
    assert choose({"final": candidate(0.7), "best": candidate(0.6)}) == "final"
    assert choose({"best": candidate(0.5), "final": candidate(0.5)}) == "final"
    assert choose({"final": candidate(float("nan")), "best": candidate(0.1)}) == "best"
    assert choose({"best": candidate(float("nan")), "final": candidate(float("nan"))}) == "final"


def test_bn_gap_warning_only_above_the_tolerance():
    ok = {"final": candidate(0.40, 0.40 + BN_GAP_TOLERANCE - 0.01)}
    assert bn_gap_warnings(ok, "final") == []
    bad = {"final": candidate(0.03, 0.44)}
    (line,) = bn_gap_warnings(bad, "final")
    assert line.startswith("WARNING: batch norm") and "0.030" in line and "0.440" in line and "0.410" in line


def test_description_says_when_the_choice_was_made_on_training_patients():
    c = {"final": candidate(0.5), "best": candidate(0.6)}
    assert "training patients" in describe_choice(c, "best", val_is_train=True)
    assert "validation patients" in describe_choice(c, "best", val_is_train=False)
    assert "best 0.600" in describe_choice(c, "best", val_is_train=False)


def test_score_candidate_measures_training_mode_before_recalibrating():
    calls = []

    def evaluate(m):
        calls.append("evaluate")
        return {"dice": 0.2 if "recalibrate" not in calls else 0.5}

    def reference(m):
        calls.append("reference")
        return 0.55

    def recalibrate(m):
        calls.append("recalibrate")
        return 7

    scores = score_candidate(object(), evaluate, reference, recalibrate)
    assert calls == ["evaluate", "reference", "recalibrate", "evaluate"]
    assert scores["inference_before_recalibration"]["dice"] == 0.2 and scores["inference"]["dice"] == 0.5
    assert scores["recalibration_batches"] == 7 and math.isclose(scores["bn_gap"], 0.05)
    assert score_candidate(object(), lambda m: {"dice": 0.3}, lambda m: 0.3, None)["recalibration_batches"] == 0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort
    from mslesion.train.training import train

    root = tmp_path_factory.mktemp("choice")
    generate_cohort(root / "raw", 6, seed=3, shape=(96, 96, 12), spacing_mm=(1.8, 1.8, 5.0))
    cfg = PrepConfig(size=(64, 64), selection="brain", split="train_val_test", test_fraction=0.2, val_fraction=0.25)
    prepare_dataset(root / "raw", root / "slices", cfg, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train({"dataset": str(root / "slices"), "runs_root": str(root / "runs"), "batch_size": 8,
                      "model": "kuc.unet", "model_params": {"filter_num": [8, 16, 32]}, "loss": "dice",
                      "learning_rate": 3e-3, "epochs": 6, "recalibration_batches": 8}, verbose=0)  # fmt: skip


def test_model_keras_holds_the_chosen_candidate_and_scores_as_recorded(finished_run):
    from mslesion.evaluate.metrics import Confusion, compute_dice
    from mslesion.infer.inference import open_run
    from mslesion.train.datasets import load_slice_set

    final_eval = json.loads((finished_run / "final_eval.json").read_text())
    candidates, chosen = final_eval["candidates"], final_eval["chosen"]
    assert chosen == choose(candidates) and "final" in candidates
    assert all(c["recalibration_batches"] == 8 for c in candidates.values())
    assert final_eval["chosen_on"] == "validation patients"
    # the default checkpoint is model.keras, and it scores what final_eval.json says
    trained = open_run(finished_run)
    assert trained.checkpoint == "model"
    config = json.loads((finished_run / "config.json").read_text())
    x, y = load_slice_set(config["dataset"], config["val_patients"]).arrays()
    pred = trained.model.predict(x, batch_size=8, verbose=0) > 0.5
    truth = y > 0.5
    dice = compute_dice(Confusion(int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum()), 0))
    assert abs(dice - candidates[chosen]["inference"]["dice"]) < 1e-3
    assert all(dice >= c["inference"]["dice"] - 1e-3 for c in candidates.values())
    if "best" in candidates:
        assert candidates["best"]["epoch"] != candidates["final"]["epoch"]


def test_summary_txt_opens_with_the_verdict(finished_run):
    lines = (finished_run / "summary.txt").read_text().splitlines()
    assert lines[0].startswith(("WARNING: batch norm", "model.keras = "))
    assert any(line.startswith("final (epoch 5): val Dice") for line in lines[:4])
    assert any("Total params" in line for line in lines)


def test_runs_without_model_keras_fall_back_to_best(finished_run, tmp_path):
    import shutil

    from mslesion.infer.inference import check_run

    old = tmp_path / "old_run"
    shutil.copytree(finished_run, old, ignore=shutil.ignore_patterns("model.keras"))
    assert check_run(old)[2].name == "best.keras"
    assert check_run(finished_run)[2].name == "model.keras"
    assert check_run(finished_run, "final")[2].name == "final.keras"
    assert np.isfinite(json.loads((old / "final_eval.json").read_text())["inference"]["dice"])
