"""Training-time budget, lesion-slice training, and the configuration comparison built on them."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mslesion.train.history import read_history
from mslesion.train.training import train

TINY = {"model": "kuc.unet", "model_params": {"filter_num": [8, 16]}, "batch_size": 8}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("budget")
    generate_cohort(root / "raw", 5, seed=2, shape=(64, 64, 10), spacing_mm=(1.8, 1.8, 5.0))
    cfg = PrepConfig(size=(32, 32), selection="brain", split="train_val_test", test_fraction=0.2, val_fraction=0.25)
    prepare_dataset(root / "raw", root / "slices", cfg, progress=False)
    return root / "slices"


def test_time_budget_stops_before_the_epoch_that_would_pass_it(dataset, tmp_path):
    run = train({"dataset": str(dataset), "runs_root": str(tmp_path), **TINY, "epochs": 50, "max_minutes": 1e-4},
                verbose=0)  # fmt: skip
    assert len(read_history(run)) == 1  # one epoch always runs; the next would pass the budget
    assert json.loads((run / "state.json").read_text())["phase"] == "done" and (run / "model.keras").is_file()
    roomy = train({"dataset": str(dataset), "runs_root": str(tmp_path), **TINY, "epochs": 2, "max_minutes": 60,
                   "tag": "roomy"}, verbose=0)  # fmt: skip
    assert len(read_history(roomy)) == 2  # the budget never adds epochs


def test_budget_recaps_bn_momentum_for_the_epochs_it_leaves(dataset, tmp_path, monkeypatch):
    """epochs=200 plans a BN momentum cap for 200 epochs; a budget that leaves 6 resets it after epoch 2."""
    import itertools

    import mslesion.train.budget as budget

    ticks = itertools.count(0, 10.0)  # every clock reading is 10 s later: each epoch "takes" 10 s
    monkeypatch.setattr(budget, "_clock", lambda: next(ticks))
    run = train({"dataset": str(dataset), "runs_root": str(tmp_path), **TINY, "epochs": 200, "max_minutes": 1},
                verbose=0)  # fmt: skip
    assert len(read_history(run)) == 6  # 60 s of 10 s epochs
    config = json.loads((run / "config.json").read_text())
    recapped = json.loads((run / "final_eval.json").read_text())["bn_momentum_recapped"]
    steps = -(-config["n_train_slices"] // 8)
    assert recapped  # Keras' default momentum 0.99 is far too slow for 6 epochs of a few steps
    for name, momentum in recapped.items():
        planned = config["bn_momentum_capped"].get(name, 0.99)
        assert momentum == pytest.approx(max(0.5, 1 - 10 / (6 * steps))) and momentum < planned


def test_lesion_slices_only_trains_on_lesion_slices_and_validates_on_all(dataset, tmp_path):
    from mslesion.data.reader import read_manifest

    run = train({"dataset": str(dataset), "runs_root": str(tmp_path), **TINY, "epochs": 1,
                 "lesion_slices_only": True}, verbose=0)  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    manifest = read_manifest(dataset)
    train_rows = manifest[manifest.patient.isin(cfg["train_patients"])]
    val_rows = manifest[manifest.patient.isin(cfg["val_patients"])]
    assert cfg["n_train_slices"] == int((train_rows.lesion_pixels > 0).sum()) < len(train_rows)
    assert cfg["n_val_slices"] == len(val_rows)


def test_compare_configs_prints_one_row_per_configuration(dataset, tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_configs.py"
    out = subprocess.run([sys.executable, str(script), str(dataset), "--configs", "seed000", "bce_dice_aug",
                          "--minutes", "0.0001", "--model", "kuc.unet", "--model-param", "filter_num=[8,16]",
                          "--batch-size", "8", "--runs", str(tmp_path / "cmp")],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    table = pd.read_csv(tmp_path / "cmp" / "compare_slices_fold0.csv")
    assert table.config.tolist() == ["seed000", "bce_dice_aug"] and (table.epochs == 1).all()
    assert (table.test_patients == 1).all() and table.dice_mean.between(0, 1).all()
    config = json.loads((Path(table.run[0]) / "config.json").read_text())
    assert config["loss"] == "bce" and config["lesion_slices_only"] and config["max_minutes"] == 0.0001
    assert "seed000" in out.stdout and "dice_median" in out.stdout


def test_compare_configs_leaves_an_existing_table_and_the_dataset_alone(dataset, tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_configs.py"
    mine = tmp_path / "cmp" / "compare_slices_fold0.csv"
    mine.parent.mkdir()
    mine.write_text("my own table\n")
    before = sorted(p.name for p in dataset.iterdir())
    for runs, expected in ((tmp_path / "cmp", "exists; pass --overwrite"), (dataset / "runs", "overlaps the dataset")):
        out = subprocess.run([sys.executable, str(script), str(dataset), "--runs", str(runs)],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == 2 and expected in out.stderr
    assert mine.read_text() == "my own table\n" and sorted(p.name for p in dataset.iterdir()) == before


def test_unknown_configuration_is_refused(dataset, tmp_path):
    from mslesion.study.experiments import compare_training_configs

    with pytest.raises(KeyError, match="unknown training configuration 'best'"):
        compare_training_configs(dataset, tmp_path, ["best"])
