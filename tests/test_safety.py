"""No command deletes or overwrites what it did not write; ids cannot escape; crashes leave nothing behind.

Regression tests of issue 9's output-folder and patient-id findings. Crash
windows are hit through ``mslesion.fileio.crash_point`` (``MSLESION_CRASH_AT``)
in a subprocess, which then dies as under ``kill -9``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mslesion import outputs
from mslesion.cli import main
from mslesion.data.case import check_patient_id
from mslesion.data.cohort import discover_cases
from mslesion.data.prep import PrepConfig, prepare_dataset
from mslesion.data.reader import read_manifest
from mslesion.data.synthetic import generate_cohort
from mslesion.data.volumes3d import prepare_volumes
from mslesion.errors import BadPatientIdError
from mslesion.outputs import MARKER, OutputError, OutputLockedError
from mslesion.report.build import ReportConfig, build_report

from .conftest import write_muslim_patient

SMALL = PrepConfig(size=(16, 16))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mslesion: error: "), err
    return err[0]


# --------------------------------------------------------------------------- the user's folders


def test_prep_refuses_a_folder_of_user_files(muslim_cohort, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_bytes(b"four years of work")
    for extra in ([], ["--overwrite"]):  # --overwrite never licenses deleting what mslesion did not write
        assert main(["prep", str(muslim_cohort), str(mine), "--no-progress", *extra]) == 2
        line = _one_error_line(capsys)
        assert str(mine) in line and "thesis.docx" in line and "did not write" in line
    assert sorted(os.listdir(mine)) == ["thesis.docx"]
    assert (mine / "thesis.docx").read_bytes() == b"four years of work"
    assert sorted(os.listdir(tmp_path)) == ["mine", "raw"]  # nothing beside it either


@pytest.mark.parametrize("where", ["same", "parent", "inside", "cwd"])
def test_prep_refuses_outputs_overlapping_the_source(muslim_cohort, tmp_path, where, monkeypatch, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    out = {"same": muslim_cohort, "parent": tmp_path, "inside": muslim_cohort / "slices", "cwd": Path(".")}[where]
    if where == "cwd":
        monkeypatch.chdir(tmp_path / "raw" / "Patient-1")
    before = _tree(tmp_path)
    assert main(["prep", str(muslim_cohort), str(out), "--no-progress", "--overwrite"]) == 2
    line = _one_error_line(capsys)
    assert {"same": "is also the input", "parent": "holds the input", "inside": "lies inside the input",
            "cwd": "current folder"}[where] in line  # fmt: skip
    assert _tree(tmp_path) == before


def test_prep3d_refuses_the_source_and_user_folders(muslim_cohort, tmp_path):
    before = _tree(tmp_path)
    with pytest.raises(OutputError, match="holds the input"):
        prepare_volumes(muslim_cohort, tmp_path, overwrite=True)
    (tmp_path / "vols").mkdir()
    (tmp_path / "vols" / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="did not write"):
        prepare_volumes(muslim_cohort, tmp_path / "vols", overwrite=True)
    assert _tree(tmp_path) == {**before, "vols/keep.txt": b"x"}


def test_existing_dataset_needs_overwrite_and_is_then_replaced_whole(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    prepare_dataset(muslim_cohort, out, SMALL, progress=False)
    assert outputs.read_marker(out)["kind"] == "dataset"
    first = _tree(out)
    with pytest.raises(OutputError, match="already holds an mslesion dataset; pass --overwrite"):
        prepare_dataset(muslim_cohort, out, PrepConfig(size=(8, 8)), progress=False)
    assert _tree(out) == first
    prepare_dataset(muslim_cohort, out, PrepConfig(size=(8, 8)), progress=False, overwrite=True)
    assert json.loads((out / "prep_config.json").read_text())["size"] == [8, 8]
    # the user then adds a file of their own: even --overwrite refuses to replace the folder now
    (out / "my_notes.txt").write_text("do not lose")
    with pytest.raises(OutputError, match="my_notes.txt"):
        prepare_dataset(muslim_cohort, out, SMALL, progress=False, overwrite=True)
    assert (out / "my_notes.txt").read_text() == "do not lose"


def test_a_dataset_is_not_replaced_by_another_kind(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    prepare_dataset(muslim_cohort, out, SMALL, progress=False)
    with pytest.raises(OutputError, match="is an mslesion dataset, not a cohort"):
        generate_cohort(out, 1, shape=(16, 16, 4), overwrite=True)
    with pytest.raises(OutputError, match="is an mslesion dataset, not a report"):
        build_report(ReportConfig(runs=[], out=str(out), overwrite=True))


def test_synth_split_report_refuse_user_folders(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("a")
    assert main(["synth", str(mine), "--patients", "1", "--shape", "16", "16", "4", "--overwrite"]) == 2
    assert "did not write" in _one_error_line(capsys)
    assert main(["split", str(mine), "--overwrite"]) == 2
    assert "not a slice dataset written by mslesion" in _one_error_line(capsys)
    assert main(["report", "--runs", str(tmp_path / "none"), "--out", str(mine), "--overwrite"]) == 2
    assert "did not write" in _one_error_line(capsys)
    assert sorted(os.listdir(mine)) == ["a.txt"]


def test_evaluate_refuses_a_user_out_dir(trained_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.xlsx").write_text("x")
    assert main(["evaluate", str(trained_run), "--out-dir", str(mine), "--overwrite"]) == 2
    assert "results.xlsx" in _one_error_line(capsys)
    assert sorted(os.listdir(mine)) == ["results.xlsx"]


def test_evaluate_twice_needs_overwrite(trained_run, tmp_path):
    from mslesion.evaluate.config import EvalConfig
    from mslesion.evaluate.evaluation import evaluate

    out = tmp_path / "eval"
    evaluate(trained_run, EvalConfig(out_dir=str(out)), verbose=False)
    assert outputs.read_marker(out)["kind"] == "evaluation"
    with pytest.raises(OutputError, match="pass --overwrite"):
        evaluate(trained_run, EvalConfig(out_dir=str(out)), verbose=False)
    evaluate(trained_run, EvalConfig(out_dir=str(out), overwrite=True), verbose=False)
    assert (out / "per_patient.csv").is_file()


# --------------------------------------------------------------------------- interrupted runs


def _prep_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mslesion", "prep", str(src), str(out), "--size", "16", "16", "--no-progress",
            *extra]  # fmt: skip


def _run(cmd: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSLESION_CRASH_AT": crash_at or ""}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_killed_prep_leaves_a_temporary_that_the_next_run_removes(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    died = _run(_prep_cmd(muslim_cohort, out), crash_at="prep.after_cases")
    assert died.returncode == 137
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(".slices.")]
    assert stale and not out.exists()
    # an interrupted run of the previous version named its temporaries without "mslesion-"
    (tmp_path / ".slices.abcd1234.tmp" / "P1").mkdir(parents=True)
    user_file = tmp_path / ".slices.notes.tmp"  # not our pattern: kept
    user_file.write_text("mine")
    done = _run(_prep_cmd(muslim_cohort, out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".slices.notes.tmp"]
    assert set(read_manifest(out).patient) == {"1", "2", "3"}


def test_kill_between_the_two_renames_is_completed_by_the_next_run(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    assert _run(_prep_cmd(muslim_cohort, out)).returncode == 0
    died = _run(_prep_cmd(muslim_cohort, out, "--overwrite", "--selection", "all"), crash_at="atomic_dir.between_renames")
    assert died.returncode == 137 and not out.exists()  # the old dataset sits in a .old folder, the new in a .tmp
    # the next run (even one that then refuses to overwrite) first completes the swap
    again = _run(_prep_cmd(muslim_cohort, out))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    assert json.loads((out / "prep_config.json").read_text())["selection"] == "all"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_kill_between_renames_with_an_incomplete_new_folder_restores_the_old_one(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    prepare_dataset(muslim_cohort, out, SMALL, progress=False)
    old = _tree(out)
    # what a kill leaves if the new folder never got its marker: the old dataset under .old, a partial .tmp
    (tmp_path / ".slices.mslesion-aaaaaaaa.old").mkdir()
    os.replace(out, tmp_path / ".slices.mslesion-aaaaaaaa.old" / "old")
    (tmp_path / ".slices.mslesion-bbbbbbbb.tmp" / "1").mkdir(parents=True)
    with outputs.locked(out):
        assert outputs.recover_swap(out) == "restored"
    assert _tree(out) == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_second_writer_fails_at_once_naming_the_first(muslim_cohort, tmp_path):
    out = tmp_path / "slices"
    with outputs.locked(out):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            prepare_dataset(muslim_cohort, out, SMALL, progress=False)
    assert not out.exists()
    prepare_dataset(muslim_cohort, out, SMALL, progress=False)  # the lock went with its holder
    assert not (tmp_path / ".slices.lock").exists()


# --------------------------------------------------------------------------- patient ids


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "x\0y", "-rf", ".hidden", "tab\there", "x" * 129])
def test_check_patient_id_refuses(bad):
    with pytest.raises(BadPatientIdError, match="patient id"):
        check_patient_id(bad, "/data/Patient-x")


@pytest.mark.parametrize("good", ["1", "07", "patient07", "TCGA_CS_4941_19960909", "sub-01", "a.b", "x" * 128])
def test_check_patient_id_accepts(good):
    assert check_patient_id(good) == good


def test_dot_ids_are_reported_and_cannot_touch_other_patients(tmp_path):
    raw = tmp_path / "raw"
    for pid in ("1", "2", ".", ".."):
        write_muslim_patient(raw, pid, seed=3, modalities=("Flair",))
    found = discover_cases(raw, "muslim")
    assert [c.patient_id for c in found.cases] == ["1", "2"]
    rejected = {r["patient"]: r for r in found.rejected}
    assert set(rejected) == {".", ".."}
    assert all(r["error"] == "BadPatientIdError" and "Patient-." in r["message"] for r in rejected.values())
    out = tmp_path / "work" / "slices"
    summary = prepare_dataset(raw, out, SMALL, progress=False)
    assert summary.patients == 2 and len(summary.failures) == 2
    assert "2 prepared, 2 failed" in str(summary)
    assert set(read_manifest(out).patient) == {"1", "2"}
    assert sorted(os.listdir(tmp_path / "work")) == ["slices"]  # nothing written beside the dataset
    vols = tmp_path / "work" / "vols"
    done = prepare_volumes(raw, vols, split="holdout", test_fraction=0.5)
    assert sorted(done["patients"]) == ["1", "2"] and {f["patient"] for f in done["failures"]} == {".", ".."}
    assert sorted(os.listdir(tmp_path / "work")) == ["slices", "vols"]
    assert not (tmp_path / "work" / "meta.json").exists()


def test_check_inside_refuses_escapes(tmp_path):
    (tmp_path / "out").mkdir()
    assert outputs.check_inside(tmp_path / "out", tmp_path / "out" / "a" / "b.nii.gz")
    with pytest.raises(OutputError, match="outside the output folder"):
        outputs.check_inside(tmp_path / "out", tmp_path / "out" / ".." / "meta.json")
    os.symlink(tmp_path, tmp_path / "out" / "link")
    with pytest.raises(OutputError, match="outside the output folder"):
        outputs.check_inside(tmp_path / "out", tmp_path / "out" / "link" / "x.npy")


def test_all_patients_failing_writes_nothing(tmp_path):
    raw = tmp_path / "raw"
    write_muslim_patient(raw, "1", modalities=("Flair",))
    (raw / "Patient-1" / "1-LesionSeg-Flair.nii.gz").unlink()
    summary = prepare_dataset(raw, tmp_path / "slices", PrepConfig(size=(16, 16), layout="muslim"), progress=False)
    assert summary.patients == 0 and "nothing written" in str(summary)
    assert not (tmp_path / "slices").exists()
    assert MARKER not in os.listdir(tmp_path)
