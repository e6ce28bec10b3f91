"""Notebooks run headless, top to bottom, on the synthetic cohort in quick mode."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import write_kaggle_input

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, cwd: Path, **parameters) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    # a cell may train several models; a shared 2-core CI machine needs more than nbclient's usual 600 s
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert not [c for c in nb.cells if c.cell_type == "code" and c.get("outputs")], path.name


def _outputs(nb) -> str:
    # one print may arrive as several stream chunks: join a cell's chunks as they came
    return "\n".join("".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_01_synthetic_only_by_name(tmp_path):
    nb = run_notebook("01_data_prep.ipynb", tmp_path, SOURCE="synthetic", PATIENTS=3, SIZE=64)
    assert (tmp_path / "data/slices/ms/manifest.csv").is_file()
    assert (tmp_path / "data/slices/ms/splits.json").is_file()
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert shown  # the slices with their masks, drawn inline (notebook 04 writes the report's figures)
    assert "SYNTHETIC cohort" in _outputs(nb)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_missing_data_stops_at_once_with_where_it_looked(tmp_path):
    """No data attached: each notebook stops with the places it searched, and writes no dataset, run or report."""
    for name, params, expected in (
        ("01_data_prep.ipynb", {}, "no dataset found in (no input folder on this platform)"),
        ("02_backbone_comparison.ipynb", {"QUICK": False}, "no prepared dataset (manifest.csv) in"),
        ("03_model_training.ipynb", {"QUICK": True}, "run notebook 01 first"),
        ("04_results_tables.ipynb", {}, "no finished runs in"),
    ):  # fmt: skip
        with pytest.raises(CellExecutionError, match="DataNotFoundError") as err:
            run_notebook(name, tmp_path, **params)
        assert expected in str(err.value), name
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no data/, runs/ or results/


@pytest.mark.slow
def test_01_to_04_on_a_read_only_kaggle_input_writing_only_to_the_working_folder(tmp_path):
    """The whole chain on real-layout data (Muslim et al.: .nii, folders with spaces), not on a synthetic fallback."""
    cohort = write_kaggle_input(tmp_path / "input", patients=6, shape=(64, 64, 12))
    before = sorted(str(p) for p in (tmp_path / "input").rglob("*"))
    kernel_cwd, work = tmp_path / "elsewhere", tmp_path / "working"
    kernel_cwd.mkdir()
    try:
        nb = run_notebook("01_data_prep.ipynb", kernel_cwd, SOURCE=str(tmp_path / "input"), WORK=str(work), SIZE=64,
                          SELECTION="brain")  # fmt: skip
        assert f"real data: {cohort}" in _outputs(nb)
        common = {"WORK": str(work), "DATASET": "data/slices/ms", "QUICK": True, "WEIGHTS": None, "EPOCHS": 2}
        nb = run_notebook("02_backbone_comparison.ipynb", kernel_cwd, BACKBONES=["mobilenetv2", "vgg16"],
                          ENCODER_COMPARISON=True, ENCODER_VARIANTS=["unet", "resnet50_frozen2"], ENCODER_EPOCHS=1,
                          **common)  # fmt: skip
        assert "real data from" in _outputs(nb) and "6 patients" in _outputs(nb)
        assert len(list((work / "runs/backbones").rglob("final.keras"))) == 2
        assert len(list((work / "runs/encoders").rglob("final.keras"))) == 2
        run_notebook("03_model_training.ipynb", kernel_cwd, LR_EPOCHS=1, LEARNING_RATES=[1e-2, 1e-3], **common)
        run_notebook("04_results_tables.ipynb", kernel_cwd, WORK=str(work), EPOCH_EVERY=1)
    finally:
        for path in [tmp_path / "input", *(tmp_path / "input").rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    assert sorted(str(p) for p in (tmp_path / "input").rglob("*")) == before
    assert list(kernel_cwd.iterdir()) == []  # everything went to the working folder
    results = work / "results"
    assert len(pd.read_csv(results / "tables/table_6_1_parameters.csv")) == 6  # the six models of Table 6.1
    for name in ("table_6_2_dice", "table_6_3_test_iou", "appendix_i_accuracy_loss", "per_patient", "lesionwise",
                 "lr_search", "epoch_study", "backbone_comparison", "encoder_comparison"):  # fmt: skip
        assert (results / "tables" / f"{name}.md").is_file(), name
    for name in ("dice_curves", "accuracy_loss", "predictions_good_average_bad", "lr_search", "dataset_glimpse",
                 "orthogonal_views", "backbone_dice_curves"):  # fmt: skip
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000, name
