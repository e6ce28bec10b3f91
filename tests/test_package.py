"""Install-level behaviour: console command, data_prep scripts, library set-up."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([*args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_import_sets_sm_framework_so_segmentation_models_imports():
    code = "import os, mslesion, segmentation_models as sm; print(os.environ['SM_FRAMEWORK'], sm.framework())"
    proc = run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["tf.keras", "tf.keras"]


def test_keras_tuner_finds_tensorboard_hparams():
    proc = run(sys.executable, "-c", "import keras_tuner, tensorboard.plugins.hparams.api, sklearn; print('ok')")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_console_command_and_scripts_write_and_prepare_a_cohort(tmp_path):
    mslesion = Path(sys.executable).with_name("mslesion")
    proc = run(str(mslesion), "synth", str(tmp_path / "raw"), "--patients", "2", "--shape", "64", "64", "8",
               "--spacing", "3.6", "3.6", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 patients" in proc.stdout
    img = nib.load(str(tmp_path / "raw" / "Patient-2" / "2-Flair.nii.gz"))
    assert img.shape == (64, 64, 8)
    proc = run(str(mslesion), "synth", str(tmp_path / "raw"), "--patients", "2")
    assert proc.returncode == 2 and "already holds an mslesion cohort; pass --overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run(sys.executable, str(ROOT / "data_prep" / "extract_slices.py"), str(tmp_path / "raw"),
               str(tmp_path / "slices"), "--size", "64", "64", "--jobs", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "patients: 2 prepared, 0 failed" in proc.stdout
    assert "prep: 100%" in proc.stderr  # the progress bar
    proc = run(sys.executable, str(ROOT / "data_prep" / "make_synthetic_cohort.py"), str(tmp_path / "raw2"),
               "--patients", "1", "--shape", "48", "48", "6", "--spacing", "4.8", "4.8", "5")  # fmt: skip
    assert proc.returncode == 0 and (tmp_path / "raw2" / "cohort.json").is_file(), proc.stderr


def test_models_command_lists_counts_backbones_and_report_models():
    import contextlib
    import io

    from mslesion.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["models"]) == 0
    out = buf.getvalue()
    assert "kuc.r2_unet" in out and "101,979,265 params" in out
    assert "densenet121" in out and "fails" in out
    assert "unet_vgg16_imagenet" in out and "31,172,417" in out
