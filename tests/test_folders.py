"""DatasetFolder and RunFolder: the one place a dataset or run folder is opened and checked."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mslesion.errors import CorruptFileError, DataError, RunNotFoundError
from mslesion.folders import DatasetFolder, RunFolder
from mslesion.outputs import OutputLockedError


def test_a_prepared_dataset_opens_and_answers_its_parts(tmp_path):
    from mslesion.data.quick import quick_synthetic_dataset

    summary = quick_synthetic_dataset(tmp_path / "ds", patients=5, size=32, shape=(64, 64, 6))
    ds = DatasetFolder.open(summary.out_dir)
    assert ds.kind == "2d" and ds.prep_config()["size"] == [32, 32]
    parts = {part: ds.patients(part) for part in ("train", "val", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(set(ds.manifest().patient))
    with pytest.raises(ValueError, match="fold 3 does not exist; the dataset has 1"):
        ds.patients("train", fold=3)
    with pytest.raises(DataError, match="no prep3d_config.json"):  # a 2D dataset given to a 3D trainer
        DatasetFolder.open(summary.out_dir, "prep3d_config.json")


def test_what_is_not_a_prepared_dataset_is_named_with_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        DatasetFolder.open(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "prep_config.json").write_text("{}")
    with pytest.raises(DataError, match=r"half: not a prepared dataset \(no splits.json\)"):
        DatasetFolder.open(tmp_path / "half")


def _run(tmp_path, config: dict, *files: str):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    for name in files:
        (run / name).write_text("x")
    return run


def test_run_folder_checks_and_kinds(tmp_path):
    with pytest.raises(RunNotFoundError, match="no such run folder"):
        RunFolder.open(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(RunNotFoundError, match="is a file, not a run folder"):
        RunFolder.open(tmp_path / "file")
    with pytest.raises(RunNotFoundError, match=r"not a run folder \(no config.json\)"):
        RunFolder.open(tmp_path)
    run = _run(tmp_path, {"dataset": "d", "patch": [8, 8, 8], "fold": 2})
    assert RunFolder.open(run).kind == "3d" and RunFolder(run).fold == 2
    (run / "config.json").write_text(json.dumps({"dataset": "d", "tuner": "grid"}))
    assert RunFolder.open(run).kind == "tuning"
    (run / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="config.json: not valid JSON"):
        RunFolder.open(run)


def test_checkpoints_fall_back_and_a_missing_one_says_what_the_run_holds(tmp_path):
    run = RunFolder.open(_run(tmp_path, {"dataset": "d"}, "best.keras"))
    assert run.checkpoint("model").name == "best.keras"  # runs without model.keras (3D, older runs)
    assert run.require_checkpoint("best") == run.path / "best.keras"
    with pytest.raises(RunNotFoundError, match=r"no such checkpoint \(the run holds best.keras\); use --checkpoint best"):
        run.require_checkpoint("final")
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        run.checkpoint("last")


def test_prep_config_is_the_runs_copy_else_its_datasets(tmp_path):
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "prep_config.json").write_text(json.dumps({"size": [64, 64]}))
    run = RunFolder.open(_run(tmp_path, {"dataset": str(dataset)}))
    assert run.prep_config() == {"size": [64, 64]}
    (run.path / "prep_config.json").write_text(json.dumps({"size": [32, 32]}))
    assert run.prep_config() == {"size": [32, 32]}
    (run.path / "prep_config.json").unlink()
    (dataset / "prep_config.json").unlink()
    with pytest.raises(RunNotFoundError, match="no prep_config.json in the run and its dataset .* is gone"):
        run.prep_config()


def test_history_keeps_the_last_row_of_an_epoch_repeated_by_a_resume(tmp_path):
    run = RunFolder.open(_run(tmp_path, {"dataset": "d"}))
    pd.DataFrame({"epoch": [0, 1, 1, 2], "loss": [3.0, 2.0, 1.5, 1.0]}).to_csv(run.path / "history.csv", index=False)
    assert run.history().loss.tolist() == [3.0, 1.5, 1.0]


def test_a_locked_run_refuses_a_second_writer(tmp_path):
    run = RunFolder.open(_run(tmp_path, {"dataset": "d"}))
    with run.locked():
        with pytest.raises(OutputLockedError, match="being written by another mslesion process"):
            with RunFolder(run.path).locked():
                pass
    with run.locked():  # released after the block
        pass
