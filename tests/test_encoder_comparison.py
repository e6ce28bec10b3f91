"""The LGG encoder comparison as one call: its four models, their recorded settings, and its report table."""

import math

import pandas as pd
import pytest

from mslesion.report.build import build_report
from mslesion.report.eval_tables import encoder_comparison_table
from mslesion.study.encoder_comparison import ENCODER_VARIANTS, compare_encoders, encoder_variant_config
from mslesion.study.experiments import evaluate_runs


def test_the_four_models_of_the_source_with_dice_loss_and_augmentation():
    full = {name: encoder_variant_config(name, "ds", "runs", 120) for name in ENCODER_VARIANTS}
    assert list(full) == ["unet", "vgg16_retrained", "resnet50_retrained", "resnet50_frozen2"]
    assert all(c["loss"] == "dice" and c["augment"] and c["tag"] == n for n, c in full.items())
    assert "weights" not in full["unet"]["model_params"]
    assert full["resnet50_frozen2"]["model_params"] == {"backbone": "resnet50", "encoder": 2, "weights": "imagenet"}
    assert full["vgg16_retrained"]["model_params"]["encoder"] == "trainable"
    quick = encoder_variant_config("resnet50_frozen2", "ds", "runs", 1, quick=True, seed=3)
    assert quick["model_params"]["backbone"] == "resnet18" and quick["model_params"]["weights"] is None
    assert quick["seed"] == 3
    with pytest.raises(KeyError, match="known"):
        encoder_variant_config("resnet101", "ds", "runs", 1)


def test_unknown_variants_are_refused_before_any_run_starts(tmp_path):
    with pytest.raises(KeyError, match="resnet101"):
        compare_encoders(tmp_path / "nothing", tmp_path / "runs", ["unet", "resnet101"], quick=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_quick_comparison_trains_every_variant_and_tabulates_it(tmp_path):
    from mslesion.data.quick import quick_synthetic_dataset

    quick_synthetic_dataset(tmp_path / "ds", 4, size=64, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0),
                            test_fraction=0.25, val_fraction=0.34)  # fmt: skip
    runs = compare_encoders(tmp_path / "ds", tmp_path / "runs", epochs=1, quick=True, batch_size=8)
    assert [r.parent.name.split("__")[-1] for r in runs] == list(ENCODER_VARIANTS)
    evaluate_runs(runs[:2])
    table = encoder_comparison_table(runs)
    assert list(table.encoder) == ["none (scratch)", "vgg16", "resnet18", "resnet18"]
    assert list(table.frozen_blocks) == [0, 0, 0, 2]
    retrained, frozen = table.iloc[2], table.iloc[3]
    assert frozen.trainable_params < retrained.trainable_params  # the first two blocks really are frozen
    assert table.val_dice.between(0, 1).all() and (table.epochs == 1).all()
    assert table.test_patients.tolist()[:2] == [1, 1] and math.isnan(table.test_dice_mean.iloc[3])
    report = build_report({"runs": [], "encoder_runs": [str(r) for r in runs], "out": str(tmp_path / "results")})
    written = pd.read_csv(report.parent / "tables" / "encoder_comparison.csv")
    assert len(written) == 4 and (report.parent / "figures" / "encoder_learning_curves.png").is_file()
