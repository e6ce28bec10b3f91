"""Optimizers, learning-rate schedules and warm starts (mslesion.train.optimizers, mslesion.train.warmstart)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from mslesion.errors import ConfigError
from mslesion.train.config import TrainConfig
from mslesion.train.optimizers import TriangularCyclicalLearningRate, make_optimizer, make_schedule

TINY = {"model": "kuc.unet", "model_params": {"filter_num": [4, 8]}, "batch_size": 8, "tensorboard": False}


def cfg(**options) -> TrainConfig:
    return TrainConfig(dataset="d", **options)


def lr_at(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize("options, cls, attributes", [
    ({}, keras.optimizers.Adam, {"weight_decay": None}),
    ({"optimizer": "adamw", "weight_decay": 1e-4}, keras.optimizers.AdamW, {"weight_decay": 1e-4}),
    ({"optimizer": "sgd", "weight_decay": 1e-4}, keras.optimizers.SGD,  # Rondinella et al. (2023)
     {"weight_decay": 1e-4, "momentum": 0.9, "nesterov": False}),
    ({"optimizer": "sgd", "momentum": 0.5, "nesterov": True}, keras.optimizers.SGD,
     {"weight_decay": None, "momentum": 0.5, "nesterov": True}),
])  # fmt: skip
def test_each_optimizer_and_its_parameters_reach_keras(options, cls, attributes):
    optimizer = make_optimizer(cfg(learning_rate=3e-3, **options))
    assert type(optimizer) is cls
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(3e-3)
    for name, value in attributes.items():
        assert getattr(optimizer, name) == (pytest.approx(value) if isinstance(value, float) else value), name
    # the rate given (a search's trial) beats the config's
    assert float(keras.ops.convert_to_numpy(make_optimizer(cfg(**options), 0.5).learning_rate)) == pytest.approx(0.5)


def test_cosine_matches_keras_and_the_closed_form():
    lr, floor, spe, epochs, warmup = 1e-2, 1e-4, 5, 10, 2
    schedule = make_schedule(cfg(lr_schedule="cosine", min_learning_rate=floor, epochs=epochs, warmup_epochs=warmup),
                             lr, spe)  # fmt: skip
    w, total = warmup * spe, epochs * spe
    keras_own = keras.optimizers.schedules.CosineDecay(0.0, total - w, alpha=floor / lr, warmup_target=lr,
                                                       warmup_steps=w)  # fmt: skip

    def closed(step):
        if step < w:
            return lr * step / w
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * min(step - w, total - w) / (total - w)))

    assert lr_at(schedule, 0) == 0.0 and lr_at(schedule, w) == pytest.approx(lr)  # from 0, up to the rate
    assert lr_at(schedule, total) == pytest.approx(floor) and lr_at(schedule, total + 7) == pytest.approx(floor)
    for step in (0, 3, w, w + 1, 27, total - 1, total):
        assert lr_at(schedule, step) == pytest.approx(closed(step), rel=1e-5), step
        assert lr_at(schedule, step) == pytest.approx(lr_at(keras_own, step), rel=1e-6), step
    plain = make_schedule(cfg(lr_schedule="cosine", epochs=epochs), lr, spe)  # no warm-up: starts at the rate
    assert lr_at(plain, 0) == pytest.approx(lr) and lr_at(plain, total) == pytest.approx(0.0, abs=1e-9)
    flat = make_schedule(cfg(warmup_epochs=1, epochs=epochs), lr, spe)  # constant after a warm-up
    assert [lr_at(flat, s) for s in (0, 2, 5, 6, 49)] == pytest.approx([0, lr * 2 / 5, lr, lr, lr], rel=1e-6)
    assert make_schedule(cfg(), lr, None) == lr  # constant: a plain float, no steps needed


def smith_triangular(step: float, base: float, top: float, step_size: float) -> float:
    """Smith (2017), section 3.1: the triangular policy as he writes it."""
    cycle = math.floor(1 + step / (2 * step_size))
    x = abs(step / step_size - 2 * cycle + 1)
    return base + (top - base) * max(0.0, 1 - x)


def test_cyclical_follows_smiths_triangular_formula():
    base, top, spe = 1e-4, 1e-2, 10
    schedule = make_schedule(cfg(lr_schedule="cyclical", min_learning_rate=base, cycle_epochs=2), top, spe)
    assert isinstance(schedule, TriangularCyclicalLearningRate)
    step_size = spe  # cycle_epochs is the full period: Smith's step size is half of it
    assert [lr_at(schedule, s) for s in (0, 10, 20, 30, 40)] == pytest.approx([base, top, base, top, base], rel=1e-5)
    for step in (0, 3, 9, 10, 11, 17, 20, 25, 39, 57, 1234):
        assert lr_at(schedule, step) == pytest.approx(smith_triangular(step, base, top, step_size), rel=1e-5), step
    # with a warm-up: from 0 to the top, then the cycle entered at its top
    warm = make_schedule(cfg(lr_schedule="cyclical", min_learning_rate=base, cycle_epochs=2, warmup_epochs=1),
                         top, spe)  # fmt: skip
    assert [lr_at(warm, s) for s in (0, 5)] == pytest.approx([0.0, top / 2])
    for step in (10, 14, 20, 30, 33):
        assert lr_at(warm, step) == pytest.approx(smith_triangular(step - 10 + step_size, base, top, step_size),
                                                  rel=1e-5), step  # fmt: skip
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(warm))
    assert type(again) is TriangularCyclicalLearningRate and again.get_config() == warm.get_config()


def test_a_schedule_survives_saving_and_loading_a_compiled_model(tmp_path):
    from mslesion.models import load_model

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")])
    config = cfg(optimizer="sgd", weight_decay=1e-4, lr_schedule="cyclical", min_learning_rate=1e-3, cycle_epochs=2)
    model.compile(optimizer=make_optimizer(config, 1e-2, steps_per_epoch=4), loss="binary_crossentropy")
    x = np.random.default_rng(0).random((12, 8, 8, 1)).astype("float32")
    model.fit(x, (x > 0.5).astype("float32"), batch_size=4, epochs=1, verbose=0)  # 3 steps
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    schedule = loaded.optimizer._learning_rate
    assert type(loaded.optimizer) is keras.optimizers.SGD and loaded.optimizer.weight_decay == pytest.approx(1e-4)
    assert type(schedule) is TriangularCyclicalLearningRate
    assert schedule.get_config() == model.optimizer._learning_rate.get_config()
    assert int(loaded.optimizer.iterations) == 3
    # optimizer.learning_rate is the schedule's value now (what history.csv logs): 3 steps up from the bottom
    now = float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate))
    assert now == pytest.approx(smith_triangular(3, 1e-3, 1e-2, 4), rel=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"lr_schedule": "cosine", "reduce_lr_patience": 3}, "ReduceLROnPlateau cannot lower it"),
    ({"warmup_epochs": 2, "reduce_lr_patience": 3}, "ReduceLROnPlateau cannot lower it"),
    ({"weight_decay": 1e-4}, "adam with weight_decay is adamw"),
    ({"optimizer": "adamw"}, "adamw without weight_decay is adam"),
    ({"nesterov": True}, "nesterov is SGD's"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
    ({"lr_schedule": "step"}, "unknown lr_schedule 'step'"),
    ({"optimizer": "sgd", "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"lr_schedule": "cosine", "warmup_epochs": 5, "epochs": 5}, "leaves none of the 5 epochs"),
    ({"lr_schedule": "cyclical", "min_learning_rate": 1e-2, "learning_rate": 1e-3}, "min_learning_rate 0.01 is above"),
])  # fmt: skip
def test_contradicting_options_are_refused_naming_them(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"dataset": "d", **options})
    assert isinstance(ConfigError("x"), ValueError)


def test_3d_and_tuning_configs_check_the_same_options_and_old_configs_still_load():
    from mslesion.train.training3d import Train3DConfig
    from mslesion.train.tuning import TuneConfig

    with pytest.raises(ConfigError, match="ReduceLROnPlateau"):  # train3d's default plateau patience is 5
        Train3DConfig(dataset="v", lr_schedule="cosine")
    assert Train3DConfig(dataset="v", lr_schedule="cosine", reduce_lr_patience=0).patch == (64, 64, 64)
    with pytest.raises(ConfigError, match="above the learning rate 0.0001"):  # every trial's rate is a peak
        TuneConfig(dataset="d", lr_schedule="cosine", min_learning_rate=1e-3)
    TuneConfig(dataset="d", lr_schedule="cosine", min_learning_rate=1e-6, log_uniform=(1e-5, 1e-1))
    # a config.json written before these options existed
    old = TrainConfig.from_dict({"dataset": "d", "model": "kuc.unet", "learning_rate": 1e-3, "reduce_lr_patience": 4})
    assert (old.optimizer, old.lr_schedule, old.warmup_epochs, old.init_from) == ("adam", "constant", 0, None)


def test_the_cli_has_the_flags_and_they_reach_the_config():
    from mslesion.cli.options import flag_values
    from mslesion.cli.train import _BY_HAND, add_train, add_train3d, add_tune

    for name, add in (("train", add_train), ("tune", add_tune), ("train3d", add_train3d)):
        parser = argparse.ArgumentParser()
        add(parser.add_subparsers())
        text = " ".join(parser._subparsers._group_actions[0].choices[name].format_help().split())
        for flag in ("--optimizer {adam,adamw,sgd}", "--momentum", "--nesterov", "--weight-decay",
                     "--lr-schedule {constant,cosine,cyclical}", "--warmup-epochs", "--min-learning-rate",
                     "--cycle-epochs", "--init-from RUN"):  # fmt: skip
            assert flag in text, (name, flag)
    parser = argparse.ArgumentParser()
    add_train(parser.add_subparsers())
    args = parser.parse_args(["train", "data/x", "--optimizer", "sgd", "--weight-decay", "1e-4", "--nesterov",
                              "--lr-schedule", "cyclical", "--warmup-epochs", "2", "--min-learning-rate", "1e-5",
                              "--cycle-epochs", "6", "--init-from", "runs/lgg/fold_0"])  # fmt: skip
    assert flag_values(args, TrainConfig, skip=_BY_HAND) == {
        "dataset": "data/x", "optimizer": "sgd", "weight_decay": 1e-4, "nesterov": True, "lr_schedule": "cyclical",
        "warmup_epochs": 2, "min_learning_rate": 1e-5, "cycle_epochs": 6.0, "init_from": "runs/lgg/fold_0"}  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "x", "--lr-schedule", "step"])


class _Batches(keras.utils.PyDataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, i):
        return np.ones((4, 3), "float32"), np.ones((4, 1), "float32")


def test_warm_start_weights_are_set_only_when_no_backup_loads(tmp_path):
    from mslesion.train import resume

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    data = _Batches()
    calls = []
    resume.fit_resumably(tmp_path / "a", model, data, data, 1, [], 0, initialise=lambda: calls.append("a"))
    assert calls == ["a"]  # a fresh fit starts from the warm start
    resume.save_backup(tmp_path / "b", model, 1, {"best": None})
    assert resume.fit_resumably(tmp_path / "b", model, data, data, 2, [], 0, initialise=lambda: calls.append("b")) == 2
    assert calls == ["a"]  # a resumed one from its own backup


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """5 synthetic patients at 32x32 (3 train, 1 val, 1 test), as tests/test_training_safety.py."""
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("optimizers")
    generate_cohort(root / "raw", 5, seed=0, shape=(64, 64, 8), spacing_mm=(1.8, 1.8, 5.0))
    prep = PrepConfig(size=(32, 32), selection="brain", split="train_val_test", test_fraction=0.2, val_fraction=0.2)
    prepare_dataset(root / "raw", root / "slices", prep, progress=False)
    return root / "slices"


def test_a_killed_run_resumes_its_schedule_where_it_stopped(dataset, tmp_path):
    from mslesion.train.history import read_history
    from mslesion.train.training import train

    options = {"dataset": str(dataset), "run_dir": str(tmp_path / "run"), **TINY, "epochs": 3, "learning_rate": 1e-2,
               "optimizer": "sgd", "weight_decay": 1e-4, "lr_schedule": "cosine", "min_learning_rate": 1e-4,
               "warmup_epochs": 1}  # fmt: skip
    code = (f"import json; from mslesion.train.training import train; "
            f"train(json.loads({json.dumps(json.dumps(options))}), verbose=0)")  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MSLESION_CRASH_AT": "train.after_backup@1"})  # fmt: skip
    assert killed.returncode == 137, killed.stderr[-3000:]
    assert len(read_history(tmp_path / "run")) == 2
    train(options, verbose=0)
    spe = json.loads((tmp_path / "run" / "config.json").read_text())["steps_per_epoch"]
    schedule = make_schedule(TrainConfig.from_dict(options), 1e-2, spe)
    history = read_history(tmp_path / "run")
    # each epoch logs the rate after its last step: the resumed epoch 3 goes on from step 2 * spe, not from 0
    assert history.learning_rate.tolist() == pytest.approx([lr_at(schedule, (e + 1) * spe) for e in range(3)],
                                                           rel=1e-5)  # fmt: skip
    assert history.learning_rate.iloc[-1] == pytest.approx(1e-4, rel=1e-5)


@pytest.fixture(scope="module")
def source(dataset, tmp_path_factory) -> Path:
    """A finished one-epoch run to warm-start from."""
    from mslesion.train.training import train

    return train({"dataset": str(dataset), "run_dir": str(tmp_path_factory.mktemp("source") / "run"), **TINY,
                  "epochs": 1}, verbose=0)  # fmt: skip


def test_init_from_starts_from_the_other_runs_checkpoint_and_refuses_another_architecture(
        dataset, source, tmp_path, monkeypatch, capsys):  # fmt: skip
    from mslesion.models import load_model
    from mslesion.train import training
    from mslesion.train.training import train

    started = []
    start_from = training.start_from
    monkeypatch.setattr(training, "start_from", lambda run, model, *a, **k: (
        start_from(run, model, *a, **k), started.append([w.copy() for w in model.get_weights()])))  # fmt: skip
    run = train({"dataset": str(dataset), "run_dir": str(tmp_path / "warm"), **TINY, "epochs": 1,
                 "init_from": str(source)}, verbose=0)  # fmt: skip
    want = load_model(source / "model.keras", compile=False).get_weights()
    assert len(started) == 1 and len(started[0]) == len(want)
    for got, expected in zip(started[0], want):
        np.testing.assert_array_equal(got, expected)
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"] == str(source) and config["init_from_checkpoint"] == str(source / "model.keras")
    assert f"starting from the weights of {source / 'model.keras'}" in capsys.readouterr().out

    other = tmp_path / "other"
    with pytest.raises(ConfigError, match=rf"{other}: cannot start from {source / 'model.keras'}: weight 0 .* is "
                                          r"\(3, 3, \d+, 8\) here but .* is \(3, 3, \d+, 4\) there"):  # fmt: skip
        train({"dataset": str(dataset), "run_dir": str(other), **TINY, "model_params": {"filter_num": [8, 16]},
               "epochs": 1, "init_from": str(source)}, verbose=0)  # fmt: skip
    assert not other.exists()  # refused before the run was recorded
    with pytest.raises(ConfigError, match=r"it is a kuc\.unet run, this one is kuc\.att_unet"):
        train({"dataset": str(dataset), "run_dir": str(other), **TINY, "model": "kuc.att_unet", "epochs": 1,
               "init_from": str(source / "best.keras")}, verbose=0)  # fmt: skip


def test_a_search_trial_rate_peaks_the_schedule_of_the_chosen_optimizer(dataset, source, tmp_path, monkeypatch):
    from mslesion.models import load_model
    from mslesion.train import tuning

    built = []  # keras-tuner builds a model before the search and one per trial
    start_from = tuning.start_from
    monkeypatch.setattr(tuning, "start_from", lambda run, model, *a, **k: (
        start_from(run, model, *a, **k), built.append((model.optimizer, model.get_weights()))))  # fmt: skip
    run = tuning.tune({"dataset": str(dataset), "run_dir": str(tmp_path / "tune"), **TINY, "learning_rates": [3e-2],
                       "max_trials": 1, "epochs": 2, "optimizer": "sgd", "momentum": 0.5, "lr_schedule": "cosine",
                       "warmup_epochs": 1, "init_from": str(source)})  # fmt: skip
    spe = json.loads((run / "config.json").read_text())["steps_per_epoch"]
    want = load_model(source / "model.keras", compile=False).get_weights()
    assert built and spe > 0
    for optimizer, weights in built:
        assert type(optimizer) is keras.optimizers.SGD and optimizer.momentum == 0.5
        schedule = optimizer._learning_rate
        assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
        assert (schedule.warmup_target, schedule.warmup_steps, schedule.decay_steps) == (3e-2, spe, spe)
        assert all(np.array_equal(a, b) for a, b in zip(weights, want, strict=True))


def test_3d_runs_warm_start_and_schedule_too(tmp_path, monkeypatch):
    from mslesion.data.synthetic import generate_cohort
    from mslesion.data.volumes3d import prepare_volumes
    from mslesion.models import load_model
    from mslesion.train import training3d
    from mslesion.train.history import read_history

    generate_cohort(tmp_path / "raw", 4, seed=0, shape=(32, 32, 16), spacing_mm=(3, 3, 3))
    prepare_volumes(tmp_path / "raw", tmp_path / "vol", split="train_val_test", test_fraction=0.25, val_fraction=0.34)
    tiny = {"dataset": str(tmp_path / "vol"), "model_params": {"filters": [4, 8], "recurrence": 1},
            "patch": [16, 16, 16], "stride": [16, 16, 16], "batch_size": 2, "epochs": 1, "augment": False}  # fmt: skip
    source = training3d.train_3d({**tiny, "run_dir": str(tmp_path / "source")}, verbose=0)
    started = []
    start_from = training3d.start_from
    monkeypatch.setattr(training3d, "start_from", lambda run, model, *a, **k: (
        start_from(run, model, *a, **k), started.append(model.get_weights())))  # fmt: skip
    run = training3d.train_3d({**tiny, "run_dir": str(tmp_path / "warm"), "init_from": str(source),
                               "lr_schedule": "cyclical", "reduce_lr_patience": 0, "min_learning_rate": 1e-5},
                              verbose=0)  # fmt: skip
    want = load_model(source / "best.keras", compile=False).get_weights()  # 3D runs have no model.keras
    assert len(started) == 1 and all(np.array_equal(a, b) for a, b in zip(started[0], want, strict=True))
    config = json.loads((run / "config.json").read_text())
    assert config["init_from_checkpoint"] == str(source / "best.keras")
    # one epoch into a cycle of 4 epochs: half-way up (the top comes after 2)
    assert read_history(run).learning_rate.iloc[0] == pytest.approx(1e-5 + (1e-4 - 1e-5) / 2, rel=1e-5)
