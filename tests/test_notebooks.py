"""Notebooks run headless, top to bottom, on the synthetic cohort in quick mode."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

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


@pytest.mark.slow
def test_01_data_prep_quick(tmp_path):
    nb = run_notebook("01_data_prep.ipynb", tmp_path, PATIENTS=3, SIZE=64)
    assert (tmp_path / "data/slices/ms/manifest.csv").is_file()
    assert (tmp_path / "data/slices/ms/splits.json").is_file()
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert shown  # the slices with their masks, drawn inline (notebook 04 writes the report's figures)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_02_03_04_quick_chain_writes_every_table_and_figure(tmp_path):
    common = {"DATASET": "data/slices/ms", "QUICK": True, "WEIGHTS": None, "EPOCHS": 2}
    run_notebook("02_backbone_comparison.ipynb", tmp_path, BACKBONES=["mobilenetv2", "vgg16"], **common)
    assert len(list((tmp_path / "runs/backbones").rglob("final.keras"))) == 2
    run_notebook("03_model_training.ipynb", tmp_path, LR_EPOCHS=1, LEARNING_RATES=[1e-2, 1e-3], **common)
    run_notebook("04_results_tables.ipynb", tmp_path, EPOCH_EVERY=1)
    results = tmp_path / "results"
    assert len(pd.read_csv(results / "tables/table_6_1_parameters.csv")) == 6  # the six models of Table 6.1
    for name in ("table_6_2_dice", "table_6_3_test_iou", "appendix_i_accuracy_loss", "per_patient", "lesionwise",
                 "lr_search", "epoch_study", "backbone_comparison"):  # fmt: skip
        assert (results / "tables" / f"{name}.md").is_file(), name
    for name in ("dice_curves", "accuracy_loss", "predictions_good_average_bad", "lr_search", "dataset_glimpse",
                 "orthogonal_views", "backbone_dice_curves"):  # fmt: skip
        assert (results / "figures" / f"{name}.png").stat().st_size > 5_000, name
