"""The related works' native models on one dataset's patients and split (notebook 03, make demo)."""

import json
import warnings

import pytest


def _dataset(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort

    generate_cohort(tmp_path / "raw", 5, seed=1, shape=(64, 64, 12), spacing_mm=(3.0, 3.0, 5.0))
    data = tmp_path / "inputs" / "ds"
    prepare_dataset(tmp_path / "raw", data, PrepConfig(size=(32, 32), selection="brain", split="train_val_test",
                    test_fraction=0.2, val_fraction=0.25, seed=4), progress=False)  # fmt: skip
    return data


@pytest.mark.slow
def test_native_models_train_on_the_datasets_split_and_derived_data_goes_where_asked(tmp_path, capsys):
    from mslesion.data.splits import load_splits
    from mslesion.progress import budget_per_run
    from mslesion.study.experiments import train_native_models

    data = _dataset(tmp_path)
    before = sorted(p.name for p in data.parent.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = train_native_models(data, tmp_path / "runs", epochs=1, epochs_3d=1, quick=True, batch_size=4,
                                   derived_root=tmp_path / "work", seed=4, progress=True,
                                   time_budget_minutes=60)  # fmt: skip
    out = capsys.readouterr().out
    assert sorted(p.name for p in data.parent.iterdir()) == before  # nothing written beside a read-only input
    models = [json.loads((r / "config.json").read_text())["model"] for r in runs]
    assert models == ["native.att_unet_pyramid", "native.fc_densenet", "native.r2_att_unet_3d"]
    folds = load_splits(data / "splits.json")["folds"]
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert load_splits(f"{config['dataset']}/splits.json")["folds"] == folds
        assert (run / "history.csv").is_file()
        # the budget (less its margin for evaluation) split over the three runs, the 3D one included
        assert config["max_minutes"] == pytest.approx(budget_per_run(60, 3))
        assert f"-> {run}" in out  # each run announced on the job's progress lines
    triplets = json.loads((tmp_path / "work" / "ds_25d" / "prep_config.json").read_text())
    assert triplets["context"] == 3 and triplets["crop"] == "brain" and triplets["seed"] == 4


def test_a_derived_folder_that_cannot_be_written_stops_the_job_before_any_training(tmp_path):
    from mslesion.outputs import OutputError
    from mslesion.study.experiments import train_native_models

    data = _dataset(tmp_path)
    foreign = tmp_path / "work" / "ds_25d"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("a user's file")
    with pytest.raises(OutputError, match="ds_25d"):
        train_native_models(data, tmp_path / "runs", epochs=1, quick=True, derived_root=tmp_path / "work")
    assert not (tmp_path / "runs").exists()  # no run was started
    assert (foreign / "notes.txt").read_text() == "a user's file"
