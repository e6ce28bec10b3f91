"""Report: tables and figures from run folders, deterministic, with provenance."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mslesion.cli import main
from mslesion.evaluate.config import EvalConfig
from mslesion.evaluate.evaluation import evaluate
from mslesion.report.build import ReportConfig, _largest_lesion_slices, build_report, dataset_figures
from mslesion.report.eval_tables import detection_rule, lesionwise_table
from mslesion.report.tables import (
    DID_NOT_LEARN_RULE,
    _mb,
    dice_table,
    did_not_learn,
    find_runs,
    flag_unlearned,
    run_label,
)
from mslesion.train.tuning import tune

from .conftest import copy_run

TABLES = ("model_comparison", "table_6_1_parameters", "table_6_2_dice", "table_6_3_test_iou", "appendix_i_accuracy_loss",
          "per_patient_summary", "per_patient", "lesionwise", "backbone_comparison", "lr_search", "epoch_study",
          "checkpoint_choice")  # fmt: skip
FIGURES = ("dice_curves", "accuracy_loss", "predictions_good_average_bad", "lesion_brackets", "lr_search",
           "dataset_glimpse", "slices_with_masks", "orthogonal_views", "backbone_dice_curves")  # fmt: skip


@pytest.fixture(scope="module")
def study(trained_run, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("study")
    run = copy_run(trained_run, root / "runs" / trained_run.name)  # evaluated here; the session's run is untouched
    evaluate(run, EvalConfig(), verbose=False)
    cfg = json.loads((run / "config.json").read_text())
    search = tune({"dataset": cfg["dataset"], "model": "kuc.unet", "model_params": {"filter_num": [8, 16]},
                   "learning_rates": [1e-2, 1e-3], "max_trials": 2, "epochs": 1,
                   "runs_root": str(root / "tuning")})  # fmt: skip
    return {"runs": [str(run)], "backbone_runs": [str(run)], "comparison_runs": [str(run)],
            "tunings": [str(search)],
            "epoch_study_run": str(run), "epoch_every": 2, "dataset": cfg["dataset"]}


def per_patient_dice(study) -> float:
    return float(pd.read_csv(Path(study["runs"][0]) / "eval_test" / "per_patient.csv").dice.mean())


def test_report_writes_every_table_and_figure_with_provenance(study, tmp_path):
    md = build_report(ReportConfig(**study, out=str(tmp_path / "r")))
    out = md.parent
    for name in TABLES:
        for suffix in (".csv", ".md", ".tex"):
            assert (out / "tables" / f"{name}{suffix}").stat().st_size > 50, name + suffix
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 5_000, name
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["tables/table_6_2_dice.csv"]["runs"] == study["runs"]
    assert provenance["tables/lr_search.csv"]["tunings"] == study["tunings"]
    assert json.loads(Image.open(out / "figures" / "dice_curves.png").text["Source"])["runs"] == study["runs"]
    text = md.read_text()
    assert "Table 6.1" in text and "figures/orthogonal_views.png" in text and "Source: " in text
    dice = pd.read_csv(out / "tables" / "table_6_2_dice.csv")
    history = pd.read_csv(Path(study["runs"][0]) / "history.csv")
    assert dice.val_dice[0] == pytest.approx(history.val_dice.iloc[-1], rel=1e-5)
    assert dice.best_val_dice[0] == pytest.approx(history.val_dice.max(), rel=1e-5)
    assert pd.read_csv(out / "tables" / "epoch_study.csv").epoch.tolist() == [2, 4, 6]
    assert len(pd.read_csv(out / "tables" / "lr_search.csv")) == 2
    comparison = pd.read_csv(out / "tables" / "model_comparison.csv")
    assert comparison.patient_dice_mean[0] == pytest.approx(per_patient_dice(study), rel=1e-5)


def test_checkpoint_choice_table_and_a_bn_warning_at_the_top_of_the_report(study, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(study["runs"][0], run)
    final_eval = json.loads((run / "final_eval.json").read_text())
    chosen = final_eval["chosen"]
    choice = pd.read_csv(build_report(ReportConfig(runs=[str(run)], out=str(tmp_path / "ok"))).parent
                         / "tables" / "checkpoint_choice.csv")  # fmt: skip
    assert choice[choice.chosen].weights.tolist() == [chosen]
    row = choice[choice.chosen].iloc[0]
    assert row.val_dice_recalibrated == pytest.approx(final_eval["candidates"][chosen]["inference"]["dice"], rel=1e-5)
    # a run whose chosen weights lose Dice in inference mode: the report says so before anything else
    final_eval["warnings"] = ["WARNING: batch norm: the final weights reach validation Dice 0.030 ..."]
    (run / "final_eval.json").write_text(json.dumps(final_eval))
    text = build_report(ReportConfig(runs=[str(run)], out=str(tmp_path / "warned"))).read_text()
    first = text.split("\n\n")[1]
    assert first.startswith("> **") and "WARNING: batch norm" in first


def test_report_twice_gives_identical_tables_and_figures(study, tmp_path):
    outs = [build_report(ReportConfig(**study, out=str(tmp_path / f"r{i}"))).parent for i in range(2)]
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert len(files) > 30
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel


def test_lesionwise_table_sums_patients_per_bracket(study):
    run = Path(study["runs"][0])
    table = lesionwise_table([run])
    per_patient = pd.read_csv(run / "eval_test" / "lesions.csv", dtype={"patient": str})
    assert len(table) == 4
    assert table.tp_lesions.sum() == per_patient.tp_lesions.sum()
    assert table.n_true_lesions.sum() == per_patient.n_true_lesions.sum()
    assert set(table.connectivity) == {26}
    assert set(table.detected_when) == {"any overlap"}  # detection_fraction 0, in words
    assert list(table.columns).index("detected_when") == list(table.columns).index("detection_fraction") + 1


def test_figure_4_4_shows_each_patients_slice_with_the_most_lesion(trained_run):
    dataset = json.loads((trained_run / "config.json").read_text())["dataset"]
    manifest = pd.read_csv(Path(dataset) / "manifest.csv", dtype={"patient": str})
    figure = dataset_figures(dataset)["slices_with_masks"]
    lesion = manifest[manifest.lesion_pixels > 0]
    best = lesion.loc[lesion.groupby("patient", sort=False).lesion_pixels.idxmax()].head(4)
    assert [ax.get_title() for ax in figure.axes] == [f"patient {r.patient}, slice {r.slice_index} "
                                                      f"({r.lesion_pixels} lesion px)" for r in best.itertuples()]
    assert len({r.patient for r in best.itertuples()}) == len(figure.axes)  # one slice per patient


def test_largest_lesion_slice_per_patient():
    manifest = pd.DataFrame(dict(patient=["1", "1", "1", "2", "2", "3", "3", "4", "5", "6"],
                                 row=[0, 1, 2, 0, 1, 0, 1, 0, 0, 0], slice_index=[4, 5, 6, 4, 5, 8, 9, 3, 3, 3],
                                 lesion_pixels=[1, 50, 3, 0, 0, 7, 7, 2, 9, 4]))  # fmt: skip
    picked = _largest_lesion_slices(manifest)
    assert picked.patient.tolist() == ["1", "3", "4", "5"]  # patient 2 has no lesion; at most 4, in manifest order
    assert picked.slice_index.tolist() == [5, 8, 3, 3]  # most lesion pixels; a tie takes the first slice
    assert _largest_lesion_slices(manifest, n=10).patient.tolist() == ["1", "3", "4", "5", "6"]


def fake_run(root: Path, tag: str, val_dice: list[float], fraction: float = 0.0) -> Path:
    """A run folder with what the report reads (no model): config, history and a lesion-wise evaluation."""
    run = root / tag / "fold_0"
    (run / "eval_test").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"tag": tag, "model": "kuc.unet", "input_shape": [64, 64, 1],
                                                 "params": {"trainable": 10, "non_trainable": 0, "total": 10},
                                                 "loss": "dice", "dataset": "x"}))  # fmt: skip
    epochs = len(val_dice)
    history = pd.DataFrame({"epoch": range(epochs), "dice": np.linspace(0.1, 0.6, epochs), "val_dice": val_dice,
                            "accuracy": 0.99, "val_accuracy": 0.995, "loss": 0.5, "val_loss": 0.6})  # fmt: skip
    history.to_csv(run / "history.csv", index=False)
    pd.DataFrame({"patient": ["1", "1"], "bracket": ["[0, 10)", "[10, 400)"], "n_true_lesions": [3, 2],
                  "tp_lesions": [0, 2], "fn_lesions": [3, 0], "fp_lesions": [1, 0],
                  "n_pred_lesions": [1, 2]}).to_csv(run / "eval_test" / "lesions.csv", index=False)  # fmt: skip
    (run / "eval_test" / "summary.json").write_text(json.dumps({
        "connectivity": 26, "detection_fraction": fraction, "patients": ["1"],
        "slice_level": {"pooled_iou": 0.2, "pooled_dice": 0.3, "n_slices": 4},
        "per_patient": {"iou": {"mean": 0.2}, "dice": {"mean": 0.3}}}))  # fmt: skip
    return run


@pytest.mark.parametrize("val_dice, stuck", [([0.0, 0.01, 0.049], True), ([0.0, 0.05, 0.01], False),
                                             ([float("nan"), 0.02], True), ([0.3, 0.8], False)])  # fmt: skip
def test_did_not_learn_is_validation_dice_below_0_05_at_every_epoch(val_dice, stuck):
    assert did_not_learn(pd.DataFrame({"val_dice": val_dice})) is stuck
    assert did_not_learn(pd.DataFrame({"dice": val_dice})) is False  # no validation Dice: not judged


def test_a_model_that_did_not_learn_is_flagged_in_the_tables_and_the_report(tmp_path):
    learned = fake_run(tmp_path / "runs", "learned", [0.02, 0.3, 0.6])
    stuck = fake_run(tmp_path / "runs", "stuck", [0.0, 0.004, 0.049])
    assert dice_table([learned, stuck]).note.tolist() == ["", "did not learn"]
    assert "note" not in flag_unlearned(dice_table([learned]).drop(columns="note"), ["stuck"])  # no blank column
    md = build_report(ReportConfig(runs=[str(learned), str(stuck)], out=str(tmp_path / "r")))
    text = md.read_text()
    assert text.count(DID_NOT_LEARN_RULE) == 1 and "): stuck." in text  # the rule once, naming the model
    for table in ("table_6_2_dice", "table_6_3_test_iou", "appendix_i_accuracy_loss", "lesionwise"):
        shown = pd.read_csv(md.parent / "tables" / f"{table}.csv", keep_default_na=False)
        assert list(shown.columns)[:2] == ["model", "note"], table
        assert dict(zip(shown.model, shown.note)) == {"learned": "", "stuck": "did not learn"}, table
    assert "| stuck | did not learn |" in (md.parent / "tables" / "table_6_2_dice.md").read_text()
    # a report of models that all learned has no note column and no rule
    text = build_report(ReportConfig(runs=[str(learned)], out=str(tmp_path / "ok"))).read_text()
    assert DID_NOT_LEARN_RULE not in text and "did not learn" not in text


@pytest.mark.parametrize("fraction, meaning", [
    (0.0, "when the prediction overlaps it by one voxel or more (any overlap)"),
    (0.6, "when at least 60% of its voxels are predicted"),
])  # fmt: skip
def test_detection_fraction_is_explained_next_to_the_lesionwise_table(tmp_path, fraction, meaning):
    run = fake_run(tmp_path / "runs", "learned", [0.02, 0.3, 0.6], fraction=fraction)
    assert detection_rule(fraction).startswith(f"detection_fraction = {fraction:g} means a true lesion counts")
    md = build_report(ReportConfig(runs=[str(run)], out=str(tmp_path / "r")))
    lesionwise = (md.parent / "tables" / "lesionwise.md").read_text()
    caption = lesionwise.split("\n")[0]
    assert f"detection_fraction = {fraction:g} means a true lesion counts as detected {meaning}" in caption
    assert caption in md.read_text()
    shown = pd.read_csv(md.parent / "tables" / "lesionwise.csv")
    assert set(shown.detected_when) == {"any overlap" if fraction == 0 else "at least 60% of its voxels"}


def test_parameter_sizes_are_printed_like_seed_000():
    assert _mb(31_172_417) == "31,172,417 (118.91 MB)"
    assert _mb(13_696) == "13,696 (53.50 KB)"


def test_report_model_label_says_when_imagenet_weights_were_not_used(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"tag": "unet_vgg16_imagenet", "model": "kuc.unet",
                                                 "model_params": {"weights": None}}))  # fmt: skip
    assert run_label(run) == "UNet with VGG Backbone (no ImageNet weights)"
    (run / "config.json").write_text(json.dumps({"tag": "unet_vgg16_imagenet", "model_params": {"weights": "imagenet"}}))
    assert run_label(run) == "UNet with VGG Backbone and ImageNet weights"


def test_cli_report_finds_runs_under_a_root(study, tmp_path):
    root = Path(study["runs"][0]).parents[1]
    assert main(["report", "--runs", str(root), "--out", str(tmp_path / "c")]) == 0
    assert find_runs(root) == [Path(study["runs"][0])]
    assert (tmp_path / "c" / "tables" / "table_6_3_test_iou.csv").is_file()


def test_attention_map_figure_from_a_pyramid_run(trained_run, tmp_path):
    from mslesion.report.build import attention_figure
    from mslesion.train.training import train

    cfg = json.loads((trained_run / "config.json").read_text())
    run = train({"dataset": cfg["dataset"], "runs_root": str(tmp_path / "runs"), "model": "native.att_unet_pyramid",
                 "model_params": {"filters": [8, 16, 32]}, "epochs": 1, "batch_size": 8}, verbose=0)  # fmt: skip
    md = build_report(ReportConfig(runs=[], attention_run=str(run), out=str(tmp_path / "r")))
    assert (md.parent / "figures" / "attention_maps.png").stat().st_size > 5_000
    assert len(attention_figure(run).axes) == 2 + 2  # image, two gates, colour bar
