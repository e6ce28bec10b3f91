"""The FC-DenseNet ablation over folds (Rondinella et al. 2023, Table 5) as one call, and its table."""

import pandas as pd
import pytest

from mslesion.report.build import build_report
from mslesion.report.eval_tables import ablation_table
from mslesion.study.ablation import ABLATION_VARIANTS, ablate_fc_densenet


def test_the_four_rows_of_table_5():
    assert [label for label, _ in ABLATION_VARIANTS.values()] == [
        "FC-DenseNet", "FC-DenseNet + C-LSTM", "FC-DenseNet + SA", "FC-DenseNet + SA + C-LSTM"]


def test_unknown_variant_refused_before_training(tmp_path):
    with pytest.raises(KeyError, match="sa_only"):
        ablate_fc_densenet(tmp_path / "ds", tmp_path / "runs", tmp_path / "cv", variants=["fc_densenet", "sa_only"])
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_variant_over_two_folds_gives_its_table_5_row(tmp_path):
    from mslesion.data.prep import PrepConfig, prepare_dataset
    from mslesion.data.synthetic import generate_cohort
    from mslesion.folders import RunFolder

    generate_cohort(tmp_path / "raw", 4, seed=0, shape=(64, 64, 8), spacing_mm=(3.6, 3.6, 10.0))
    prepare_dataset(tmp_path / "raw", tmp_path / "ds", PrepConfig(size=(32, 32), context=3, selection="brain",
                                                                  split="kfold", folds=2), progress=False)  # fmt: skip
    cvs = ablate_fc_densenet(tmp_path / "ds", tmp_path / "runs", tmp_path / "cv",
                             variants=["fc_densenet_sa"], epochs=1, quick=True, batch_size=8)
    assert list(cvs) == ["fc_densenet_sa"]
    plain = pd.read_csv(cvs["fc_densenet_sa"] / "folds.csv")
    assert sorted(plain.fold) == [0, 1]
    params = RunFolder(plain.run.iloc[0]).config["model_params"]
    assert (params["attention"], params["lstm"]) == (True, False)
    table = ablation_table(list(cvs.values()))
    assert list(table.architecture) == ["FC-DenseNet + SA"]
    assert {"dice_fold0", "dice_fold1", "dice_mean", "dice_sd", "lesion_f1_mean"} <= set(table.columns)
    assert table.dice_mean.iloc[0] == pytest.approx(plain.dice.mean())
    report = build_report({"runs": [], "ablations": [str(p) for p in cvs.values()], "out": str(tmp_path / "results")})
    assert len(pd.read_csv(report.parent / "tables" / "ablation.csv")) == 1
