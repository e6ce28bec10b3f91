"""Training runner, BN handling and the learning-rate search, on the synthetic cohort at 64x64."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.data.synthetic import generate_cohort
from mslesion.train.history import epoch_study, read_history
from mslesion.train.training import train

SMALL_UNET = {"model": "kuc.unet", "model_params": {"filter_num": [16, 32, 64]}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training")
    generate_cohort(root / "raw", 8, seed=0, shape=(128, 128, 16), spacing_mm=(1.8, 1.8, 5.0))
    out = root / "slices"
    cfg = PrepConfig(size=(64, 64), selection="brain", split="train_val_test", test_fraction=0.25, val_fraction=0.2)
    prepare_dataset(root / "raw", out, cfg, progress=False)
    return out


def config(dataset, tmp_path, **overrides):
    return {"dataset": str(dataset), "runs_root": str(tmp_path / "runs"), "batch_size": 8, **SMALL_UNET, **overrides}


@pytest.mark.slow
def test_short_fit_learns_and_writes_a_complete_run_folder(dataset, tmp_path):
    run = train(config(dataset, tmp_path, loss="dice", learning_rate=3e-3, epochs=25), verbose=0)
    history = read_history(run)
    assert len(history) == 25
    assert history.val_dice.iloc[:2].max() < 0.3 and history.val_dice.iloc[-5:].max() > 0.6
    for name in ("config.json", "environment.json", "history.csv", "summary.txt", "best.keras", "final.keras",
                 "final_eval.json"):  # fmt: skip
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert not set(cfg["train_patients"]) & set(cfg["val_patients"])
    assert cfg["params"]["total"] == cfg["params"]["trainable"] + cfg["params"]["non_trainable"] > 0
    assert {"seconds", "img_per_s", "learning_rate", "val_dice", "val_iou", "val_accuracy"} <= set(history.columns)
    assert np.allclose(history.learning_rate, 3e-3) and cfg["slices_in_memory"]
    final = json.loads((run / "final_eval.json").read_text())
    # BN health: inference-mode Dice close to training-mode Dice after a short from-scratch fit
    assert abs(final["inference"]["dice"] - final["training_mode_val_dice"]) < 0.1
    assert epoch_study(run, every=10) == [
        {"epoch": e, "val_dice": history.val_dice[e - 1], "best_so_far": history.val_dice[:e].max()} for e in (10, 20)
    ]


def test_same_seed_same_first_epoch_loss(dataset, tmp_path):
    losses = [
        read_history(train(config(dataset, tmp_path, epochs=1, tag=f"seed{i}", seed=7), verbose=0)).loss[0]
        for i in range(2)
    ]
    other = read_history(train(config(dataset, tmp_path, epochs=1, tag="seed_other", seed=8), verbose=0)).loss[0]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert other != pytest.approx(losses[0], rel=1e-6)


def _train_cmd(cfg: dict) -> list[str]:
    code = f"import json; from mslesion.train.training import train; train(json.loads({json.dumps(json.dumps(cfg))}), verbose=0)"
    return [sys.executable, "-c", code]


@pytest.mark.slow
def test_killed_run_resumes_losing_at_most_one_epoch(dataset, tmp_path):
    cfg = config(dataset, tmp_path, epochs=12, run_dir=str(tmp_path / "run"))
    history = Path(cfg["run_dir"]) / "history.csv"
    proc = subprocess.Popen(_train_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 4):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_history(cfg["run_dir"]))
    assert 3 <= done_before < 12, "the run must have been killed mid-way"
    assert (Path(cfg["run_dir"]) / "backup").is_dir() and not (Path(cfg["run_dir"]) / "final.keras").exists()
    resumed = subprocess.run(_train_cmd(cfg), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    h = read_history(cfg["run_dir"])
    assert h.epoch.tolist() == list(range(12))
    rows = history.read_text().splitlines()[1:]
    assert len(rows) - 12 <= 1  # at most the epoch in flight was repeated
    assert (Path(cfg["run_dir"]) / "final.keras").is_file()


@pytest.mark.slow
def test_two_replica_mirrored_strategy_on_split_cpu(dataset, tmp_path):
    cfg = config(dataset, tmp_path, epochs=1, strategy="mirrored", run_dir=str(tmp_path / "mirrored"))
    code = (
        "import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0];"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2);"
        f"import json; from mslesion.train.training import train; train(json.loads({json.dumps(json.dumps(cfg))}), verbose=0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = json.loads((tmp_path / "mirrored" / "environment.json").read_text())
    assert env["strategy"] == "MirroredStrategy" and env["replicas"] == 2
    cfg_out = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert cfg_out["global_batch_size"] == 16
    assert np.isfinite(read_history(tmp_path / "mirrored").loss[0])


def test_unknown_option_is_refused(dataset):
    with pytest.raises(ValueError, match="unknown training options"):
        train({"dataset": str(dataset), "learning_rte": 0.1})


@pytest.mark.slow
def test_two_trial_learning_rate_search_writes_its_table(dataset, tmp_path):
    import pandas as pd

    from mslesion.train.tuning import tune

    run = tune({"dataset": str(dataset), **SMALL_UNET, "learning_rates": [1e-2, 1e-4], "max_trials": 2,
                "epochs": 2, "run_dir": str(tmp_path / "tune")})  # fmt: skip
    table = pd.read_csv(run / "tuning.csv")
    assert sorted(table.learning_rate) == [1e-4, 1e-2]
    assert (table.epochs == 2).all() and table.best_val_dice.between(0, 1).all()
    assert table.best_val_dice.is_monotonic_decreasing
    assert json.loads((run / "config.json").read_text())["tuner"] == "grid"
    # TensorBoard: a log folder per trial with keras-tuner's HParams summary in it
    events = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    trials = {p.relative_to(run / "tensorboard").parts[0] for p in events}
    assert len(trials) == 2 and any(b"hparams" in p.read_bytes() for p in events)
    again = tune({"dataset": str(dataset), **SMALL_UNET, "learning_rates": [1e-2], "max_trials": 1, "epochs": 1,
                  "run_dir": str(tmp_path / "tune"), "overwrite": True})  # fmt: skip
    assert len({p.relative_to(again / "tensorboard").parts[0]
                for p in (again / "tensorboard").rglob("events.out.tfevents.*")}) == 1  # the old logs went


def test_cli_train_runs_one_epoch(dataset, tmp_path):
    from mslesion.cli import main

    rc = main(["train", str(dataset), "--model", "kuc.unet", "--model-param", "filter_num=[8,16]", "--epochs", "1",
               "--loss", "focal_tversky", "--loss-param", "gamma=0.75", "--run-dir", str(tmp_path / "cli")])  # fmt: skip
    assert rc == 0
    cfg = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert cfg["model_params"] == {"filter_num": [8, 16]} and cfg["loss_params"] == {"gamma": 0.75}


def test_cli_train_starts_from_the_default_recipe_and_flags_override_it(dataset, tmp_path):
    from mslesion.cli import main
    from mslesion.study.recipes import DEFAULT_RECIPE, RECIPE_MODEL, TRAINING_CONFIGS

    assert main(["train", str(dataset), "--epochs", "1", "--model-param", "weights=null",
                 "--run-dir", str(tmp_path / "default")]) == 0  # fmt: skip
    cfg = json.loads((tmp_path / "default" / "config.json").read_text())
    assert cfg["recipe"] == DEFAULT_RECIPE and cfg["model"] == RECIPE_MODEL["model"]
    # --model-param adds to the recipe's encoder instead of replacing it
    assert cfg["model_params"] == {**RECIPE_MODEL["model_params"], "weights": None}
    assert cfg["batch_size"] == RECIPE_MODEL["batch_size"]
    assert {k: cfg[k] for k in TRAINING_CONFIGS[DEFAULT_RECIPE]} == TRAINING_CONFIGS[DEFAULT_RECIPE]
    # another model: the recipe's training options stay, its model and batch size go
    assert main(["train", str(dataset), "--recipe", "seed000", "--model", "kuc.unet", "--model-param",
                 "filter_num=[4,8]", "--epochs", "1", "--loss", "dice", "--run-dir", str(tmp_path / "s0")]) == 0
    cfg = json.loads((tmp_path / "s0" / "config.json").read_text())
    assert cfg["recipe"] == "seed000" and cfg["model_params"] == {"filter_num": [4, 8]} and cfg["batch_size"] == 8
    assert cfg["lesion_slices_only"] is True and cfg["loss"] == "dice"  # the flag beats the recipe's bce


def test_mixed_precision_keeps_a_float32_output(dataset, tmp_path):
    import keras

    try:
        run = train(config(dataset, tmp_path, epochs=1, mixed_precision=True, run_dir=str(tmp_path / "mp")), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert json.loads((run / "config.json").read_text())["dtype_policy"] == "mixed_float16"
    model = keras.models.load_model(run / "final.keras")
    assert model.output.dtype == "float32" and np.isfinite(read_history(run).loss[0])


@pytest.mark.slow
def test_bn_stats_usable_after_short_from_scratch_fit_of_momentum_0999_encoder(dataset, tmp_path, monkeypatch):
    """sm Unet-MobileNetV2 (keras-applications BN momentum 0.999), trained from scratch for 12 epochs.

    The capped run plans 200 epochs and a 15-minute budget, and the budget ends it after 12 (a fake
    clock: 10 s an epoch, then a jump), as a long planned run cut short by a budget or early
    stopping. Before the momentum ceiling its moving statistics were planned for ~90 epochs and
    every per-epoch inference-mode val Dice stayed near 0 (measured on LGG: 0.000 at 12 epochs).
    """
    import itertools

    import mslesion.train.budget as budget

    common = {"model": "sm.unet", "model_params": {"backbone": "mobilenetv2"}, "loss": "dice",
              "learning_rate": 3e-3}  # fmt: skip
    raw = train(config(dataset, tmp_path, **common, epochs=12, bn_horizon=0, tag="uncapped"), verbose=0)
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_clock", lambda: (lambda n: 10.0 * n + (1e5 if n >= 12 else 0))(next(ticks)))
    capped = train(config(dataset, tmp_path, **common, epochs=200, max_minutes=15, tag="capped"), verbose=0)
    assert len(read_history(capped)) == 12
    raw_eval = json.loads((raw / "final_eval.json").read_text())
    cap_eval = json.loads((capped / "final_eval.json").read_text())
    # the failure the runner prevents: good in training mode, nothing in inference mode
    assert raw_eval["training_mode_val_dice"] > 0.5 and raw_eval["inference_before_recalibration"]["dice"] < 0.1
    assert read_history(raw).val_dice.max() < 0.1
    # capped momentum: per-epoch validation is meaningful; recalibration: final close to training mode
    assert read_history(capped).val_dice.max() > 0.5
    for ev in (raw_eval, cap_eval):
        assert abs(ev["inference"]["dice"] - ev["training_mode_val_dice"]) < 0.1
    assert set(json.loads((capped / "config.json").read_text())["bn_momentum_capped"].values()) == {0.9}


def test_one_training_patient_needs_val_fraction_zero_and_says_so(dataset, tmp_path):
    import shutil

    copy = tmp_path / "one"
    shutil.copytree(dataset, copy)
    splits = json.loads((copy / "splits.json").read_text())
    patients = splits["patients"]
    splits["folds"] = [{"train": patients[:1], "val": [], "test": patients[1:3]}]
    (copy / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="val_fraction=0"):
        train(config(copy, tmp_path, epochs=1), verbose=0)
    with pytest.warns(UserWarning, match="validating on the training patients"):
        run = train(config(copy, tmp_path, epochs=1, val_fraction=0.0, tag="v0"), verbose=0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["val_is_train"] and cfg["val_patients"] == cfg["train_patients"] == patients[:1]
