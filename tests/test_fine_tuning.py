"""ImageNet encoders frozen, retrained, fine-tuned after a warm-up, and from scratch: one call, one table."""

import numpy as np
import pandas as pd
import pytest

from mslesion.report.build import build_report
from mslesion.report.eval_tables import fine_tuning_table
from mslesion.study.fine_tuning import FINE_TUNING_MODES, PRETRAINED_MODELS, fine_tune_report_models, fine_tuning_config


def test_each_mode_sets_the_encoder_and_the_weights():
    assert PRETRAINED_MODELS == ("unet_vgg16_imagenet", "unet_plus_vgg16_imagenet", "att_unet_vgg16_imagenet")
    cfgs = {m: fine_tuning_config("unet_vgg16_imagenet", m, "ds", "runs", 50) for m in FINE_TUNING_MODES}
    assert {m: (c["model_params"]["encoder"], c["model_params"]["weights"]) for m, c in cfgs.items()} == {
        "frozen": ("frozen", "imagenet"), "trainable": ("trainable", "imagenet"),
        "finetuned": ("trainable", "imagenet"), "scratch": ("trainable", None)}
    assert {c["tag"] for c in cfgs.values()} == {f"unet_vgg16_imagenet-{m}" for m in FINE_TUNING_MODES}
    with pytest.raises(KeyError, match="pretrained"):
        fine_tuning_config("unet_scratch", "frozen", "ds", "runs", 50)
    with pytest.raises(KeyError, match="mode"):
        fine_tuning_config("unet_vgg16_imagenet", "thawed", "ds", "runs", 50)


def test_bad_requests_are_refused_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="warmup_epochs"):
        fine_tune_report_models(tmp_path / "ds", tmp_path / "runs", epochs=3, warmup_epochs=3)
    with pytest.raises(KeyError):
        fine_tune_report_models(tmp_path / "ds", tmp_path / "runs", modes=("frozen", "thawed"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_fine_tuning_starts_from_the_warm_up_and_trains_the_encoder(tmp_path):
    from mslesion.data.quick import quick_synthetic_dataset
    from mslesion.folders import RunFolder
    from mslesion.models import load_model

    quick_synthetic_dataset(tmp_path / "ds", 4, size=32, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0),
                            test_fraction=0.25, val_fraction=0.34)  # fmt: skip
    (tuned,) = fine_tune_report_models(tmp_path / "ds", tmp_path / "runs", keys=["unet_vgg16_imagenet"],
                                       modes=("finetuned",), epochs=2, warmup_epochs=1, quick=True, weights=None,
                                       batch_size=8)  # fmt: skip
    warmup = next((tmp_path / "runs").rglob("*unet_vgg16_imagenet-warmup/fold_0"))
    assert RunFolder(tuned).config["init_from"] == str(warmup)
    table = fine_tuning_table([warmup, tuned])
    assert list(table["mode"]) == ["finetuned"] and list(table.epochs) == [2] and list(table.warmup_epochs) == [1]
    # the encoder trains after the warm-up
    assert table.trainable_params.iloc[0] > RunFolder(warmup).config["params"]["trainable"]
    # the fine-tuning phase changed the encoder the warm-up had kept frozen
    a, b = load_model(warmup / "model.keras", compile=False), load_model(tuned / "model.keras", compile=False)
    first = next(i for i, w in enumerate(a.weights) if "block1_conv1" in w.path)
    assert not np.allclose(np.asarray(a.weights[first]), np.asarray(b.weights[first]))
    report = build_report({"runs": [], "fine_tuning_runs": [str(warmup), str(tuned)],
                           "out": str(tmp_path / "results")})  # fmt: skip
    assert len(pd.read_csv(report.parent / "tables" / "fine_tuning.csv")) == 1
