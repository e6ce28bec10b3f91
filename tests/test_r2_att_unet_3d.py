"""3D R2 attention U-Net (the 3DR2AUNet paper, 2024): shapes, saving, other backends, and the 3D training runner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mslesion.models.registry import MODELS, build_model, count_params

from .backends import assert_no_tensorflow

SMALL = (4, 8, 16, 32)


def r2_att_unet_3d(*args, **kwargs):
    # imported on first use, not at collection: importing registers native.r2_att_unet_3d, and
    # test_models.py checks the registry's exact names (until mslesion.models imports this module itself)
    from mslesion.models.r2_att_unet_3d import r2_att_unet_3d as build

    return build(*args, **kwargs)


def test_registered():
    from mslesion.models.r2_att_unet_3d import DEFAULT_FILTERS

    assert "native.r2_att_unet_3d" in MODELS
    assert MODELS["native.r2_att_unet_3d"].defaults["filters"] == DEFAULT_FILTERS == (32, 64, 128, 256)


def test_builds_at_default_size():
    from mslesion.models import r2_att_unet_3d as _  # noqa: F401  (registers the model)

    model = build_model("native.r2_att_unet_3d", input_shape=(64, 64, 64, 1))
    assert model.output_shape == (None, 64, 64, 64, 1)
    assert 5e6 < count_params(model)["total"] < 1e7


@pytest.mark.parametrize("upsampling", ["upsample", "transpose"])
def test_small_output_shape_and_range(upsampling):
    model = r2_att_unet_3d((16, 16, 16, 2), num_classes=2, filters=SMALL, upsampling=upsampling)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 16, 2)).astype("float32")
    y = np.asarray(model(x))
    assert y.shape == (2, 16, 16, 16, 2) and y.dtype == np.float32
    assert ((y >= 0) & (y <= 1)).all()
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


def test_default_widths_forward_on_a_small_input():
    model = r2_att_unet_3d((None, None, None, 1))
    assert model(np.zeros((1, 8, 16, 24, 1), "float32")).shape == (1, 8, 16, 24, 1)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by 8"):
        r2_att_unet_3d((20, 16, 16, 1), filters=SMALL)
    with pytest.raises(ValueError, match=r"\(D, H, W, C\)"):
        r2_att_unet_3d((16, 16, 1), filters=SMALL)


@pytest.mark.parametrize("module", ["mslesion.train.patches", "mslesion.train.training3d", "mslesion.infer.sliding_window",
                                    "mslesion.data.volumes3d", "mslesion.evaluate.evaluation3d"])
def test_no_tensorflow_import(module):
    assert_no_tensorflow(module)


@pytest.mark.slow
def test_train_3d_and_evaluate_3d_on_synthetic_cohort(tmp_path):
    """Small widths, 32^3 patches at stride 16, 8 epochs on 4 training patients (~1-2 min on 2 CPU cores)."""
    from mslesion.data.synthetic import generate_cohort
    from mslesion.data.volumes3d import prepare_volumes
    from mslesion.evaluate.evaluation3d import evaluate_3d
    from mslesion.train.training3d import train_3d

    generate_cohort(tmp_path / "raw", 6, seed=0, shape=(64, 64, 32), spacing_mm=(3, 3, 3))
    prepare_volumes(tmp_path / "raw", tmp_path / "vol", split="train_val_test", test_fraction=0.2, val_fraction=0.2)
    run = train_3d({"dataset": str(tmp_path / "vol"), "runs_root": str(tmp_path / "runs"),
                    "model_params": {"filters": list(SMALL)}, "patch": [32, 32, 32], "stride": [16, 16, 16],
                    "epochs": 8, "learning_rate": 3e-3}, verbose=0)  # fmt: skip
    for name in ("config.json", "environment.json", "history.csv", "summary.txt", "best.keras", "final.keras",
                 "prep3d_config.json"):  # fmt: skip
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "native.r2_att_unet_3d" and config["loss"] == "bce_dice"
    assert len(config["train_patients"]) == 4 and len(config["val_patients"]) == 1 and config["params"]["total"] > 0
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 8 and {"seconds", "img_per_s", "learning_rate", "val_dice", "val_loss"} <= set(history)
    assert history.val_dice.max() > max(0.5, history.val_dice.iloc[0] + 0.3), history.val_dice.tolist()

    out = evaluate_3d(run, {"part": "test", "write_masks": True}, verbose=False)
    per_patient = pd.read_csv(out / "per_patient.csv", dtype={"patient": str})
    splits = json.loads((tmp_path / "vol" / "splits.json").read_text())
    assert per_patient.patient.tolist() == splits["folds"][0]["test"]
    assert len(per_patient) == 1 and per_patient.dice.iloc[0] > 0.3
    assert (out / "slices.csv").is_file() and (out / "failures.csv").is_file()
    lesions = pd.read_csv(out / "lesions.csv")
    assert len(lesions) == 4 and {"connectivity", "detection_fraction"} <= set(lesions)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_patient"]["dice"]["n"] == 1 and summary["sliding_window"]["patch"] == [32, 32, 32]
    assert summary["threshold"] == 0.5 and summary["checkpoint"] == "best"
    import nibabel as nib

    written = nib.load(out / "masks" / f"{per_patient.patient.iloc[0]}_pred.nii.gz")
    assert written.shape == (64, 64, 32) and set(np.unique(np.asarray(written.dataobj))) <= {0, 1}


@pytest.mark.slow
def test_cli_prep3d_train3d_and_evaluate_dispatch(tmp_path):
    import json

    from mslesion.cli import main
    from mslesion.data.synthetic import generate_cohort
    from mslesion.report.eval_tables import model_comparison_table

    generate_cohort(tmp_path / "raw", 5, seed=1, shape=(48, 48, 24), spacing_mm=(3.0, 3.0, 3.0))
    assert main(["prep3d", str(tmp_path / "raw"), str(tmp_path / "vol"), "--test-fraction", "0.2",
                 "--val-fraction", "0.25"]) == 0  # fmt: skip
    assert main(["train3d", str(tmp_path / "vol"), "--model-param", "filters=[4,8,16]", "--epochs", "1",
                 "--patch", "16", "16", "16", "--stride", "16", "16", "16", "--batch-size", "2",
                 "--runs-root", str(tmp_path / "runs")]) == 0  # fmt: skip
    (run,) = [p.parent for p in (tmp_path / "runs").rglob("config.json")]
    assert main(["evaluate", str(run), "--out-dir", str(tmp_path / "e")]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["connectivity"] == 26 and len(summary["patients"]) == 1
    row = model_comparison_table([run], eval_name="eval_test").iloc[0]
    assert row.registry == "native.r2_att_unet_3d" and row.input == "16x16x16x1"
