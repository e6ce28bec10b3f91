"""mslesion.env.platform_setup: install only what the platform lacks, never touch its TensorFlow/Keras/OpenCV."""

import subprocess
from pathlib import Path

import pytest

from mslesion.env import platform_setup as ps

ROOT = Path(__file__).resolve().parents[1]


def test_requirements_come_from_pyproject_and_match_the_installed_metadata():
    from_source = ps.project_requirements(ROOT)
    assert "segmentation-models==1.0.1" in from_source and not any("tensorflow" in r for r in from_source)
    assert sorted(from_source) == sorted(ps.project_requirements(None))


def test_only_absent_distributions_are_missing_and_any_opencv_will_do():
    assert ps.missing_requirements(ps.project_requirements(ROOT)) == []  # this environment has them all
    assert ps.missing_requirements(["surely-not-a-real-package-xyz>=1", "tqdm>=1"]) == [
        "surely-not-a-real-package-xyz>=1"]
    # the project lists the headless build; a platform's opencv-python (or contrib) satisfies it, and vice versa
    assert ps.missing_requirements(["opencv-python>=4", "opencv-contrib-python>=4"]) == []
    # a version outside the range is not "missing": it stays as the platform has it
    assert ps.missing_requirements(["tqdm>=999"]) == []
    assert ps.missing_requirements(['surely-not-a-real-package-xyz; python_version < "3"']) == []


def _report(*items):
    return {"install": [{"metadata": {"name": n, "version": v}} for n, v in items]}


def test_the_plan_may_not_replace_the_platforms_tensorflow_keras_opencv_or_numpy():
    installed = {"tensorflow": "2.19.0", "keras": "3.10.0", "opencv-python": "4.11.0.86", "numpy": "2.0.2"}
    ok = _report(("segmentation-models", "1.0.1"), ("efficientnet", "1.0.0"))
    assert ps.planned_changes(ok, installed) == []
    bad = _report(("keras", "3.15.1"), ("opencv-python-headless", "5.0.0.93"), ("tqdm", "4.70.1"),
                  ("Tensorflow", "2.21.0"))  # fmt: skip
    changes = ps.planned_changes(bad, installed)
    assert [c.split()[0] for c in changes] == ["keras", "opencv-python-headless", "tensorflow"]
    assert "3.10.0 -> 3.15.1" in changes[0]
    # a platform-owned package that is absent may be installed (a laptop without NumPy)
    assert ps.planned_changes(_report(("numpy", "2.4.6")), {"keras": "3.10.0"}) == []


def test_install_refuses_a_plan_that_changes_the_platform_and_installs_nothing(monkeypatch):
    calls = []

    def fake_pip(args):
        calls.append(args)
        report = Path(args[args.index("--report") + 1])
        report.write_text('{"install": [{"metadata": {"name": "keras", "version": "9.9.9"}}]}')
        constraints = Path(args[args.index("-c") + 1]).read_text()
        assert "keras==" in constraints  # the installed version is pinned for pip
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(ps, "_pip", fake_pip)
    with pytest.raises(ps.SetupError, match=r"would change the platform's keras .* -> 9\.9\.9; nothing was installed"):
        ps.install(["some-package"])
    assert len(calls) == 1 and "--dry-run" in calls[0]  # only the plan ran


def test_install_with_nothing_missing_does_not_call_pip(monkeypatch):
    monkeypatch.setattr(ps, "_pip", lambda args: pytest.fail("pip was called"))
    assert ps.install([]) == []


def test_a_real_dry_run_of_an_installed_package_plans_nothing():
    assert ps.install(["tqdm"], dry_run=True) == []


def test_versions_outside_the_supported_range_are_warnings():
    assert ps.version_warnings({"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1"}) == []
    lines = ps.version_warnings({"python": "3.9.18", "tensorflow": "2.12.0", "keras": "2.12.0"})
    assert [line.split()[0] for line in lines] == ["python", "tensorflow", "keras"]
    assert "TensorFlow is not installed" in ps.version_warnings({"python": "3.11.7", "tensorflow": None,
                                                                 "keras": "3.15.1"})[0]  # fmt: skip


def test_setup_prints_what_it_found(capsys):
    record = ps.setup(ROOT, dry_run=True)
    out = capsys.readouterr().out
    assert record["missing"] == [] and record["tensorflow"] and record["keras"]
    assert f"mslesion from {ROOT}" in out and "would install: nothing" in out and "TensorFlow" in out
