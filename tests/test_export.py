"""mslesion export: the exported model gives the Keras model's probabilities, with its preprocessing beside it."""

import json

import numpy as np
import pytest

from mslesion.cli import main
from mslesion.errors import ExportError
from mslesion.infer import export
from mslesion.infer.export import export_run
from mslesion.infer.inference import open_run


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_the_export_predicts_what_the_keras_model_predicts(trained_run, tmp_path, fmt):
    artifact = export_run(trained_run, tmp_path / fmt, fmt)
    assert artifact.exists()
    record = json.loads((tmp_path / fmt / "export.json").read_text())
    assert record["format"] == fmt and record["max_abs_difference"] <= export.TOLERANCE
    prep = json.loads((tmp_path / fmt / "preprocessing.json").read_text())
    run = open_run(trained_run)
    assert prep["input_shape"] == list(run.input_shape) and prep["slicing"]["size"] == list(run.prep.size)
    # independently of the check inside export_run: real slices of the dataset, loaded as another tool would
    from mslesion.train.datasets import load_slice_set, split_patients_of

    slices = load_slice_set(run.config["dataset"], split_patients_of(run.config["dataset"], "test", 0))
    x = slices.arrays()[0][:4]
    got = export._run_exported(fmt, artifact, x)
    np.testing.assert_allclose(got.reshape(-1), run.model.predict(x, verbose=0).reshape(-1), atol=export.TOLERANCE)


def test_a_format_needing_missing_packages_is_refused_before_anything_is_written(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(export.FORMATS, "onnx", ("onnx", "model.onnx", ("surely_not_installed_pkg",)))
    with pytest.raises(ExportError, match="pip install surely_not_installed_pkg"):
        export_run(trained_run, tmp_path / "onnx", "onnx")
    assert not (tmp_path / "onnx").exists()
    with pytest.raises(ValueError, match="format must be one of"):
        export_run(trained_run, tmp_path / "x", "pickle")


def test_an_export_that_does_not_match_the_model_writes_nothing(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_run_exported", lambda fmt, artifact, x: np.full((*x.shape[:-1], 1), 7.0))
    with pytest.raises(ExportError, match="tolerance"):
        export_run(trained_run, tmp_path / "bad", "savedmodel")
    assert not (tmp_path / "bad").exists()


def test_export_cli_writes_the_folder_and_refuses_to_overwrite_without_asking(trained_run, tmp_path, capsys):
    out = tmp_path / "served"
    assert main(["export", str(trained_run), str(out)]) == 0
    assert "probabilities within" in capsys.readouterr().out
    assert (out / "saved_model").is_dir() and (out / "preprocessing.json").is_file()
    assert main(["export", str(trained_run), str(out)]) == 2  # an earlier export: only with --overwrite
    assert main(["export", str(trained_run), str(out), "--overwrite"]) == 0
