"""Training runs that survive kills, concurrent runs and re-runs (issue 9).

Kills are simulated deterministically: a subprocess runs ``train`` with
``MSLESION_CRASH_AT=<point>`` and dies there with status 137, as under ``kill -9``
(:func:`mslesion.fileio.crash_point`). The killed runs are made side by side in
one module fixture; each test then re-runs its folder in this process and checks
that the result equals an uninterrupted run, epoch for epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mslesion.errors import DataError
from mslesion.outputs import OutputError, OutputLockedError, claim_dir, locked
from mslesion.train.history import read_history
from mslesion.train.runfolder import RUN_FILES, RunConfigError
from mslesion.train.training import train

TINY = {"model": "kuc.unet", "model_params": {"filter_num": [4, 8]}, "batch_size": 8, "epochs": 3}
TINY_3D = {"model_params": {"filters": [4, 8], "recurrence": 1}, "patch": [16, 16, 16], "stride": [16, 16, 16],
           "batch_size": 2, "epochs": 2, "augment": False}  # fmt: skip
# name -> crash point (``@<epoch>``: only at that 0-based epoch)
KILLS = {
    "after_fit": "train.after_recalibration",  # fit done, backups gone, final.keras not yet written
    "mid_backup": "train.backup_weights@2",  # two backups kept, the third written under its temporary name
    "mid_best": "train.best_checkpoint@0",  # the first best.keras written under its temporary name
    "3d": "train.after_backup@0",  # a 3D run, its first epoch backed up
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """5 synthetic patients at 32x32 (3 train, 1 val, 1 test): 40 slices."""
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    root = tmp_path_factory.mktemp("safety")
    generate_cohort(root / "raw", 5, seed=0, shape=(64, 64, 8), spacing_mm=(1.8, 1.8, 5.0))
    cfg = PrepConfig(size=(32, 32), selection="brain", split="train_val_test", test_fraction=0.2, val_fraction=0.2)
    prepare_dataset(root / "raw", root / "slices", cfg, progress=False)
    return root / "slices"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """4 synthetic patients at 32x32x16 for 3D runs (2 train, 1 val, 1 test)."""
    from mslesion.data.synthetic import generate_cohort
    from mslesion.data.volumes3d import prepare_volumes

    root = tmp_path_factory.mktemp("safety3d")
    generate_cohort(root / "raw", 4, seed=0, shape=(32, 32, 16), spacing_mm=(3, 3, 3))
    prepare_volumes(root / "raw", root / "vol", split="train_val_test", test_fraction=0.25, val_fraction=0.34)
    return root / "vol"


def config(dataset, run, **overrides) -> dict:
    return {"dataset": str(dataset), "run_dir": str(run), **TINY, **overrides}


def _train_cmd(cfg: dict, runner: str = "train.training.train") -> list[str]:
    module, name = runner.rsplit(".", 1)
    code = (f"import json; from mslesion.{module} import {name}; "
            f"{name}(json.loads({json.dumps(json.dumps(cfg))}), verbose=0)")  # fmt: skip
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def killed(dataset, volumes, tmp_path_factory) -> dict[str, Path]:
    """One run folder per entry of KILLS, its training process killed at that point (all run side by side).

    ``"reference"`` is the history of the run killed after its fit: an uninterrupted fit.
    """
    root = tmp_path_factory.mktemp("killed")
    cmds = {name: _train_cmd(config(dataset, root / name)) for name in KILLS}
    cmds["3d"] = _train_cmd({"dataset": str(volumes), "run_dir": str(root / "3d"), **TINY_3D}, "train.training3d.train_3d")
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env={**os.environ, "MSLESION_CRASH_AT": KILLS[name]})
             for name, cmd in cmds.items()}  # fmt: skip
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 137, f"{name}: {err.decode()[-3000:]}"
    runs = {name: root / name for name in KILLS}
    shutil.copyfile(root / "after_fit" / "history.csv", root / "reference.csv")
    return {**runs, "reference": root / "reference.csv"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _temps(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".mslesion-" in p.name)


def assert_same_as(run: Path, reference: Path) -> None:
    """Each epoch once in history.csv, with the uninterrupted fit's values; a complete, loadable run."""
    import pandas as pd

    from mslesion.models import load_model

    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + TINY["epochs"] and lines[0] == reference.read_text().splitlines()[0]
    got, want = read_history(run), pd.read_csv(reference)
    assert got.epoch.tolist() == list(range(TINY["epochs"]))
    for column in ("loss", "dice", "val_loss", "val_dice"):  # same weights, optimizer state and data order
        assert got[column].tolist() == pytest.approx(want[column].tolist(), rel=1e-6), column
    state = json.loads((run / "state.json").read_text())
    assert state["phase"] == "done" and state["fit_epochs"] == TINY["epochs"]
    assert not (run / "backup").exists() and not (run / "fitted.weights.h5").exists() and not _temps(run)
    load_model(run / "best.keras", compile=False)
    load_model(run / "final.keras", compile=False)


def test_a_folder_holding_files_of_others_is_refused_untouched(dataset, tmp_path):
    run = tmp_path / "myexp"
    (run / "backup").mkdir(parents=True)
    (run / "backup" / "important.txt").write_text("mine")
    (run / "history.csv").write_text("my,own\n1,2\n")
    before = _files(run)
    with pytest.raises(OutputError, match=r"myexp: holds 2 entries mslesion did not write \(backup, history\.csv\)"):
        train(config(dataset, run), verbose=0)
    assert _files(run) == before
    # a run folder of ours in which someone put a file of their own
    ours = claim_dir(tmp_path / "ours", "run", known=RUN_FILES)
    (ours / "backup").mkdir()
    (ours / "backup" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"backup: holds files mslesion did not write \(notes\.txt\)") as err:
        train(config(dataset, ours), verbose=0)
    assert "\n" not in str(err.value) and (ours / "backup" / "notes.txt").read_text() == "mine"


def test_nothing_is_written_before_the_dataset_model_and_options_check_out(dataset, tmp_path):
    with pytest.raises(DataError, match="nowhere: no such dataset folder"):
        train(config(tmp_path / "nowhere", tmp_path / "a"), verbose=0)
    with pytest.raises(DataError, match=r"not a prepared dataset \(no prep_config\.json or splits\.json\)"):
        train(config(tmp_path, tmp_path / "b"), verbose=0)
    with pytest.raises(KeyError, match="kuc.unett: unknown model; did you mean kuc.unet"):
        train(config(dataset, tmp_path / "c", model="kuc.unett"), verbose=0)
    with pytest.raises(TypeError):  # fails building the model, after the folder was claimed: it goes again
        train(config(dataset, tmp_path / "d", model_params={"filter_nm": [4, 8]}), verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_kill_after_the_fit_redoes_only_the_final_phases(killed, dataset):
    run = killed["after_fit"]
    state = json.loads((run / "state.json").read_text())
    assert state["phase"] == "fitted" and state["fit_epochs"] == 3
    assert not (run / "final.keras").exists() and not (run / "backup").exists()
    assert (run / "fitted.weights.h5").is_file()
    fitted_history = (run / "history.csv").read_bytes()
    # other options for the unfinished run: refused, key by key, nothing touched
    before = _files(run)
    with pytest.raises(RunConfigError, match=r"other options \(epochs: 3 -> 2; learning_rate: 0\.001 -> 0\.01\)"):
        train(config(dataset, run, epochs=2, learning_rate=0.01), verbose=0)
    assert _files(run) == before
    train(config(dataset, run), verbose=0)
    assert (run / "history.csv").read_bytes() == fitted_history  # the fit was not repeated
    assert_same_as(run, killed["reference"])
    final_eval = json.loads((run / "final_eval.json").read_text())
    assert final_eval["recalibration_batches"] > 0 and 0 <= final_eval["inference"]["dice"] <= 1


def test_a_kill_mid_backup_keeps_the_one_before_and_damaged_files_are_reported_and_redone(killed, dataset,
                                                                                          monkeypatch):  # fmt: skip
    from mslesion.train import resume

    run = killed["mid_backup"]
    backup = run / "backup"
    assert sorted(p.name for p in backup.iterdir() if ".mslesion-" not in p.name) == [
        "epoch_0001.json", "epoch_0001.weights.h5", "epoch_0002.json", "epoch_0002.weights.h5"]  # fmt: skip
    assert _temps(run) and all(t.startswith("backup/.epoch_0003.weights.h5.mslesion-") for t in _temps(run))
    # on top of the kill, the damage of the issue: a truncated newest backup, an empty best.keras
    newest = backup / "epoch_0002.weights.h5"
    newest.write_bytes(newest.read_bytes()[:96])
    (run / "best.keras").write_bytes(b"")
    seen = []
    restore = resume.restore_backup
    monkeypatch.setattr(resume, "restore_backup", lambda run, model: seen.append(_temps(run)) or restore(run, model))
    with pytest.warns(UserWarning) as caught:
        train(config(dataset, run), verbose=0)
    assert seen == [[]]  # the killed run's temporary was gone before the run went on
    said = [str(w.message) for w in caught]
    assert any(f"{newest}: damaged backup of epoch 2" in m for m in said), said
    assert any(f"{run / 'best.keras'}: does not load" in m for m in said), said
    assert_same_as(run, killed["reference"])  # went on from the backup before: epochs 2 and 3 redone, once


def test_a_backup_that_fails_to_load_is_skipped_for_the_one_before(tmp_path):
    import keras
    import numpy as np

    from mslesion.train import resume

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    for n in (1, 2, 3):
        model.layers[0].kernel.assign(np.full((3, 2), float(n)))
        resume.save_backup(tmp_path, model, n, {"best": None})
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "epoch_0002.json", "epoch_0002.weights.h5", "epoch_0003.json", "epoch_0003.weights.h5"]  # fmt: skip
    newest = tmp_path / "backup" / "epoch_0003.weights.h5"
    with open(newest, "r+b") as f:  # same size: only loading it can tell
        f.write(b"\0" * 96)
    model.layers[0].kernel.assign(np.zeros((3, 2)))
    with pytest.warns(UserWarning, match=r"epoch_0003\.weights\.h5: damaged backup of epoch 3, does not load"):
        info = resume.restore_backup(tmp_path, model)
    assert info["epoch"] == 2 and (model.layers[0].kernel.numpy() == 2).all()
    assert not newest.exists()


def test_a_resume_gives_the_lr_and_early_stopping_callbacks_their_state_back(tmp_path):
    import math

    import keras

    from mslesion.train import resume

    reduce, stop = keras.callbacks.ReduceLROnPlateau(patience=3), keras.callbacks.EarlyStopping(patience=4)
    saved = {"ReduceLROnPlateau": {"best": 0.25, "wait": 2, "cooldown_counter": 0},
             "EarlyStopping": {"best": 0.5, "wait": 3, "best_epoch": 1, "stopped_epoch": 0}}  # fmt: skip
    keeper = resume.epoch_keeper(tmp_path, {"callbacks": saved}, [reduce, stop], [], [], -math.inf, None)
    for callback in (reduce, stop, keeper):  # Keras calls them in list order, the keeper last
        callback.on_train_begin()
    assert {type(c).__name__: resume.callback_state(c) for c in (reduce, stop)} == saved


def test_a_kill_mid_best_checkpoint_leaves_no_partial_best_keras(killed, dataset):
    run = killed["mid_best"]
    assert not (run / "best.keras").exists() and [t.split(".mslesion-")[0] for t in _temps(run)] == [".best.keras"]
    assert len((run / "history.csv").read_text().splitlines()) == 2  # the first epoch's row, then the kill
    train(config(dataset, run), verbose=0)
    assert_same_as(run, killed["reference"])


def test_a_second_writer_fails_at_once_naming_the_holder(dataset, tmp_path):
    run = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mslesion.outputs import locked\n"
                               f"with locked({str(run)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        busy = rf"busy: being written by another mslesion process \(pid {holder.pid} "
        with pytest.raises(OutputLockedError, match=busy):
            train(config(dataset, run), verbose=0)
        assert time.perf_counter() - start < 5
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in run.iterdir()) == [".mslesion.json"]


def test_a_finished_run_is_left_alone_other_options_refused_overwrite_starts_afresh(killed, dataset, tmp_path, capsys,
                                                                                    monkeypatch):  # fmt: skip
    from mslesion.cli import main

    train(config(dataset, killed["after_fit"]), verbose=0)  # finishes it, unless the test above did
    run = tmp_path / "done"
    shutil.copytree(killed["after_fit"], run)
    capsys.readouterr()
    before = _files(run)
    assert train(config(dataset, run), verbose=0) == run.resolve()
    assert f"{run.resolve()}: already finished (3 epochs)" in capsys.readouterr().out
    # the same folder and dataset named by relative paths from elsewhere: the same run
    monkeypatch.chdir(tmp_path)
    train(config(os.path.relpath(dataset), "done"), verbose=0)
    assert "already finished" in capsys.readouterr().out and _files(run) == before
    cli = ["train", str(dataset), "--recipe", "none", "--model", "kuc.unet", "--model-param", "filter_num=[4,8]",
           "--batch-size", "8", "--epochs", "1", "--run-dir", str(run)]  # fmt: skip
    assert main(cli) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mslesion: error:")]
    assert "holds a run started with other options (epochs: 3 -> 1); " in line
    assert _files(run) == before
    # --overwrite: the earlier run's files go (its evaluations too), files of others stay
    (run / "eval_test").mkdir()
    (run / "eval_test" / "summary.json").write_text("{}")
    (run / "eval_mine").mkdir()
    (run / "eval_mine" / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match="eval_mine: holds files mslesion evaluate did not write; left in place"):
        assert main([*cli, "--overwrite"]) == 0
    assert read_history(run).epoch.tolist() == [0]
    assert json.loads((run / "state.json").read_text())["config"]["epochs"] == 1
    assert not (run / "eval_test").exists() and (run / "eval_mine" / "notes.txt").read_text() == "mine"


def test_3d_runs_resume_after_a_kill_and_are_left_alone_when_finished(killed, volumes, capsys):
    from mslesion.train.training3d import train_3d

    run = killed["3d"]
    cfg = {"dataset": str(volumes), "run_dir": str(run), **TINY_3D}
    assert (run / "backup" / "epoch_0001.json").is_file() and len(read_history(run)) == 1
    train_3d(cfg, verbose=0)
    assert f"{run}: resuming at epoch 2 of 2" in capsys.readouterr().out
    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == 3 and read_history(run).epoch.tolist() == [0, 1]
    assert json.loads((run / "state.json").read_text())["phase"] == "done" and (run / "final.keras").is_file()
    assert not (run / "backup").exists() and not _temps(run)
    train_3d(cfg, verbose=0)
    assert "already finished (2 epochs)" in capsys.readouterr().out
    with pytest.raises(RunConfigError, match=r"patch: \[16, 16, 16\] -> \[8, 16, 16\]"):
        train_3d({**cfg, "patch": [8, 16, 16]}, verbose=0)


def test_tuning_folders_are_claimed_and_locked(dataset, tmp_path):
    from mslesion.train.tuning import tune

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"mine: holds 1 entry mslesion did not write \(notes\.txt\)"):
        tune({"dataset": str(dataset), "run_dir": str(mine), **TINY})
    with locked(tmp_path / "search"), pytest.raises(OutputLockedError, match=f"pid {os.getpid()} "):
        tune({"dataset": str(dataset), "run_dir": str(tmp_path / "search"), **TINY})
    with pytest.raises(DataError, match="no such dataset folder"):
        tune({"dataset": str(tmp_path / "nowhere"), "run_dir": str(tmp_path / "x")})
    assert not (tmp_path / "x").exists()
