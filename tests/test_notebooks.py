"""Notebooks run headless, top to bottom, on the synthetic cohort in quick mode."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, cwd: Path, **parameters) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert not [c for c in nb.cells if c.cell_type == "code" and c.get("outputs")], path.name


@pytest.mark.slow
def test_01_data_prep_quick(tmp_path):
    run_notebook("01_data_prep.ipynb", tmp_path, PATIENTS=3, SIZE=64)
    assert (tmp_path / "data/slices/ms/manifest.csv").is_file()
    assert (tmp_path / "data/slices/ms/splits.json").is_file()
    assert (tmp_path / "results/figures/slices_with_masks.png").stat().st_size > 10_000
