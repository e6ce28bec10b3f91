"""Run folders written by an earlier release stay usable.

``tests/fixtures/run_before_restructure`` is a tiny 2D run (kuc.unet, filters 4/8, 32x32, BCE + Dice, one epoch)
written by mslesion 0.1.0 before the package was split into stage subpackages (issue 12). It is committed as
written (minus best/final.keras, which repeat model.keras), so the registered names its ``model.keras`` refers to
(``mslesion>BceDiceLoss``, the ``mslesion`` metrics) and the files the run folder holds are checked against the
code as it is now.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

FIXTURE = Path(__file__).parent / "fixtures" / "run_before_restructure"


def test_old_run_folder_loads_compiled_with_its_loss_and_metrics():
    from mslesion.models import load_model

    model = load_model(FIXTURE / "model.keras", compile=True)
    assert type(model.loss).__name__ == "BceDiceLoss"
    assert model.input_shape == (None, 32, 32, 1)  # one FLAIR channel, as the run's slicing wrote
    out = np.asarray(model.predict(np.zeros((2, 32, 32, 1), np.float32), verbose=0))
    assert out.shape == (2, 32, 32, 1) and np.all((out >= 0) & (out <= 1))


def test_old_run_folder_predicts_a_new_patient(tmp_path):
    from mslesion.data.synthetic import generate_cohort
    from mslesion.infer.predict import predict

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    raw = tmp_path / "raw"
    generate_cohort(raw, 1, seed=3, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    predict(run, raw, tmp_path / "pred", verbose=False)
    table = pd.read_csv(tmp_path / "pred" / "lesions.csv")
    assert len(table) == 1
    (mask,) = sorted((tmp_path / "pred").rglob("*_lesion_mask.nii.gz"))
    source = next(raw.rglob("*Flair*.nii.gz"))
    assert nib.load(mask).shape == nib.load(source).shape
    np.testing.assert_allclose(nib.load(mask).affine, nib.load(source).affine)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in FIXTURE.iterdir())  # the run is only read


def test_the_file_names_in_paths_are_those_an_old_run_folder_holds():
    from mslesion import paths

    names = {paths.RUN_CONFIG, paths.ENVIRONMENT, paths.HISTORY, paths.STATE, paths.CHOSEN, paths.FINAL_EVAL,
             paths.SUMMARY, paths.PREP_CONFIG}  # fmt: skip
    assert names <= {p.name for p in FIXTURE.iterdir()}
