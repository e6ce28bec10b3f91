"""Errors a person can read (one line, exit 2) and inputs that used to be silently wrong."""

from __future__ import annotations

import ast
import gzip
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mslesion.cli import main
from mslesion.data.cohort import discover_cases
from mslesion.data.loading import load_case
from mslesion.data.volumes import load_image, load_mask
from mslesion.errors import (
    BadVoxelSizeError,
    ConstantImageError,
    CorruptFileError,
    DamagedCheckpointError,
    MissingModalityError,
    MslesionError,
    NoCasesFoundError,
    ObliqueAffineWarning,
    RunNotFoundError,
)
from mslesion.infer import inference
from mslesion.infer.inputs import find_inputs
from mslesion.infer.predict import predict
from mslesion.models.registry import UnknownModelError, build_model
from mslesion.outputs import MARKER, write_marker

from .conftest import LGG, LPS_AFFINE, phantom, requires, write_nifti

PACKAGE = Path(__file__).resolve().parents[1] / "mslesion"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("mslesion: error: ") and "Traceback" not in err
    return lines[0]


def _flair(path: Path, affine: np.ndarray = LPS_AFFINE, seed: int = 0) -> Path:
    return write_nifti(path, phantom(seed=seed)[0], affine)


def _copy_run(run: Path, dest: Path, **prep_changes) -> Path:
    """The files predict needs from a run (the session fixture itself is never changed)."""
    dest.mkdir(parents=True)
    for name in ("config.json", "prep_config.json", "best.keras", "final.keras"):
        shutil.copy(run / name, dest / name)
    if prep_changes:
        prep = json.loads((dest / "prep_config.json").read_text())
        (dest / "prep_config.json").write_text(json.dumps({**prep, **prep_changes}))
    return dest


def _oblique(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
    return rot @ LPS_AFFINE


# ---------------------------------------------------------------- a run that cannot be used


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_run_folder_without_checkpoint_is_one_line(command, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"dataset": "gone"}')
    args = [command, str(run)] + ([str(_flair(tmp_path / "in" / "a.nii.gz")), str(tmp_path / "out")]
                                  if command == "predict" else [])  # fmt: skip
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "best.keras: no such checkpoint" in line and ";" in line
    assert not (tmp_path / "out").exists()


def test_missing_run_folder_is_one_line_and_creates_nothing(tmp_path, capsys):
    flair = _flair(tmp_path / "in" / "a.nii.gz")
    assert main(["predict", str(tmp_path / "nope"), str(flair), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'nope'}: no such run folder; " in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    with pytest.raises(FileNotFoundError) as info:  # still a FileNotFoundError, as callers caught before
        inference.open_run(tmp_path / "nope")
    assert isinstance(info.value, RunNotFoundError)


def test_evaluate_a_missing_run_folder_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in _one_error_line(capsys.readouterr().err)


def test_missing_run_from_the_console_prints_no_traceback(tmp_path):
    flair = _flair(tmp_path / "a.nii.gz")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MSLESION_DEBUG", None)
    cmd = [sys.executable, "-m", "mslesion", "predict", str(tmp_path / "nope"), str(flair), str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=PACKAGE.parent, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"mslesion: error: {tmp_path / 'nope'}: no such run folder")
    # --debug shows the traceback instead
    debug = subprocess.run([cmd[0], "-m", "mslesion", "--debug", *cmd[3:]], capture_output=True, text=True,
                           env=env, cwd=PACKAGE.parent, timeout=120)  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RunNotFoundError" in debug.stderr


def test_debug_flag_and_environment_raise_instead(tmp_path, monkeypatch):
    args = ["predict", str(tmp_path / "nope"), str(tmp_path / "a.nii.gz"), str(tmp_path / "out")]
    with pytest.raises(RunNotFoundError):
        main(["--debug", *args])
    monkeypatch.setenv("MSLESION_DEBUG", "1")
    with pytest.raises(RunNotFoundError):
        main(args)
    monkeypatch.setenv("MSLESION_DEBUG", "0")
    assert main(args) == 2


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_damaged_checkpoint_names_the_file_and_the_way_out(damage, trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path / "run")
    best = run / "best.keras"
    raw = best.read_bytes()
    best.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(len(raw)))
    flair = _flair(tmp_path / "in" / "a.nii.gz")
    assert main(["predict", str(run), str(flair), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{best}: damaged or not a Keras model file (" in line and line.endswith("use --checkpoint final")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DamagedCheckpointError) as info:
        inference.open_run(run)
    assert isinstance(info.value, CorruptFileError) and info.value.path == best


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownModelError, match=r"kuc\.unte: unknown model; did you mean kuc\.unet") as info:
        build_model("kuc.unte", input_shape=(64, 64, 1))
    assert isinstance(info.value, KeyError) and isinstance(info.value, MslesionError)
    assert str(info.value).startswith("kuc.unte")  # not the quoted repr a KeyError prints


def test_train_with_an_unknown_model_is_one_line(trained_run, tmp_path, capsys):
    dataset = json.loads((trained_run / "config.json").read_text())["dataset"]
    rc = main(["train", dataset, "--model", "bogus.net", "--epochs", "1", "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "bogus.net: unknown model; " in line and "known: " in line and "kuc.unet" in line
    assert not (tmp_path / "r").exists()
    rc = main(["train", dataset, "--loss", "bce_dise", "--epochs", "1", "--run-dir", str(tmp_path / "r")])
    assert rc == 2
    assert "unknown loss 'bce_dise'; did you mean bce_dice" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("given", ["file", "folder"])
def test_two_modality_run_given_plain_flair_files(given, trained_run, tmp_path, capsys):
    run = _copy_run(trained_run, tmp_path / "run", modalities=["flair", "t1"])
    flair = _flair(tmp_path / "in" / "a.nii.gz")
    _flair(tmp_path / "in" / "b.nii.gz", seed=1)
    inputs = flair if given == "file" else flair.parent
    assert main(["predict", str(run), str(inputs), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{inputs}: the run takes 2 modalities ['flair', 't1']" in line
    assert "--image-pattern flair=" in line and "--pattern " not in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(MissingModalityError):
        find_inputs(inputs, ("flair", "t1"))


def test_file_exists_from_the_os_is_one_line(monkeypatch, tmp_path, capsys):
    import mslesion.data.synthetic

    def refuse(*args, **kwargs):
        raise FileExistsError(17, "File exists", str(tmp_path / "x"))

    monkeypatch.setattr(mslesion.data.synthetic, "generate_cohort", refuse)
    assert main(["synth", str(tmp_path / "x")]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"mslesion: error: {tmp_path / 'x'}: already exists; " \
                                                        "choose another path, or move it away first"  # fmt: skip


# ---------------------------------------------------------------- predict: counts, exit codes, output safety


def test_predict_fails_when_every_input_fails(trained_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    for name in ("a", "b"):
        write_nifti(inputs / f"{name}.nii.gz", phantom()[0][:, :, 0])  # a 2D image
    assert main(["predict", str(trained_run), str(inputs), str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "predicted 0 patients, 2 failed"
    assert "FAILED a:" in out and "nothing written" in out
    assert not (tmp_path / "out").exists()


def test_predict_counts_bad_ids_and_warns_about_an_oblique_affine(trained_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    _flair(inputs / "good.nii.gz", _oblique(12.0))
    write_nifti(inputs / "flat.nii.gz", phantom()[0][:, :, 0])
    _flair(inputs / "-dash.nii.gz")  # an id that could pass for an option: refused, the batch goes on
    assert main(["predict", str(trained_run), str(inputs), str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "predicted 1 patient, 2 failed"
    assert "mslesion: warning: " in captured.err and "12.00 degrees" in captured.err
    assert pd.read_csv(tmp_path / "out" / "lesions.csv").patient.tolist() == ["good"]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert sorted(failures.error) == ["BadPatientIdError", "NotThreeDError"]
    recorded = json.loads((tmp_path / "out" / "predict_config.json").read_text())["warnings"]
    assert list(recorded) == ["good"] and "oblique" in recorded["good"][0]


def test_predict_never_writes_into_its_input_nor_reads_its_own_output(trained_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    _flair(inputs / "a.nii.gz")
    (inputs / "lesions.csv").write_text("the user's own table\n")
    for out in (inputs, inputs / "sub", tmp_path, trained_run / "preds"):
        assert main(["predict", str(trained_run), str(inputs), str(out)]) == 2
        assert "mslesion: error: " in _one_error_line(capsys.readouterr().err)
    assert (inputs / "lesions.csv").read_text() == "the user's own table\n"
    assert sorted(p.name for p in inputs.iterdir()) == ["a.nii.gz", "lesions.csv"]
    assert not (trained_run / "preds").exists()

    out = tmp_path / "out"
    result = predict(trained_run, inputs, out, verbose=False)
    assert result.predicted == ["a"] and os.fspath(result) == str(out / "lesions.csv")
    assert (out / MARKER).is_file()
    # the predictions folder is not an input, and neither is a mask copied next to the images
    assert main(["predict", str(trained_run), str(out), str(tmp_path / "again")]) == 2
    assert "is an mslesion predictions folder" in _one_error_line(capsys.readouterr().err)
    shutil.copy(out / "a_lesion_mask.nii.gz", inputs / "a_lesion_mask.nii.gz")
    assert [c.patient_id for c in find_inputs(inputs).cases] == ["a"]
    # an existing predictions folder is replaced only on request
    assert main(["predict", str(trained_run), str(inputs), str(out)]) == 2
    assert "pass --overwrite" in _one_error_line(capsys.readouterr().err)
    assert main(["predict", str(trained_run), str(inputs), str(out), "--overwrite"]) == 0
    assert pd.read_csv(out / "lesions.csv").patient.tolist() == ["a"]


def test_find_inputs_skips_folders_mslesion_marked_as_outputs(tmp_path):
    for pid in ("1", "2"):
        _flair(tmp_path / "study" / pid / "FLAIR.nii.gz")
    write_marker(tmp_path / "study" / "2", "evaluation")
    found = find_inputs(tmp_path / "study", image_patterns={"flair": "{patient}/FLAIR.nii.gz"})
    assert [c.patient_id for c in found.cases] == ["1"]
    _flair(tmp_path / "study" / "2" / "masks" / "x_pred.nii.gz")
    with pytest.raises(NoCasesFoundError, match=r"lies in .*2, an mslesion evaluation folder \(outputs, not images\)"):
        find_inputs(tmp_path / "study" / "2" / "masks")
    with pytest.raises(NoCasesFoundError, match="no such file or folder; "):
        find_inputs(tmp_path / "missing")


# ---------------------------------------------------------------- volumes that were silently wrong


def _with_pixdim(path: Path, value: float) -> Path:
    """A copy of a NIfTI whose first voxel size is ``value`` and whose affine comes from pixdim alone.

    Written byte by byte: nibabel repairs such headers itself when saving.
    """
    raw = bytearray(gzip.decompress(path.read_bytes()))
    pixdim = list(struct.unpack("<8f", raw[76:108]))
    pixdim[1] = value
    raw[76:108] = struct.pack("<8f", *pixdim)
    raw[252:256] = struct.pack("<hh", 0, 0)  # qform_code, sform_code: nibabel then builds the affine from pixdim
    out = path.with_name(f"pixdim_{value}.nii")
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize("value", [0.0, -1.2, float("nan")])
def test_bad_voxel_size_is_refused_naming_the_file(value, tmp_path):
    bad = _with_pixdim(_flair(tmp_path / "a.nii.gz"), value)
    with pytest.raises(BadVoxelSizeError, match=rf"^{re.escape(str(bad))}: voxel size .* mm \(header pixdim\) is zero"):
        load_image(bad)
    with pytest.raises(BadVoxelSizeError):  # masks too: their volume is measured in mL as well
        load_mask(bad, allow_empty=True)


def test_constant_image_is_refused(tmp_path):
    path = write_nifti(tmp_path / "blank.nii.gz", np.zeros((40, 48, 10), np.float32))
    with pytest.raises(ConstantImageError, match=rf"^{re.escape(str(path))}: image is constant \(every voxel is 0\)"):
        load_image(path)
    load_mask(path, allow_empty=True)  # an empty mask is a mask, not an error (when allowed)


def test_oblique_affine_is_accepted_with_a_warning_kept_for_meta_json(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_case

    image, mask = phantom()
    write_nifti(tmp_path / "raw" / "Patient-1" / "1-Flair.nii.gz", image, _oblique(7.5))
    write_nifti(tmp_path / "raw" / "Patient-1" / "1-LesionSeg-Flair.nii.gz", mask, _oblique(7.5))
    case = discover_cases(tmp_path / "raw").cases[0]
    with pytest.warns(ObliqueAffineWarning, match=r"\.nii\.gz: oblique affine, .* 7\.50 degrees"):
        loaded = load_case(case)
    assert len(loaded.warnings) == 2 and all("7.50 degrees" in w for w in loaded.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObliqueAffineWarning)
        prepare_case(case, PrepConfig(size=(64, 64)), tmp_path / "slices")
    meta = json.loads((tmp_path / "slices" / "1" / "meta.json").read_text())
    assert meta["warnings"] == loaded.warnings
    with warnings.catch_warnings():  # an axis-aligned volume gives none
        warnings.simplefilter("error", ObliqueAffineWarning)
        assert load_image(_flair(tmp_path / "straight.nii.gz")).warnings == []


@requires(LGG)
def test_lgg_case_asked_for_a_channel_it_lacks(tmp_path):
    case = discover_cases(LGG).cases[0]
    with pytest.raises(MissingModalityError, match="LGG slices hold channels"):
        load_case(case, ("t1",))


# ---------------------------------------------------------------- no unpickling anywhere


def test_every_np_load_in_the_package_refuses_pickles():
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "np"):  # fmt: skip
                pickles = [k for k in node.keywords if k.arg == "allow_pickle"]
                if not pickles or not (isinstance(pickles[0].value, ast.Constant) and pickles[0].value.value is False):
                    missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not missing, f"np.load without allow_pickle=False: {missing}"
