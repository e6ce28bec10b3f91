"""mslesion.env.workspace: the working folder, the inputs, and real data found or a clear stop (never a silent fallback)."""

import time
from pathlib import Path

import pytest

from mslesion.env import workspace
from mslesion.study.inputs import ensure_dataset
from tests.conftest import write_kaggle_input


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A fake Kaggle machine: read-only /kaggle/input with the MS data, a writable /kaggle/working."""
    inputs, working = tmp_path / "input", tmp_path / "working"
    cohort = write_kaggle_input(inputs)
    monkeypatch.setattr(workspace, "KAGGLE_INPUT", inputs)
    monkeypatch.setattr(workspace, "KAGGLE_WORKING", working)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    yield cohort, working
    for path in [inputs, *inputs.rglob("*")]:  # let pytest clean up
        if path.is_dir():
            path.chmod(0o755)


def test_platform_and_working_folder(kaggle, tmp_path, monkeypatch):
    _, working = kaggle
    assert workspace.platform_name() == "kaggle"
    assert workspace.working_folder() == working.resolve() and working.is_dir()
    assert workspace.working_folder(tmp_path / "mine") == (tmp_path / "mine").resolve()
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE")
    monkeypatch.chdir(tmp_path)
    assert workspace.platform_name() == "local" and workspace.working_folder() == tmp_path.resolve()


def test_colab_writes_to_drive_when_mounted(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(workspace, "COLAB_DRIVE", tmp_path / "drive" / "MyDrive")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20261201")
    assert workspace.platform_name() == "colab"
    # not mounted: /content, with the mount command
    monkeypatch.setattr(workspace, "Path", lambda p="": Path(tmp_path / "content") if p == "/content" else Path(p))
    assert workspace.working_folder() == (tmp_path / "content").resolve()
    assert "drive.mount('/content/drive')" in capsys.readouterr().out
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    assert workspace.working_folder() == (tmp_path / "drive" / "MyDrive" / "mslesion_work").resolve()


def test_the_ms_data_is_found_deep_in_the_kaggle_input_in_its_shipped_layout(kaggle):
    from mslesion.data.cohort import discover_cases

    cohort, working = kaggle
    found = workspace.resolve_source(None, working)
    assert found == cohort  # "MS Dataset" (a space), two levels below the input root
    cases = discover_cases(found).cases
    assert [c.patient_id for c in cases] == ["1", "2", "3"]
    assert cases[0].image("flair").name == "1-Flair.nii"  # uncompressed .nii
    assert not workspace.is_synthetic(found)


def test_no_data_is_an_error_naming_where_it_looked(kaggle, tmp_path, monkeypatch):
    _, working = kaggle
    monkeypatch.setattr(workspace, "KAGGLE_INPUT", tmp_path / "empty_input")
    (tmp_path / "empty_input" / "something-else").mkdir(parents=True)
    with pytest.raises(workspace.DataNotFoundError) as err:
        workspace.resolve_source(None, working)
    message = str(err.value)
    assert "something-else" in message and "Add Input" in message and "'synthetic'" in message
    with pytest.raises(workspace.DataNotFoundError, match="SOURCE=.*nowhere: no such folder"):
        workspace.resolve_source(tmp_path / "nowhere", working)
    assert not (working / "data").exists()  # nothing was made instead


def test_synthetic_only_by_name(tmp_path):
    source = workspace.resolve_source("synthetic", tmp_path, patients=2)
    assert workspace.is_synthetic(source) and source == tmp_path / "data" / "raw" / "synthetic"


def test_a_missing_dataset_stops_at_once_and_makes_nothing(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(workspace.DataNotFoundError) as err:
        ensure_dataset("data/slices/ms", tmp_path, inputs=[tmp_path / "input_a"])
    assert time.perf_counter() - t0 < 5
    message = str(err.value)
    assert str(tmp_path / "data/slices/ms") in message and "input_a" in message and "notebook 01" in message
    assert list(tmp_path.iterdir()) == []


def test_synthetic_dataset_by_name_and_described_as_such(tmp_path):
    dataset = ensure_dataset("synthetic", tmp_path, patients=3, size=32)
    assert (dataset / "manifest.csv").is_file() and dataset.is_relative_to(tmp_path)
    line = workspace.describe_dataset(dataset)
    assert "SYNTHETIC" in line and "3 patients" in line and "train" in line


def test_an_earlier_sessions_output_is_found_and_brought_forward(tmp_path):
    work, earlier = tmp_path / "work", tmp_path / "input" / "my-notebook-output"
    prepared = ensure_dataset("synthetic", earlier, patients=3, size=32)
    relative = prepared.relative_to(earlier)
    work.mkdir()
    # an input root, or one folder below it (a Kaggle input holding a notebook's output folder)
    assert workspace.find_prepared(relative, work, "manifest.csv", [tmp_path / "input"]) == earlier / relative
    assert workspace.find_prepared(relative, work, "manifest.csv", [tmp_path]) is None  # two levels: not searched
    assert workspace.find_prepared(relative, work, "manifest.csv", [earlier]) == earlier / relative
    assert ensure_dataset(str(relative), work, inputs=[earlier]) == earlier / relative  # read in place
    # runs are copied into the working folder, so they resume there; what is already in work stays
    (earlier / "runs" / "r1").mkdir(parents=True)
    (earlier / "runs" / "r1" / "config.json").write_text("{}")
    has_config = lambda folder: any(folder.rglob("config.json"))  # noqa: E731
    brought = workspace.bring_forward("runs", work, has_config, [earlier])
    assert brought == work / "runs" and (work / "runs" / "r1" / "config.json").read_text() == "{}"
    (work / "runs" / "r1" / "config.json").write_text('{"mine": 1}')
    workspace.bring_forward("runs", work, has_config, [earlier])
    assert (work / "runs" / "r1" / "config.json").read_text() == '{"mine": 1}'
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_prep_reads_the_read_only_kaggle_copy(kaggle):
    from mslesion.data.prep import PrepConfig, prepare_dataset

    cohort, working = kaggle
    before = sorted((p.relative_to(cohort), p.stat().st_mtime_ns) for p in cohort.rglob("*"))
    out = working / "data" / "slices" / "ms"
    prepare_dataset(cohort, out, PrepConfig(size=(32, 32), selection="brain"), progress=False)
    line = workspace.describe_dataset(out)
    assert "real data" in line and "3 patients" in line and str(cohort) in line
    assert sorted((p.relative_to(cohort), p.stat().st_mtime_ns) for p in cohort.rglob("*")) == before
